"""Bounded, validated inputs (issue 22, items 3 and 5): outputs never written over inputs, downloads that follow
redirects to http(s) only within a total deadline, serving budgets answered 413 before any image is decoded,
thresholds and params checked before any work, and model metadata read from files validated like user input.

A small yolox-nano (2 classes, random weights, 64 px) exported as each variant stands in for a trained model:
these tests check what happens around the detections, not the detections. Images are real coco128 files.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import onnx
import pandas as pd
import pytest
from helpers.cli_runner import yolox
from helpers.http import serve_folder

from yolox.config import PipelineParams, PredictParams, ServeParams, parse_params
from yolox.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.timeout(180)   # a download that would hang fails the test instead

SIZE = 64
NAMES = ["cat", "dog"]
GIRAFFE, VASE = "000000000025.jpg", "000000000030.jpg"


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def temp_files(folder: Path) -> list[Path]:
    """Leftovers of an atomic write (yolox.files.atomic_path: ``.<stem>.<random>.tmp<suffix>``)."""
    return sorted(p for p in folder.rglob("*") if ".tmp" in p.name)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, coco128_dir: Path) -> dict[str, Path]:
    """The five kinds of exported model a user can hand to predict: raw, decoded, end2end, int8 (the raw one
    quantized) and legacy (raw, with only the flat metadata keys older exports and other tools write)."""
    import torch

    from yolox.export.onnx_export import export_onnx
    from yolox.export.quantize import quantize_int8
    from yolox.models.build import build_model

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("models")
    net = build_model("yolox-nano", len(NAMES)).eval()
    out = {
        "raw": export_onnx(net, d / "raw.onnx", SIZE, NAMES, "yolox-nano"),
        "decoded": export_onnx(net, d / "decoded.onnx", SIZE, NAMES, "yolox-nano", variant="decoded"),
        "end2end": export_onnx(net, d / "end2end.onnx", SIZE, NAMES, "yolox-nano", variant="end2end",
                               conf_thresh=0.25, nms_thresh=0.45, max_det=10),
    }
    coco = coco128_dir / "images" / "train2017"
    out["int8"] = quantize_int8(out["raw"], d / "raw.int8.onnx", [coco / GIRAFFE, coco / VASE], SIZE)
    out["legacy"] = edit_metadata(out["raw"], d / "legacy.onnx", lambda p: p.pop("yolox.meta"))
    return out


def edit_metadata(src: Path, dst: Path, edit: Callable[[dict[str, str]], Any]) -> Path:
    """A copy of the ONNX model ``src`` whose ``metadata_props`` ``edit`` changed (in place, as a dict)."""
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    edit(props)
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def coco(coco128_dir: Path) -> Path:
    return coco128_dir / "images" / "train2017"


# --- 1. an output path is never an input path ----------------------------------------------------------------


@pytest.fixture
def photos(tmp_path: Path, coco: Path) -> Path:
    """A folder with an image and a video (the video made from coco128 images)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((coco / GIRAFFE).read_bytes())
    writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (96, 64))
    for name in (GIRAFFE, VASE):
        writer.write(cv2.resize(cv2.imread(str(coco / name)), (96, 64)))
    writer.release()
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


OVERWRITE_CASES = {
    # kind: (args after --weights, given the photos folder; cwd (None: the folder's parent); error line)
    "image-out-its-folder": (lambda f: ["--source", f / "a.jpg", "--out", f], None,
                             lambda f: f"error: --out {f}: the drawn copy of {f / 'a.jpg'} would be written over it "
                                       f"({f / 'a.jpg'}); give another folder for --out"),
    "image-out-dot": (lambda f: ["--source", "a.jpg", "--out", "."], "photos",
                      lambda f: "error: --out .: the drawn copy of a.jpg would be written over it (a.jpg); give "
                                "another folder for --out"),
    "video-out-its-folder": (lambda f: ["--source", f / "clip.mp4", "--out", f], None,
                             lambda f: f"error: --out {f}: the drawn copy of {f / 'clip.mp4'} would be written over "
                                       f"it ({f / 'clip.mp4'}); give another folder for --out"),
    "folder-out-itself": (lambda f: ["--source", f, "--out", f], None,
                          lambda f: f"error: --out {f} is the source folder {f}: the drawn copies would be written "
                                    f"over its images; give another folder for --out (e.g. {f / 'predicted'})"),
    "image-through-a-link": (lambda f: ["--source", f.parent / "links" / "a.jpg", "--out", f], None,
                             lambda f: f"error: --out {f}: the drawn copy of {f.parent / 'links' / 'a.jpg'} would be "
                                       f"written over it ({f / 'a.jpg'}); give another folder for --out"),
    "json-is-a-source": (lambda f: ["--source", f / "predictions.json", "--out", f], None,
                         lambda f: f"error: --out {f}: {f / 'predictions.json'} would be written over the source "
                                   f"{f / 'predictions.json'}; give another folder for --out"),
}


@pytest.mark.parametrize("kind", [pytest.param(k, id=f"predict-{k}") for k in OVERWRITE_CASES])
def test_predict_never_writes_over_an_input(models: dict[str, Path], photos: Path, kind: str) -> None:
    """Refused with one line naming --out, the input and the output, exit 1, before any work: every file of
    the folder byte-identical, nothing added (no drawn copy, no predictions.json, no temp file)."""
    args, cwd, expected = OVERWRITE_CASES[kind]
    (photos.parent / "links").mkdir()
    (photos.parent / "links" / "a.jpg").symlink_to(photos / "a.jpg")
    (photos / "predictions.json").write_text('{"images": []}\n')   # e.g. a previous run's, given as a source
    before = _snapshot(photos)
    code, output = yolox("predict", "--weights", models["raw"], *args(photos),
                         cwd=photos.parent / cwd if cwd else photos.parent)
    assert code == 1, output[-3000:]
    assert error_lines(output) == [expected(photos)] and "Traceback" not in output
    assert _snapshot(photos) == before


def test_predict_beside_its_inputs_leaves_them_and_no_temp_file(models: dict[str, Path], photos: Path) -> None:
    """The good neighbour: --out inside the source folder works; the inputs are unchanged, the outputs are whole
    files (the image decodes, the video has both frames) and no temp file is left."""
    before = _snapshot(photos)
    out = photos / "predicted"
    code, output = yolox("predict", "--weights", models["raw"], "--source", photos, "--out", out)
    assert code == 0, output[-3000:]
    assert {k: v for k, v in _snapshot(photos).items() if not k.startswith("predicted")} == before
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "clip.mp4", "predictions.json"]
    assert cv2.imread(str(out / "a.jpg")).shape == cv2.imread(str(photos / "a.jpg")).shape
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    cap.release()
    assert temp_files(photos) == []


def test_interrupted_video_keeps_the_previous_output(models: dict[str, Path], photos: Path) -> None:
    """An annotated video is written into a temp file and renamed when complete: a run stopped in the middle of
    it (Ctrl-C) leaves the previous run's video byte-identical and no partial or temp file."""
    from yolox.inference import OnnxBackend
    from yolox.serve.predict import predict

    backend = OnnxBackend(models["raw"])
    out = photos.parent / "out"
    predict(backend, photos / "clip.mp4", out, NAMES, SIZE)
    previous = (out / "clip.mp4").read_bytes()

    class Interrupting:
        def __init__(self) -> None:
            self.calls, self.variant, self.strides, self.num_classes = 0, "raw", backend.strides, backend.num_classes

        def __call__(self, images: np.ndarray) -> Any:
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt
            return backend(images)

    with pytest.raises(KeyboardInterrupt):
        predict(Interrupting(), photos / "clip.mp4", out, NAMES, SIZE)
    assert (out / "clip.mp4").read_bytes() == previous
    assert temp_files(out) == []


# --- 2. downloads: redirects to http(s) only, a total deadline ---------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, coco: Path) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("site")
    (folder / "a.jpg").write_bytes((coco / GIRAFFE).read_bytes())
    with serve_folder(folder) as url:
        yield url


LIMITS = PredictParams(download_timeout_s=2, download_deadline_s=1, download_max_redirects=3)
UNSUPPORTED = "only http and https URLs are fetched"
DOWNLOAD_CASES = {
    # kind: (path on the site, reason, detail)
    "redirect-to-ftp": ("/to?ftp://127.0.0.1/x.jpg", "unsupported source",
                        f"redirected to ftp://127.0.0.1/x.jpg: scheme 'ftp': {UNSUPPORTED}"),
    "redirect-to-file": ("/to?file:///etc/passwd", "unsupported source",
                         f"redirected to file:///etc/passwd: scheme 'file': {UNSUPPORTED}"),
    "redirect-loop": ("/loop", "download failed",
                      "more than 3 redirects (predict.download_max_redirects): a redirect loop?"),
    "redirect-to-404": ("/to?/files/gone.jpg", "download failed", "HTTP 404 File not found"),
    "slow-drip-past-the-deadline": ("/drip/a.jpg", "download failed",
                                    "not downloaded within 1 s (predict.download_deadline_s)"),
    "headers-past-the-deadline": ("/late/a.jpg", "download failed",
                                  "not downloaded within 1 s (predict.download_deadline_s)"),
}


@pytest.mark.parametrize("kind", [pytest.param(k, id=f"download-{k}") for k in DOWNLOAD_CASES])
def test_download_is_bounded(site: str, tmp_path: Path, kind: str) -> None:
    """Each bad URL is the exact skip record, returned within the deadline (1 s; each wait at most 2 s) plus a
    little, with nothing left in the download folder."""
    from yolox.serve.predict import download

    path, reason, detail = DOWNLOAD_CASES[kind]
    start = time.monotonic()
    got = download(site + path, tmp_path, LIMITS)
    assert got == {"image": site + path, "reason": reason, "detail": detail}
    assert time.monotonic() - start < LIMITS.download_deadline_s + 0.5
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_download_follows_a_redirect_to_http(site: str, tmp_path: Path, coco: Path) -> None:
    """A relative and an absolute redirect to http are followed; the file is named after the final URL."""
    from yolox.serve.predict import download

    for url in (f"{site}/to?/files/a.jpg", f"{site}/to?{site}/to?/files/a.jpg"):
        got = download(url, tmp_path, LIMITS)
        assert isinstance(got, Path) and got.name == "a.jpg", got
        assert got.read_bytes() == (coco / GIRAFFE).read_bytes()


def test_predict_reports_a_redirect_to_ftp(models: dict[str, Path], site: str, tmp_path: Path) -> None:
    """Through the command: the redirect is a reported skip (log line and JSON); nothing else to predict: exit 1
    with one line naming the reason."""
    url = f"{site}/to?ftp://127.0.0.1/x.jpg"
    out = tmp_path / "out"
    code, output = yolox("predict", "--weights", models["raw"], "--source", url, "--out", out)
    detail = f"redirected to ftp://127.0.0.1/x.jpg: scheme 'ftp': {UNSUPPORTED}"
    assert code == 1, output[-3000:]
    assert error_lines(output) == [(f"error: no image of {url} could be read (1 skipped: unsupported source); see "
                                   f"{out / 'predictions.json'}")]
    assert f"skipped {url}: unsupported source ({detail})" in output
    assert json.loads((out / "predictions.json").read_text())["skipped"] == [
        {"image": url, "reason": "unsupported source", "detail": detail}]


# --- 3. serving budgets: 413 before any image is decoded ----------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 12000 x 12000 JPEG (grey; 1.7 MB, 432 MB once decoded)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (12000, 12000), 128).save(buf, "JPEG", quality=50)
    return buf.getvalue()


def _served(models: dict[str, Path], **budgets: int) -> Any:
    from yolox.serve.pyfunc import YoloxOnnxModel

    model = YoloxOnnxModel(**budgets)
    model.load_context(SimpleNamespace(artifacts={"onnx": str(models["raw"])}))
    return model


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any image is decoded into pixels."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(cv2, "imdecode", refuse)


def test_serving_refuses_huge_images_before_decoding(models: dict[str, Path], huge_jpeg: bytes,
                                                     no_decoding: None) -> None:
    """40 rows of 12000 x 12000 JPEGs with the default budgets: 413 naming the row, its size and the pixel limit,
    without decoding any (which would need 17 GB)."""
    from yolox.serve.pyfunc import RequestTooLarge

    model = _served(models)
    with pytest.raises(RequestTooLarge) as err:
        model.predict(None, pd.DataFrame({"image": [_b64(huge_jpeg)] * 40}))
    assert err.value.get_http_status_code() == 413 and err.value.error_code == "RESOURCE_EXHAUSTED"
    assert err.value.message == ("row 0: 'image' is 12000 x 12000 = 144,000,000 pixels, over the limit of "
                                 "50,000,000 pixels per image (serve.max_image_pixels): send it scaled down")


SERVE_CASES = {
    # kind: (budgets, rows (a builder given the coco folder), expected 413 message)
    "too-many-rows": ({}, lambda c: [c / GIRAFFE] * 65,
                      ("the request holds 65 images (rows), over the limit of 64 (serve.max_rows): send them in "
                      "several requests")),
    "too-many-bytes": ({"max_request_bytes": 100_000}, lambda c: [c / GIRAFFE, c / VASE],
                       ("the request holds {total:,} bytes of images, over the limit of 100,000 bytes "
                       "(serve.max_request_bytes): send fewer or smaller images per request")),
    "too-many-pixels": ({"max_image_pixels": 273_000}, lambda c: [c / GIRAFFE, c / VASE],
                        ("row 1: 'image' is 640 x 428 = 273,920 pixels, over the limit of 273,000 pixels per image "
                        "(serve.max_image_pixels): send it scaled down")),
}


@pytest.mark.parametrize("kind", [pytest.param(k, id=f"serve-{k}") for k in SERVE_CASES])
def test_serving_budget(models: dict[str, Path], coco: Path, kind: str, no_decoding: None) -> None:
    from yolox.serve.pyfunc import RequestTooLarge

    budgets, rows, message = SERVE_CASES[kind]
    files = [p.read_bytes() for p in rows(coco)]
    with pytest.raises(RequestTooLarge) as err:
        _served(models, **budgets).predict(None, pd.DataFrame({"image": [_b64(f) for f in files]}))
    assert err.value.get_http_status_code() == 413
    total = sum(len(_b64(f)) * 3 // 4 for f in files)
    assert err.value.message == message.format(total=total)


def test_serving_runs_bounded_batches(models: dict[str, Path], coco: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """5 rows with serve.batch_size 2: three runs of at most 2 images, the same detections (and row indices) as
    one run of all 5."""
    import yolox.serve.pyfunc
    from yolox.inference import detect

    names = sorted(p.name for p in coco.glob("*.jpg"))[:5]
    frame = pd.DataFrame({"image": [_b64((coco / n).read_bytes()) for n in names]})
    sizes: list[int] = []

    def counting(backend: Any, images: list, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(images))
        return detect(backend, images, *args, **kwargs)

    one_batch = _served(models, batch_size=8).predict(None, frame, {"conf_thresh": 0.0})
    monkeypatch.setattr(yolox.serve.pyfunc, "detect", counting)   # where the pyfunc calls it
    batched = _served(models, batch_size=2).predict(None, frame, {"conf_thresh": 0.0})
    assert sizes == [2, 2, 1]
    assert len(batched) > 0 and set(batched["image"]) <= set(range(5))
    pd.testing.assert_frame_equal(batched, one_batch)


def test_serving_budgets_are_params() -> None:
    """The budgets are ServeParams (units in their descriptions), validated like every param."""
    fields = ServeParams.model_fields
    assert ServeParams().model_dump() == {"conf_thresh": 0.25, "nms_thresh": 0.45, "max_det": 100, "max_rows": 64,
                                          "max_image_pixels": 50_000_000, "max_request_bytes": 100 * 2**20,
                                          "batch_size": 8}
    assert "(pixels" in fields["max_image_pixels"].description and "(bytes" in fields["max_request_bytes"].description
    from yolox.serve.pyfunc import YoloxOnnxModel

    with pytest.raises(ConfigError, match=r"^max_rows 0: must be greater than or equal to 1 \(serve.max_rows\)$"):
        YoloxOnnxModel(max_rows=0)


# --- 4. thresholds and params checked before any work ---------------------------------------------------------


THRESHOLD_CASES = {
    # kind: (args, exit code, the error line (code 1) or a line of the usage error (code 2))
    "export-nms-above-one": (["export", "--variant", "end2end", "--nms", 2], 1,
                             "error: --nms 2.0: must be in (0, 1] (serve.nms_thresh)"),
    "export-conf-above-one": (["export", "--variant", "end2end", "--conf", 5], 1,
                              "error: --conf 5.0: must be in [0, 1] (serve.conf_thresh)"),
    "export-max-det-zero": (["export", "--variant", "end2end", "--max-det", 0], 1,
                            "error: --max-det 0: must be greater than or equal to 1 (serve.max_det)"),
    "export-conf-nan": (["export", "--variant", "end2end", "--conf", "nan"], 1,
                        "error: --conf nan: must be a finite number in [0, 1] (serve.conf_thresh)"),
    "export-nms-zero-eval-section": (["export", "--variant", "end2end", "--nms", 0, "--set",
                                      "export.thresholds=eval"], 1,
                                     "error: --nms 0.0: must be in (0, 1] (eval.nms_thresh)"),
    "predict-nms-inf": (["predict", "--source", "x.jpg", "--out", "o", "--nms", "inf"], 1,
                        "error: --nms inf: must be a finite number in (0, 1] (serve.nms_thresh)"),
    "benchmark-max-images-zero": (["benchmark", "--max-images", 0], 2,
                                  "Invalid value for '--max-images': Input should be greater than or equal to 1"),
}


@pytest.mark.parametrize("kind", [pytest.param(k, id=k) for k in THRESHOLD_CASES])
def test_threshold_options_are_checked_first(nano_pth: Path, tmp_path: Path, kind: str) -> None:
    """One line naming the option and the allowed range, before the weights are read or anything is written."""
    args, code, expected = THRESHOLD_CASES[kind]
    args = [*args, "--weights", nano_pth if args[0] != "predict" else tmp_path / "missing.onnx"]
    if args[0] == "export":
        args += ["--model", "yolox-nano", "--out", tmp_path / "e2e.onnx"]
    got, output = yolox(*args, cwd=tmp_path)
    assert got == code, output[-3000:]
    if code == 1:
        assert error_lines(output) == [expected]
    else:
        assert expected in output
    assert "Traceback" not in output and list(tmp_path.iterdir()) == []


PARAM_CASES = {
    # kind: (raw params, the line naming the field)
    "inf-timeout": ({"predict": {"download_timeout_s": float("inf")}},
                    "  predict.download_timeout_s: Input should be a finite number (got inf)"),
    "nan-threshold": ({"gate": {"min_ap": float("nan")}}, "  gate.min_ap: Input should be a finite number (got nan)"),
    "zero-deadline": ({"predict": {"download_deadline_s": 0}},
                      "  predict.download_deadline_s: Input should be greater than 0 (got 0)"),
    "negative-scale": ({"augment": {"mosaic_scale": [-1, 2]}},
                       ("  augment.mosaic_scale: Value error, must be (low, high) with 0 < low <= high, got (-1, 2) "
                       "(got [-1, 2])")),
    "tensorrt-sizes-reversed": ({"export": {"tensorrt_sizes": [640, 320]}},
                                ("  export.tensorrt_sizes: Value error, must be (min, max) multiples of 32 with 32 <= "
                                "min <= max <= 8192, got (640, 320) (got [640, 320])")),
    "input-size-too-large": ({"model": {"input_size": 65536}},
                             "  model.input_size: Input should be less than or equal to 8192 (got 65536)"),
    "serve-batch-zero": ({"serve": {"batch_size": 0}},
                         "  serve.batch_size: Input should be greater than or equal to 1 (got 0)"),
    "redirects-negative": ({"predict": {"download_max_redirects": -1}},
                           "  predict.download_max_redirects: Input should be greater than or equal to 0 (got -1)"),
}


@pytest.mark.parametrize("kind", [pytest.param(k, id=f"params-{k}") for k in PARAM_CASES])
def test_params_are_finite_and_in_range(kind: str) -> None:
    raw, line = PARAM_CASES[kind]
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "p.yaml")
    assert str(err.value).splitlines() == ["p.yaml: invalid params", line]


def test_defaults_unchanged() -> None:
    p = PipelineParams()
    assert (p.serve.conf_thresh, p.serve.nms_thresh, p.serve.max_det) == (0.25, 0.45, 100)
    assert (p.eval.conf_thresh, p.eval.nms_thresh, p.predict.download_max_mb, p.predict.download_timeout_s) == \
        (0.01, 0.65, 50.0, 20.0)
    assert (p.predict.download_deadline_s, p.predict.download_max_redirects) == (120.0, 5)
    assert p.augment.mosaic_scale == (0.1, 2.0) and p.model.input_size == 416


# --- 5. model metadata read from files is validated like user input -----------------------------------------


def _meta_edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, str]], None]:
    def edit(props: dict[str, str]) -> None:
        meta = json.loads(props["yolox.meta"])
        change(meta)
        props["yolox.meta"] = json.dumps(meta)
    return edit


def _flat_edit(key: str, value: str | None) -> Callable[[dict[str, str]], None]:
    def edit(props: dict[str, str]) -> None:
        if value is None:
            props.pop(key)
        else:
            props[key] = value
    return edit


META = "metadata 'yolox.meta'"
META_CASES = {
    # kind: (edit of the yolox.models.meta variants, message after "<file>: "; edit of legacy's flat keys, message)
    "not-json": ((_flat_edit("yolox.meta", "{names: [cat]"),
                  (f"{META} is not JSON (Expecting property name enclosed in double quotes at character 1): "
                  "'{names: [cat]'")),
                 (_flat_edit("names", "[cat, dog]"),
                  "metadata 'names' is not JSON (Expecting value at character 1): '[cat, dog]'")),
    "names-not-a-list": ((_meta_edit(lambda m: m.update(names="cat,dog")),
                          f"{META}: 'names' must be a non-empty list of class names (got 'cat,dog')"),
                         (_flat_edit("names", '{"0": "cat"}'),
                          "metadata: 'names' must be a non-empty list of class names (got {'0': 'cat'})")),
    "names-not-strings": ((_meta_edit(lambda m: m.update(names=["cat", 7])),
                           f"{META}: 'names' must be a list of non-empty strings: item 1 is 7"),
                          (_flat_edit("names", '["cat", null]'),
                           "metadata: 'names' must be a list of non-empty strings: item 1 is None")),
    "strides-wrong-length": ((_meta_edit(lambda m: m.update(strides=[8, 16])),
                              (f"{META}: 'strides' must be a list of 3 increasing positive integers, e.g. [8, 16, 32] "
                              "(got [8, 16])")),
                             (_flat_edit("strides", "[8, 16, 32, 64]"),
                              ("metadata: 'strides' must be a list of 3 increasing positive integers, e.g. "
                              "[8, 16, 32] (got [8, 16, 32, 64])"))),
    "size-not-an-integer": ((_meta_edit(lambda m: m.update(input_size=64.5)),
                             f"{META}: 'input_size' must be an integer (got 64.5)"),
                            (_flat_edit("input_size", "64.0"), "metadata 'input_size' must be an integer (got '64.0')")),
    "size-negative": ((_meta_edit(lambda m: m.update(input_size=-64)),
                       (f"{META}: 'input_size' -64: must be a positive multiple of 32 (the model's largest stride), "
                       "e.g. 32")),
                      (_flat_edit("input_size", "-64"),
                       ("metadata: 'input_size' -64: must be a positive multiple of 32 (the model's largest stride), "
                       "e.g. 32"))),
    "size-zero": ((_meta_edit(lambda m: m.update(input_size=0)),
                   f"{META}: 'input_size' 0: must be a positive multiple of 32 (the model's largest stride), e.g. 32"),
                  (_flat_edit("input_size", "0"),
                   ("metadata: 'input_size' 0: must be a positive multiple of 32 (the model's largest stride), e.g. "
                   "32"))),
    "missing-names": ((_meta_edit(lambda m: m.pop("names")),
                       f"{META}: missing 'names' (required: 'name', 'input_size', 'names')"),
                      None),   # a legacy file without names has no metadata at all: read as the authors' release
}
VARIANTS = ("raw", "decoded", "end2end", "int8", "legacy")


@pytest.mark.parametrize("variant, kind", [pytest.param(v, k, id=f"{v}-{k}") for v in VARIANTS for k in META_CASES
                                           if META_CASES[k][v == "legacy"] is not None])
def test_malformed_metadata_is_one_line(models: dict[str, Path], coco: Path, tmp_path: Path, variant: str,
                                        kind: str) -> None:
    """`yolox predict` on a model whose metadata is malformed: exit 1 and one line naming the file, the key and
    the bad field (no traceback); nothing written."""
    edit, message = META_CASES[kind][variant == "legacy"]
    bad = edit_metadata(models[variant], tmp_path / f"{variant}-{kind}.onnx", edit)
    code, output = yolox("predict", "--weights", bad, "--source", coco / GIRAFFE, "--out", tmp_path / "out")
    assert code == 1, output[-3000:]
    assert error_lines(output) == [f"error: {bad}: {message}"] and "Traceback" not in output
    assert not (tmp_path / "out").exists()


EXPORT_CASES = {
    # kind: (variants it applies to, change of the meta's "export" object, message after "<file>: ")
    "nms-out-of-range": (("end2end",), lambda e: e.update(nms_thresh=2),
                         f"{META}: 'export.nms_thresh' must be a number in (0, 1] (got 2)"),
    "max-det-zero": (("end2end",), lambda e: e.update(max_det=0),
                     f"{META}: 'export.max_det' must be an integer in [1, 100000] (got 0)"),
    "conf-missing": (("end2end",), lambda e: e.pop("conf_thresh"),
                     f"{META}: 'export.conf_thresh' must be a number in [0, 1] (missing)"),
    "variant-unknown": (("raw", "decoded", "end2end", "int8"), lambda e: e.update(variant="fancy"),
                        f"{META}: 'export.variant' must be one of raw, decoded, end2end (got 'fancy')"),
    "precision-unknown": (("raw", "int8"), lambda e: e.update(precision="int4"),
                          f"{META}: 'export.precision' must be fp32 or int8 (got 'int4')"),
    "variant-not-the-graphs": (("raw",), lambda e: e.update(variant="decoded", outputs=["boxes", "scores"]),
                               f"{META}: 'export.variant' is 'decoded' (2 outputs), but the graph has 1: output"),
    "outputs-not-the-graphs": (("decoded",), lambda e: e.update(outputs=["boxes", "probs"]),
                               (f"{META}: 'export.outputs' is ['boxes', 'probs'], but the graph's outputs are "
                               "['boxes', 'scores']")),
}


@pytest.mark.parametrize("kind", list(EXPORT_CASES))
def test_malformed_export_facts(models: dict[str, Path], tmp_path: Path, kind: str) -> None:
    """The variant-specific facts (the ``export`` object: baked thresholds, variant, precision, output names)
    are validated too, against the graph where the graph says (OnnxBackend, the one way to open a model)."""
    from yolox.inference import OnnxBackend

    variants, change, message = EXPORT_CASES[kind]
    for variant in variants:
        bad = edit_metadata(models[variant], tmp_path / f"{variant}.onnx", _meta_edit(lambda m: change(m["export"])))
        with pytest.raises(CheckpointError) as err:
            OnnxBackend(bad)
        assert str(err.value) == f"{bad}: {message}", variant


def test_class_count_checked_against_the_graph(models: dict[str, Path], coco: Path, tmp_path: Path) -> None:
    """Metadata naming 3 classes on a 2-class graph: refused when the graph's class axis is known (a raw graph
    after onnxslim: at load; a decoded one: at the first run)."""
    from yolox.inference import OnnxBackend, detect

    three = _meta_edit(lambda m: m.update(names=["cat", "dog", "cow"]))
    raw = edit_metadata(models["raw"], tmp_path / "raw.onnx", three)
    with pytest.raises(CheckpointError) as err:
        OnnxBackend(raw)
    assert str(err.value) == f"{raw}: {META}: 'names' lists 3 classes, but the graph predicts 2"
    decoded = edit_metadata(models["decoded"], tmp_path / "decoded.onnx", three)
    with pytest.raises(CheckpointError) as err:
        detect(OnnxBackend(decoded), [cv2.imread(str(coco / GIRAFFE))], SIZE)
    assert str(err.value) == f"{decoded}: {META}: 'names' lists 3 classes, but the graph predicts 2"


def test_checkpoint_meta_is_validated() -> None:
    """A checkpoint's meta (a dict in the file) is checked by the same rules, the message naming the source."""
    from yolox.models.meta import meta_of_checkpoint

    good = {"name": "yolox-nano", "input_size": 416, "names": ["cat"]}
    assert meta_of_checkpoint({"meta": good}).names == ("cat",)
    cases = {
        "x.pth: 'meta': 'input_size' must be an integer (got '416px')": {**good, "input_size": "416px"},
        "x.pth: 'meta': missing 'name' (required: 'name', 'input_size', 'names')":
            {k: v for k, v in good.items() if k != "name"},
        "x.pth: 'meta': expected an object of model facts (name, input_size, names, ...), got a list": [1, 2],
        "x.pth: 'meta': 'input_size' 100000: must be at most 8192 pixels": {**good, "input_size": 100000},
        "x.pth: 'meta': 'preprocessing.pad_value' must be in [0, 255] (got 300)":
            {**good, "preprocessing": {"pad_value": 300}},
    }
    for message, meta in cases.items():
        with pytest.raises(CheckpointError) as err:
            meta_of_checkpoint({"meta": meta}, source="x.pth")
        assert str(err.value) == message
    with pytest.raises(CheckpointError, match=r"^x.pth: 'names' must be a non-empty list of class names \(got 3\)$"):
        meta_of_checkpoint({"model_name": "yolox-nano", "names": 3}, source="x.pth")
