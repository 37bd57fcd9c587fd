"""`yolox predict` on videos and URLs, boxes clipped to the image, and the registered pyfunc serving from an
end2end graph (export.serve_end2end) with the detections `yolox predict` gives on the raw model. (The labels
it draws: tests/ops/test_draw.py.)

Real coco128 images and the authors' yolox-nano weights; small inputs (256 px) where the test allows."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers.http import serve_folder
from helpers.media_sources import make_video, read_frames

from yolox.config import PipelineParams, PredictParams, ServeParams
from yolox.inference import Backend, detect, load_model
from yolox.models.coco_classes import COCO_CLASSES
from yolox.ops.nms import Detections
from yolox.serve.predict import predict

SIDE = 256
NAMES = list(COCO_CLASSES)
SERVE = ServeParams()
FRAMES = ("000000000025.jpg", "000000000036.jpg", "000000000042.jpg", "000000000074.jpg")


@pytest.fixture(scope="module")
def backend(nano_pth: Path) -> Backend:
    return load_model(nano_pth, "yolox-nano")[0]


@pytest.fixture(scope="module")
def coco(coco128_dir: Path) -> Path:
    return coco128_dir / "images" / "train2017"


def _same(json_dets: list[dict], det: Detections) -> None:
    """The JSON's detections are ``det`` (boxes to 0.01 px, scores to 1e-5, same classes in the same order)."""
    assert [d["class_id"] for d in json_dets] == det.labels.tolist()
    assert np.abs(np.array([d["box_xyxy"] for d in json_dets]).reshape(-1, 4) - det.boxes).max(initial=0) <= 0.0051
    assert np.abs(np.array([d["score"] for d in json_dets]) - det.scores).max(initial=0) <= 6e-6


def test_predict_video(backend: Backend, coco: Path, tmp_path: Path) -> None:
    """Every frame of a video is detected as the same frame alone would be; the annotated video has the frames,
    size and rate of the input, with the detections drawn."""
    video = make_video(tmp_path / "clip.mp4", [coco / n for n in FRAMES], (640, 480), fps=4.0)
    result = predict(backend, video, tmp_path / "out", NAMES, SIDE)
    out = json.loads(result.json_path.read_text())
    assert (result.videos, result.frames, result.images, out["images"], out["skipped"]) == (1, 4, 0, [], [])
    entry = out["videos"][0]
    assert (entry["video"], entry["fps"], entry["width"], entry["height"]) == (str(video), 4.0, 640, 480)
    assert [f["frame"] for f in entry["frames"]] == [0, 1, 2, 3] and "note" not in entry
    frames = read_frames(video)
    for frame, got in zip(frames, entry["frames"]):
        _same(got["detections"], detect(backend, [frame], SIDE, SERVE.conf_thresh, SERVE.nms_thresh, SERVE.max_det,
                                        clip=True)[0])
    assert {d["class_name"] for f in entry["frames"] for d in f["detections"]} >= {"giraffe", "person"}
    drawn = read_frames(Path(entry["drawn"]))
    assert Path(entry["drawn"]) == tmp_path / "out" / "clip.mp4" and len(drawn) == 4
    assert drawn[0].shape == (480, 640, 3)
    cap = cv2.VideoCapture(entry["drawn"])
    assert cap.get(cv2.CAP_PROP_FPS) == 4.0
    cap.release()
    for frame, d, got in zip(frames, drawn, entry["frames"]):   # boxes drawn where detections are (lossy codec)
        for x0, y0, _, y1 in ([round(v) for v in det["box_xyxy"]] for det in got["detections"][:1]):
            x0 = min(x0, 638)
            edge = np.abs(d[y0:y1, x0:x0 + 2].astype(int) - frame[y0:y1, x0:x0 + 2].astype(int)).mean()
            noise = np.abs(d.astype(int) - frame.astype(int)).mean()   # re-encoding alone
            assert edge > 3 * noise, (edge, noise)


def test_predict_url(backend: Backend, coco: Path, tmp_path: Path) -> None:
    """An image at an http URL (a loopback server) gives the detections of the same file on disk; a 404 URL is a
    reported skip and the run goes on."""
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(coco / FRAMES[1], served / "people.jpg")
    local = coco / FRAMES[1]
    with serve_folder(served) as url:
        result = predict(backend, [f"{url}/files/people.jpg", f"{url}/files/gone.jpg", local], tmp_path / "out",
                         NAMES, SIDE, limits=PredictParams(download_timeout_s=10))
    out = json.loads(result.json_path.read_text())
    assert [r["image"] for r in out["images"]] == [f"{url}/files/people.jpg", str(local)]
    assert out["images"][0]["detections"] == out["images"][1]["detections"] != []
    assert out["skipped"] == [{"image": f"{url}/files/gone.jpg", "reason": "download failed",
                               "detail": "HTTP 404 File not found"}]
    # the drawn copies: the URL's under its file name, the local file's under its own
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([FRAMES[1], "people.jpg",
                                                                           "predictions.json"])


def _overflowing(backend: Backend, coco: Path) -> tuple[Path, np.ndarray]:
    """The first coco128 image with a detection reaching past its border (unclipped), and the image."""
    for path in sorted(coco.glob("*.jpg"))[:40]:
        img = cv2.imread(str(path))
        det = detect(backend, [img], SIDE, SERVE.conf_thresh, SERVE.nms_thresh, SERVE.max_det)[0]
        h, w = img.shape[:2]
        if len(det) and (det.boxes.min() < -0.5 or (det.boxes[:, 0::2] > w + 0.5).any()
                         or (det.boxes[:, 1::2] > h + 0.5).any()):
            return path, img
    raise AssertionError("no coco128 image with a box past its border in the first 40")


def test_boxes_clipped_in_predict_not_in_eval(backend: Backend, coco: Path, tmp_path: Path) -> None:
    """predict's JSON and drawings clip boxes to the image; the detection path of eval (detect's default) does not
    (the authors' protocol)."""
    path, img = _overflowing(backend, coco)
    h, w = img.shape[:2]
    raw = detect(backend, [img], SIDE, SERVE.conf_thresh, SERVE.nms_thresh, SERVE.max_det)[0]
    result = predict(backend, path, tmp_path, NAMES, SIDE)
    boxes = np.array([d["box_xyxy"] for d in json.loads(result.json_path.read_text())["images"][0]["detections"]])
    assert (boxes >= 0).all() and (boxes[:, 0::2] <= w).all() and (boxes[:, 1::2] <= h).all()
    expected = np.stack([raw.boxes[:, 0].clip(0, w), raw.boxes[:, 1].clip(0, h), raw.boxes[:, 2].clip(0, w),
                         raw.boxes[:, 3].clip(0, h)], 1)
    assert np.abs(boxes - expected).max() <= 0.0051 and np.abs(raw.boxes - expected).max() > 0.5


@pytest.mark.slow
def test_served_end2end_equals_predict_on_raw(nano_pth: Path, coco: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's export stage with export.serve_end2end writes and checks an end2end graph beside the raw one;
    the registered pyfunc serves from it with the detections `yolox predict` gives on the raw model (scores within
    1e-4, boxes within 1e-2 px); a request for another NMS IoU falls back to the raw graph, a higher score threshold
    is served by the end2end graph, filtered."""
    import mlflow

    from yolox.export.stage import export

    images = tmp_path / "images"
    images.mkdir()
    for n in FRAMES[1:]:
        shutil.copy(coco / n, images / n)
    params = PipelineParams.model_validate({"export": {"onnx_path": str(tmp_path / "m" / "model.onnx"),
                                                       "serve_end2end": True, "check_images": 2}})
    exported = export(params, nano_pth, model_name="yolox-nano", check_images=images)
    assert exported.passed and exported.variant == "raw" and exported.serving == tmp_path / "m" / "model.end2end.onnx"
    # registered with both graphs, loaded as the scoring server loads it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(mlflow, "_test_uri_before", mlflow.get_tracking_uri(), raising=False)
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    try:
        _serve_and_compare(nano_pth, exported, images, tmp_path)
    finally:
        mlflow.set_tracking_uri(mlflow._test_uri_before)


def _serve_and_compare(nano_pth: Path, exported, images: Path, tmp_path: Path) -> None:
    import mlflow

    from yolox.registry.versions import load_version_model, log_and_register
    from yolox.serve.pyfunc import encode_image
    from yolox.tracking.run import MlflowRun

    mlflow.create_experiment("e2e", artifact_location=(tmp_path / "artifacts").as_uri())
    run = MlflowRun("e2e", "serve")
    mv = log_and_register(run.run_id, exported.onnx, "yolox-e2e", exported.sample_image, end2end_path=exported.serving)
    run.end()
    served = load_version_model("yolox-e2e", mv.version)
    assert served.end2end.variant == "end2end" and served.backend.variant == "raw"
    frame = pd.DataFrame({"image": [encode_image(images / n) for n in FRAMES[1:]]})

    def predicted(conf: float = SERVE.conf_thresh, nms: float = SERVE.nms_thresh) -> dict[str, list[dict]]:
        out = tmp_path / f"predict-{conf}-{nms}"
        result = predict(load_model(exported.onnx)[0], images, out, NAMES, 416, conf, nms)
        return {Path(r["image"]).name: r["detections"] for r in json.loads(result.json_path.read_text())["images"]}

    def compare(rows: pd.DataFrame, expected: dict[str, list[dict]]) -> int:
        for i, n in enumerate(FRAMES[1:]):
            got, want = rows[rows["image"] == i], expected[n]
            assert got["class_id"].tolist() == [d["class_id"] for d in want]
            boxes = np.array([d["box_xyxy"] for d in want]).reshape(-1, 4)
            assert np.abs(got[["x0", "y0", "x1", "y1"]].to_numpy() - boxes).max(initial=0) <= 1e-2
            assert np.abs(got["score"].to_numpy() - np.array([d["score"] for d in want])).max(initial=0) <= 1e-4
        return len(rows)

    p = served.thresholds()
    assert served.serving_backend(p) is served.end2end
    n_default = compare(served.predict(None, frame), predicted())
    assert n_default >= 3
    assert served.serving_backend({**p, "nms_thresh": 0.6}) is served.backend
    compare(served.predict(None, frame, {"nms_thresh": 0.6}), predicted(nms=0.6))
    assert served.serving_backend({**p, "conf_thresh": 0.5}) is served.end2end
    assert 0 < compare(served.predict(None, frame, {"conf_thresh": 0.5}), predicted(conf=0.5)) < n_default
    assert served.serving_backend({**p, "conf_thresh": 0.1}) is served.backend

    # a model whose only graph is end2end answers other thresholds with a 400 naming the baked ones
    from types import SimpleNamespace

    from mlflow.exceptions import MlflowException

    from yolox.serve.pyfunc import YoloxOnnxModel

    only = YoloxOnnxModel()
    only.load_context(SimpleNamespace(artifacts={"onnx": str(exported.serving)}))
    assert only.end2end is only.backend
    compare(only.predict(None, frame), predicted())
    with pytest.raises(MlflowException) as err:
        only.predict(None, frame, {"nms_thresh": 0.6})
    assert err.value.get_http_status_code() == 400
    assert err.value.message == (
        "params: this model's graph has its thresholds baked in (conf_thresh 0.25, nms_thresh 0.45, max_det 100); "
        "asked for conf_thresh 0.25, nms_thresh 0.6, max_det 100: ask for conf_thresh >= 0.25, nms_thresh 0.45 and "
        "max_det <= 100, or register a model exported with a raw graph (export.variant: raw)")
