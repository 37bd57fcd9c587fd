"""The registered model: an MLflow pyfunc backed by the exported ONNX model (ONNX Runtime).

Input: a DataFrame with a string column ``image``: each row one image file, base64-encoded (JPEG/PNG).
Output: a DataFrame with one row per detection: ``image`` (row index of the input), ``x0, y0, x1, y1``
(float, original-image pixels), ``score`` (float), ``class_id`` (int), ``class_name`` (str).
Detection runs through :func:`yolox.inference.detect`, the same path as ``yolox predict``, with the same
thresholds: score >= ``conf_thresh``, class-aware NMS IoU ``nms_thresh``, at most ``max_det`` per image
(:class:`yolox.config.ServeParams`: 0.25, 0.45, 100 unless the params say otherwise; ``yolox predict``'s too). They are stored in the model (pickled with it, in its metadata
and as the defaults of its signature's params) and a request may override them, e.g.
``{"dataframe_split": ..., "params": {"conf_thresh": 0.5}}``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from yolox.config import ServeParams

OUTPUT_COLUMNS = ["image", "x0", "y0", "x1", "y1", "score", "class_id", "class_name"]
OUTPUT_DTYPES = ["int64", "float64", "float64", "float64", "float64", "float64", "int64", "str"]
# The serving thresholds' defaults: yolox.config.ServeParams (also `yolox predict`'s); the pipeline passes
# the run's params.serve when it registers a model.
CONF_THRESH = ServeParams().conf_thresh
NMS_THRESH = ServeParams().nms_thresh
MAX_DET = ServeParams().max_det


def encode_image(path: str | Path) -> str:
    """Base64 text of an image file, the pyfunc's input format."""
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def detections_frame(dets: list, names: list[str]) -> pd.DataFrame:
    """Detections of several images as the output DataFrame (columns :data:`OUTPUT_COLUMNS`)."""
    rows: list[dict[str, Any]] = []
    for i, det in enumerate(dets):
        for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
            rows.append({"image": i, "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3],
                         "score": score, "class_id": int(label), "class_name": names[label]})
    return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


class YoloxOnnxModel(mlflow.pyfunc.PythonModel):
    """pyfunc over ``artifacts["onnx"]``; thresholds fixed at logging time (defaults: predict's)."""

    def __init__(self, conf_thresh: float = CONF_THRESH, nms_thresh: float = NMS_THRESH,
                 max_det: int = MAX_DET) -> None:
        self.conf_thresh = float(conf_thresh)
        self.nms_thresh = float(nms_thresh)
        self.max_det = int(max_det)

    def thresholds(self) -> dict[str, Any]:
        """``{"conf_thresh", "nms_thresh", "max_det"}``: the signature's params and the model's metadata."""
        return {"conf_thresh": self.conf_thresh, "nms_thresh": self.nms_thresh, "max_det": self.max_det}

    def load_context(self, context: Any) -> None:
        from yolox.export.onnx_export import read_metadata
        from yolox.inference import OnnxBackend

        path = context.artifacts["onnx"]
        self.backend = OnnxBackend(path)
        meta = self.backend.meta
        if meta is None:  # a model exported before ModelMeta existed: its flat keys
            flat = read_metadata(path)
            self.names, self.input_size = list(flat["names"]), int(flat["input_size"])
        else:
            self.names, self.input_size = list(meta.names), meta.input_size

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import cv2

        from yolox.inference import detect

        images = []
        for i, text in enumerate(model_input["image"].tolist()):
            img = cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"row {i}: 'image' is not a base64-encoded image file")
            images.append(img)
        p = {**self.thresholds(), **(params or {})}
        dets = detect(self.backend, images, self.input_size, float(p["conf_thresh"]), float(p["nms_thresh"]),
                      int(p["max_det"]))
        return detections_frame(dets, self.names)
