"""Export variants (raw, decoded, end2end), INT8, the gate's INT8 and latency rules, and `yolox benchmark`, on
real coco128 images with the authors' yolox-nano weights.

The end2end graph is run with ONNX Runtime alone (no project code: onnxruntime + numpy + cv2, the letterbox
written here from the model's metadata) and compared with `yolox predict`'s detections."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from yolox.config import EvalParams, GateParams, PipelineParams, ServeParams
from yolox.data.records import DetectionDataset
from yolox.evaluate.coco_eval import evaluate
from yolox.export.onnx_export import check_onnx, export_onnx
from yolox.inference import OnnxBackend, TorchBackend, detect_batch, preprocess
from yolox.models.coco_classes import COCO_CLASSES
from yolox.models.yolox import YOLOX

SIZE = 416
SERVE, EVAL = ServeParams(), EvalParams()


@pytest.fixture(scope="module")
def exports(nano_model: YOLOX, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """raw; decoded; end2end with the serving thresholds (yolox predict's); end2end with the eval thresholds."""
    d = tmp_path_factory.mktemp("variants")
    names = list(COCO_CLASSES)
    return {
        "raw": export_onnx(nano_model, d / "raw.onnx", SIZE, names, "yolox-nano"),
        "decoded": export_onnx(nano_model, d / "decoded.onnx", SIZE, names, "yolox-nano", variant="decoded"),
        "end2end": export_onnx(nano_model, d / "e2e.onnx", SIZE, names, "yolox-nano", variant="end2end",
                               conf_thresh=SERVE.conf_thresh, nms_thresh=SERVE.nms_thresh, max_det=SERVE.max_det),
        "end2end-eval": export_onnx(nano_model, d / "e2e_eval.onnx", SIZE, names, "yolox-nano",
                                    variant="end2end",
                                    conf_thresh=EVAL.conf_thresh, nms_thresh=EVAL.nms_thresh, max_det=EVAL.max_det),
    }


@pytest.fixture(scope="module")
def images(coco128_dir: Path) -> list[Path]:
    return sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))


# --- ONNX Runtime alone ------------------------------------------------------------------------------------


def _letterbox_from_metadata(img: np.ndarray, props: dict[str, str], side: int) -> tuple[np.ndarray, float]:
    """The preprocessing an outside consumer writes from the metadata: top-left letterbox, pad value, BGR 0-255."""
    assert props["letterbox"] == "top-left" and props["channel_order"] == "BGR" and props["pixel_range"] == "0-255"
    assert json.loads(props["normalise"]) is False and "INTER_LINEAR" in props["resize"]
    h, w = img.shape[:2]
    r = min(side / h, side / w)
    canvas = np.full((side, side, 3), int(props["pad_value"]), np.uint8)
    canvas[: int(h * r), : int(w * r)] = cv2.resize(img, (int(w * r), int(h * r)), interpolation=cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1)[None].astype(np.float32), r


def test_end2end_with_onnxruntime_alone_gives_yolox_predicts_detections(exports: dict[str, Path], nano_pth: Path,
                                                                         images: list[Path], tmp_path: Path) -> None:
    from yolox.cli import run

    source = tmp_path / "src"
    source.mkdir()
    for p in images[:6]:
        (source / p.name).symlink_to(p)
    import sys

    argv = sys.argv
    sys.argv = ["yolox", "predict", "--weights", str(nano_pth), "--model", "yolox-nano", "--source", str(source),
                "--out", str(tmp_path / "pred")]
    try:
        run()
    finally:
        sys.argv = argv
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert predictions["skipped"] == []
    predicted = {Path(r["image"]).name: r["detections"] for r in predictions["images"]}

    session = ort.InferenceSession(str(exports["end2end"]), providers=["CPUExecutionProvider"])
    props = dict(session.get_modelmeta().custom_metadata_map)
    assert props["variant"] == "end2end" and json.loads(props["outputs"]) == ["num_dets", "boxes", "scores", "labels"]
    assert (float(props["conf_thresh"]), float(props["nms_thresh"]), int(props["max_det"])) == \
        (SERVE.conf_thresh, SERVE.nms_thresh, SERVE.max_det)
    names, side = json.loads(props["names"]), int(props["input_size"])
    total = 0
    for path in images[:6]:
        img = cv2.imread(str(path))
        blob, r = _letterbox_from_metadata(img, props, side)
        limits = np.array([img.shape[1], img.shape[0]] * 2)   # yolox predict reports boxes clipped to the image
        num, boxes, scores, labels = session.run(None, {session.get_inputs()[0].name: blob})
        n = int(num[0, 0])
        assert num.dtype == np.int64 and labels.dtype == np.int64 and boxes.shape == (1, SERVE.max_det, 4)
        assert (labels[0, n:] == -1).all() and (scores[0, n:] == 0).all()
        expected = predicted[path.name]
        assert n == len(expected), path.name
        for k, det in enumerate(expected):
            assert names[int(labels[0, k])] == det["class_name"] and int(labels[0, k]) == det["class_id"]
            assert abs(float(scores[0, k]) - det["score"]) <= 1e-4
            assert np.abs(np.clip(boxes[0, k] / r, 0, limits) - np.array(det["box_xyxy"])).max() <= 1e-2
        total += n
    assert total > 10


def test_variants_match_pytorch_and_take_any_size(nano_model: YOLOX, exports: dict[str, Path],
                                                  images: list[Path]) -> None:
    for variant in ("decoded", "end2end"):
        result = check_onnx(nano_model, exports[variant], images[:3], SIZE, 1e-2)
        print(f"\n{variant}: max score diff {result.max_score_diff:.2e}, max box diff {result.max_box_diff:.2e} px")
        assert result.passed and result.unmatched == 0 and result.variant == variant.split("-")[0]
        assert result.max_score_diff <= 1e-4 and result.max_box_diff <= 1e-2
    # the comparison fails when the tolerance is below the measured difference
    assert not check_onnx(nano_model, exports["end2end"], images[:2], SIZE, 1e-2, max_score_diff=1e-12).passed
    # dynamic batch and height/width: end2end at other sizes than exported, against PyTorch at those sizes
    torch_backend, backend = TorchBackend(nano_model), OnnxBackend(exports["end2end-eval"])
    frames = [cv2.imread(str(p)) for p in images[4:6]]
    for side in (320, 480):
        batch, _ = preprocess(frames, side)
        ours = detect_batch(backend, batch, EVAL.conf_thresh, EVAL.nms_thresh, EVAL.max_det)
        ref = detect_batch(torch_backend, batch, EVAL.conf_thresh, EVAL.nms_thresh, EVAL.max_det)
        for a, b in zip(ref, ours):
            assert len(a) == len(b) and (a.labels == b.labels).all()
            assert np.abs(a.scores - b.scores).max() <= 1e-4 and np.abs(a.boxes - b.boxes).max() <= 1e-2


@pytest.mark.slow
def test_eval_gives_the_same_ap_for_every_variant(exports: dict[str, Path], coco128_dataset: DetectionDataset) -> None:
    from yolox.inference import load_model

    ds = coco128_dataset
    subset = DetectionDataset(ds.names, ds.category_ids, ds.records[:48])
    aps = {}
    for variant in ("raw", "decoded", "end2end-eval"):
        backend, meta = load_model(exports[variant])
        assert meta.variant == variant.split("-")[0] and backend.variant == meta.variant
        aps[variant] = evaluate(backend, subset, SIZE, EVAL, progress=False).metrics["AP50_95"]
    print(f"\n48 coco128 images, AP50:95 by variant: {aps}")
    assert aps["raw"] > 0.25
    assert abs(aps["end2end-eval"] - aps["raw"]) <= 0.002 and abs(aps["decoded"] - aps["raw"]) <= 0.002


# --- INT8 and the gate ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(coco128_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from yolox.data.stage import prepare

    params = PipelineParams.model_validate({"data": {"source": str(coco128_dir / "dataset.yaml")}})
    return prepare(params, tmp_path_factory.mktemp("prep") / "prepared").path


@pytest.mark.slow
def test_int8_ap_drop_is_measured_and_gated(exports: dict[str, Path], prepared: Path) -> None:
    from yolox.export.stage import export_int8
    from yolox.registry.rules import ModelEval, decide

    params = PipelineParams.model_validate({"export": {"int8_calibration_images": 8}})
    good = export_int8(params, exports["raw"], SIZE, prepared)
    backend = OnnxBackend(good.onnx)
    assert backend.meta.export.precision == "int8" and backend.variant == "raw"
    assert good.onnx.stat().st_size < 0.6 * exports["raw"].stat().st_size
    # a deliberately bad INT8 model: everything quantized, the stem included (yolox/export/quantize.py)
    bad = export_int8(params.model_copy(update={"export": params.export.model_copy(update={"int8_keep_float": []})}),
                      exports["raw"], SIZE, prepared)
    print(f"\nINT8 on {good.num_images} val images: FP32 {good.fp32_ap:.4f}, INT8 {good.int8_ap:.4f} "
          f"(drop {good.drop:.4f}); all layers INT8 {bad.int8_ap:.4f} (drop {bad.drop:.4f})")
    assert good.fp32_ap > 0.3 and good.drop < 0.03 and bad.drop > 0.1
    cand = ModelEval("2", {"AP50_95": good.fp32_ap, "AP50": 0.5}, "sha256:x")
    gp = GateParams()
    passed = decide("m", cand, None, True, GateParams(int8_max_drop=0.03), int8={"fp32_ap": good.fp32_ap,
                                                                                   "int8_ap": good.int8_ap})
    rejected = decide("m", cand, None, True, gp, int8={"fp32_ap": bad.fp32_ap, "int8_ap": bad.int8_ap})
    assert passed.promote and "int8_max_drop" in [r.name for r in passed.rules]
    assert not rejected.promote and [r.name for r in rejected.failed] == ["int8_max_drop"]
    rule = rejected.to_json()["rules"][[r.name for r in rejected.rules].index("int8_max_drop")]
    assert rule["threshold"] == gp.int8_max_drop and rule["value"] == pytest.approx(bad.drop, abs=1e-6)
    assert "int8_max_drop" in rejected.markdown() and rejected.tags()["gate.rule.int8_max_drop"] == "fail"


def test_latency_rule() -> None:
    from yolox.registry.rules import ModelEval, decide

    cand = ModelEval("2", {"AP50_95": 0.4, "AP50": 0.6}, "sha256:x")
    assert "max_p90_ms" not in [r.name for r in decide("m", cand, None, True, GateParams(), p90_ms=900.0).rules]
    gp = GateParams(max_p90_ms=50.0)
    assert decide("m", cand, None, True, gp, p90_ms=40.0).promote
    slow = decide("m", cand, None, True, gp, p90_ms=80.0)
    assert [r.name for r in slow.failed] == ["max_p90_ms"] and "80.0 ms > 50.0 ms" in slow.reason()
    assert [r.name for r in decide("m", cand, None, True, gp, p90_ms=None).failed] == ["max_p90_ms"]


# --- yolox benchmark ---------------------------------------------------------------------------------------


def test_benchmark_rows_and_reference_ratio(nano_pth: Path, nano_onnx: Path, prepared: Path, tmp_path: Path) -> None:
    from yolox.export.benchmark import run_benchmark, to_json_line
    from yolox.export.tensorrt import tensorrt_unavailable_reason

    params = PipelineParams.model_validate({"export": {"benchmark_warmup": 0, "benchmark_repeats": 2,
                                                       "benchmark_batch": 2}})
    result = run_benchmark(params, str(nano_pth), str(prepared), "val", "yolox-nano", reference=str(nano_onnx),
                           formats=["pytorch", "onnx-end2end", "tensorrt"], out_dir=tmp_path, max_images=3)
    assert [r.format for r in result.rows] == ["pytorch", "onnx-end2end", "tensorrt", "reference"]
    reason = tensorrt_unavailable_reason()
    trt = result.row("tensorrt")
    assert trt.status == (f"skipped: {reason}" if reason else "ok")
    for fmt in ("pytorch", "onnx-end2end", "reference"):
        r = result.row(fmt)
        assert r.status == "ok" and r.AP50_95 is not None and 0 < r.p50_ms <= r.p90_ms and r.images_per_s > 0
        assert r.size_mb > 1 and r.p50_ratio == pytest.approx(r.p50_ms / result.row("reference").p50_ms)
    assert abs(result.row("onnx-end2end").AP50_95 - result.row("reference").AP50_95) <= 0.002
    assert result.row("reference").p50_ratio == 1.0 and (tmp_path / "end2end.onnx").is_file()
    line = json.loads(to_json_line(result))
    assert line["num_images"] == 3 and line["rows"][0]["format"] == "pytorch" and line["machine"]["cpus"] >= 1


# --- what an exported graph declares, and `yolox export`'s flags and lines -----------------------------------


def test_output_axes_are_named_for_what_they_hold(exports: dict[str, Path]) -> None:
    """The outputs' axes as ONNX Runtime (and Netron) show them: ``batch`` and ``anchors`` where they vary, the
    decoded outputs' last axis named for what it holds, the end2end axes fixed (K = max_det, 4 corners); never
    a name the exporter made up (``Whereboxes_dim_1``)."""
    shapes = {name: {o.name: o.shape for o in ort.InferenceSession(str(path)).get_outputs()}
              for name, path in exports.items()}
    assert shapes == {
        "raw": {"output": ["batch", 3549, 85]},       # raw: fixed input size (the authors' layout)
        "decoded": {"boxes": ["batch", "anchors", "xyxy"], "scores": ["batch", "anchors", "classes"]},
        "end2end": {"num_dets": ["batch", 1], "boxes": ["batch", SERVE.max_det, 4],
                    "scores": ["batch", SERVE.max_det], "labels": ["batch", SERVE.max_det]},
        "end2end-eval": {"num_dets": ["batch", 1], "boxes": ["batch", EVAL.max_det, 4],
                         "scores": ["batch", EVAL.max_det], "labels": ["batch", EVAL.max_det]},
    }


@pytest.mark.slow
def test_export_int8_flag_and_the_check_line_says_its_unit(nano_pth: Path, prepared: Path, tmp_path: Path) -> None:
    """``yolox export --int8`` is ``export.int8: true`` (an INT8 model beside the ONNX, its AP measured); the check
    line says what the difference is measured on: raw outputs (unitless), or detections (box corners in pixels)."""
    import os
    import subprocess
    import sys

    yolox = Path(sys.executable).parent / "yolox"
    env = {**os.environ, "COLUMNS": "400", "OMP_NUM_THREADS": "1"}
    common = ["--weights", str(nano_pth), "--model", "yolox-nano", "--check-images", str(prepared / "images"),
              "--set", "export.check_images=2", "--set", f"data.prepared_dir={prepared}"]
    raw = subprocess.run([str(yolox), "export", *common, "--out", str(tmp_path / "m.onnx"), "--int8",
                          "--set", "export.int8_calibration_images=4"], env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    assert raw.returncode == 0, raw.stderr
    int8 = OnnxBackend(tmp_path / "m.int8.onnx")
    assert int8.meta.export.precision == "int8" and int8.variant == "raw"
    lines = raw.stderr.splitlines()
    assert any(line.startswith(f"{tmp_path / 'm.int8.onnx'}: INT8 AP50:95 0.") for line in lines), raw.stderr
    assert lines[-1].startswith(f"{tmp_path / 'm.onnx'} (raw): max |onnx - torch| = ")
    assert lines[-1].endswith(" on the raw outputs (grid offsets, log sizes, probabilities), 2 images")

    decoded = subprocess.run([str(yolox), "export", *common, "--out", str(tmp_path / "d.onnx"), "--variant",
                              "decoded"], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert decoded.returncode == 0, decoded.stderr
    assert not (tmp_path / "d.int8.onnx").exists()                  # without --int8: the params' export.int8 (off)
    lines = decoded.stderr.splitlines()
    assert any("max |box diff| " in line and " px (limit 0.01) over 2 images: passed" in line for line in lines)
    assert lines[-1].startswith(f"{tmp_path / 'd.onnx'} (decoded): max |onnx - torch| = ")
    assert lines[-1].endswith(" over the matched detections (box corners in input pixels or scores, whichever "
                              "differs more; each in the ONNX check line above), 2 images")
