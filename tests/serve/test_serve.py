"""Serving the champion: `mlflow models serve -m models:/NAME@champion` (local env manager, loopback)
answers a real HTTP request with real coco128 images, with the detections `yolox predict` finds.

The served model is the authors' yolox_nano.pth exported to ONNX, registered as the ONNX-backed pyfunc
and promoted to champion (no training).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from helpers.background import Background, wait_http

from yolox.train.torchrun import free_port

pytestmark = pytest.mark.slow

NAME = "yolox-serve"
BIN = Path(sys.executable).parent
READY_TIMEOUT = 90.0  # seconds; the server is usually ready in ~5 s


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, coco128_dir: Path, nano_pth: Path) -> dict[str, Path]:
    """A SQLite store holding NAME version 1 (the exported nano ONNX) as champion; env restored after."""
    import mlflow

    from yolox.export.onnx_export import export_onnx
    from yolox.models.build import build_model
    from yolox.models.checkpoint import load_weights
    from yolox.models.coco_classes import COCO_CLASSES
    from yolox.registry.versions import log_and_register, promote
    from yolox.tracking.run import MlflowRun

    root = tmp_path_factory.mktemp("serve")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.create_experiment("serve-tests", artifact_location=(root / "mlartifacts").as_uri())
    model = build_model("yolox-nano", 80)
    load_weights(model, nano_pth)
    onnx_path = export_onnx(model.eval(), root / "nano.onnx", 416, COCO_CLASSES, "yolox-nano")
    images = root / "images"
    images.mkdir()
    for name in ("000000000009.jpg", "000000000074.jpg"):  # food on a table; a dog, a bicycle, people
        shutil.copy(coco128_dir / "images" / "train2017" / name, images / name)
    run = MlflowRun("serve-tests", "serve", {"model": "yolox-nano"})
    mv = log_and_register(run.run_id, onnx_path, NAME, images / "000000000009.jpg", {"export_check": "passed"})
    run.end()
    promote(NAME, mv.version, "manual", note="test_serve")
    yield {"root": root, "onnx": onnx_path, "images": images}
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.fixture(scope="module")
def server(registered: dict[str, Path]) -> Iterator[str]:
    """`mlflow models serve` of NAME@champion on a free loopback port; always stopped afterwards."""
    port = free_port()
    # the server execs `uvicorn` by name: the venv's bin folder must be on PATH (as in an activated venv)
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = Background("server", [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
                                 "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                      registered["root"], env, registered["root"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ping", proc, READY_TIMEOUT)
        yield url
    finally:
        proc.stop(20)   # the server and its uvicorn worker: its own session


def _yolox_predict(registered: dict[str, Path]) -> dict[str, list[dict]]:
    out = registered["root"] / "predict"
    proc = subprocess.run([str(BIN / "yolox"), "predict", "--weights", str(registered["onnx"]), "--source",
                           str(registered["images"]), "--out", str(out)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return {Path(r["image"]).name: r["detections"]
            for r in json.loads((out / "predictions.json").read_text())["images"]}


def _compare(served: list[dict], predicted: list[dict]) -> None:
    """Same detections in the same order: classes equal, boxes within 1e-3 px of `yolox predict`'s json
    (which rounds boxes to 0.01 px, so the served box is rounded the same way first), scores alike."""
    assert len(served) == len(predicted) > 0
    for s, p in zip(served, predicted):
        assert (s["class_id"], s["class_name"]) == (p["class_id"], p["class_name"])
        box = [round(s[k], 2) for k in ("x0", "y0", "x1", "y1")]
        assert np.abs(np.array(box) - np.array(p["box_xyxy"])).max() <= 1e-3, (box, p["box_xyxy"])
        assert abs(s["score"] - p["score"]) <= 1e-5


def test_pyfunc_thresholds_are_predicts() -> None:
    from yolox.cli import predict as predict_command
    from yolox.serve.predict import predict
    from yolox.serve.pyfunc import YoloxOnnxModel

    defaults = inspect.signature(predict).parameters
    served = YoloxOnnxModel().thresholds()
    assert served == {"conf_thresh": defaults["conf_thresh"].default, "nms_thresh": defaults["nms_thresh"].default,
                      "max_det": defaults["max_det"].default}
    from yolox.config import ServeParams

    assert served == {k: v for k, v in ServeParams().model_dump().items() if k in served} == \
        {"conf_thresh": 0.25, "nms_thresh": 0.45, "max_det": 100}   # the other ServeParams: request budgets
    cli = inspect.signature(predict_command).parameters   # None: the params' serve.* (one owner: config.py)
    assert (cli["conf"].default, cli["nms"].default) == (None, None)


def test_served_champion_answers_like_yolox_predict(server: str, registered: dict[str, Path]) -> None:
    from mlflow import MlflowClient

    from yolox.inference import OnnxBackend, detect
    from yolox.serve.pyfunc import encode_image

    # the registered model carries its signature (with the thresholds), an input example and metadata
    mv = MlflowClient().get_model_version_by_alias(NAME, "champion")
    info = __import__("mlflow").models.get_model_info(f"models:/{NAME}@champion")
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["image"]
    assert {p.name: p.default for p in info.signature.params.params} == {"conf_thresh": 0.25, "nms_thresh": 0.45,
                                                                         "max_det": 100}
    assert info.saved_input_example_info is not None and mv.tags["conf_thresh"] == "0.25"

    names = sorted(p.name for p in registered["images"].iterdir())
    payload = {"dataframe_split": {"columns": ["image"],
                                   "data": [[encode_image(registered["images"] / n)] for n in names]}}
    resp = requests.post(f"{server}/invocations", json=payload, timeout=120)
    assert resp.status_code == 200, resp.text[:2000]
    rows = resp.json()["predictions"]
    assert set(rows[0]) == {"image", "x0", "y0", "x1", "y1", "score", "class_id", "class_name"}
    predicted = _yolox_predict(registered)
    for i, n in enumerate(names):
        _compare([r for r in rows if r["image"] == i], predicted[n])

    # dataframe_records, one image; unrounded boxes equal the in-process detection path within 1e-3 px
    one = registered["images"] / names[1]
    resp = requests.post(f"{server}/invocations", json={"dataframe_records": [{"image": encode_image(one)}]},
                         timeout=120)
    assert resp.status_code == 200, resp.text[:2000]
    served = resp.json()["predictions"]
    import cv2

    det = detect(OnnxBackend(registered["onnx"]), [cv2.imread(str(one))], 416, 0.25, 0.45, 100, clip=True)[0]
    assert len(served) == len(det) and [r["class_id"] for r in served] == det.labels.tolist()
    boxes = np.array([[r[k] for k in ("x0", "y0", "x1", "y1")] for r in served])
    assert np.abs(boxes - det.boxes).max() <= 1e-3
    _compare(served, predicted[names[1]])
    print({n: len(predicted[n]) for n in names}, "detections served and predicted")

    # a request may override the stored thresholds; a bad image is a client error, not a crash
    strict = requests.post(f"{server}/invocations", json={"dataframe_records": [{"image": encode_image(one)}],
                                                          "params": {"conf_thresh": 0.6}}, timeout=120)
    assert strict.status_code == 200 and 0 < len(strict.json()["predictions"]) < len(served)
    bad = requests.post(f"{server}/invocations", json={"dataframe_records": [{"image": encode_image(one)},
                                                                           {"image": "bm90IGFuIGltYWdl"}]}, timeout=60)
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE", bad.text[:2000]
    assert "row 1: 'image' is not a base64-encoded image file" in bad.json()["message"]
    assert "stack_trace" not in bad.json() and "Traceback" not in bad.text


def test_served_champion_answers_413_over_a_budget(server: str, registered: dict[str, Path]) -> None:
    """Over serve.max_rows (64 by default) or serve.max_image_pixels (50 MP; a real 12000 x 12000 JPEG): HTTP 413
    from the real scoring server, the message naming the limit and its param, no traceback; the server still
    answers a good request afterwards."""
    import base64
    import io

    from PIL import Image

    from yolox.serve.pyfunc import encode_image

    small = encode_image(registered["images"] / "000000000009.jpg")
    buf = io.BytesIO()
    Image.new("L", (12000, 12000), 128).save(buf, "JPEG", quality=50)
    huge = base64.b64encode(buf.getvalue()).decode("ascii")
    for rows, limit in (([small] * 65, "the request holds 65 images (rows), over the limit of 64 (serve.max_rows)"),
                        ([small, huge], ("row 1: 'image' is 12000 x 12000 = 144,000,000 pixels, over the limit of "
                                         "50,000,000 pixels per image (serve.max_image_pixels)"))):
        resp = requests.post(f"{server}/invocations", json={"dataframe_split": {"columns": ["image"],
                                                                                "data": [[r] for r in rows]}},
                             timeout=120)
        assert resp.status_code == 413, resp.text[:2000]
        assert resp.json()["error_code"] == "RESOURCE_EXHAUSTED" and limit in resp.json()["message"]
        assert "stack_trace" not in resp.json() and "Traceback" not in resp.text
    good = requests.post(f"{server}/invocations", json={"dataframe_records": [{"image": small}]}, timeout=120)
    assert good.status_code == 200 and good.json()["predictions"]
