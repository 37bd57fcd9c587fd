"""``yolox predict``: detections on images, drawn and written as JSON (same path as eval and serving)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from yolox.config import ServeParams
from yolox.errors import DataError
from yolox.inference import Backend, detect
from yolox.ops.nms import Detections

SERVE = ServeParams()  # the default thresholds (yolox.config owns them)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class PredictResult:
    out_dir: Path
    images: int
    detections: int
    json_path: Path


def list_images(source: str | Path) -> list[Path]:
    """The image files of ``source`` (one image, or a folder, sorted). Raises DataError if none."""
    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return files
    raise DataError(f"no images at {source} (expected an image file or a folder of {sorted(IMAGE_SUFFIXES)})")


def draw(img: np.ndarray, det: Detections, names: list[str]) -> np.ndarray:
    """A copy of ``img`` with boxes and 'name score' labels drawn (BGR uint8)."""
    out = img.copy()
    for box, score, label in zip(det.boxes, det.scores, det.labels):
        color = tuple(int(c) for c in np.random.default_rng(int(label)).integers(64, 256, 3))
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, 2)
        cv2.putText(out, f"{names[label]} {score:.2f}", (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    color, 1, cv2.LINE_AA)
    return out


def predict(backend: Backend, source: str | Path, out_dir: str | Path, names: list[str], img_size: int,
            conf_thresh: float = SERVE.conf_thresh, nms_thresh: float = SERVE.nms_thresh,
            max_det: int = SERVE.max_det) -> PredictResult:
    """Detect on every image of ``source``; write ``<out_dir>/<image name>`` with boxes drawn and
    ``<out_dir>/predictions.json`` (per image: boxes xyxy original pixels, score, class id and name).

    Raises:
        DataError: no images, or an image cannot be read.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, total = [], 0
    for path in list_images(source):
        img = cv2.imread(str(path))
        if img is None:
            raise DataError(f"cannot read image {path}")
        det = detect(backend, [img], img_size, conf_thresh, nms_thresh, max_det)[0]
        cv2.imwrite(str(out_dir / path.name), draw(img, det, names))
        total += len(det)
        results.append({"image": str(path), "detections": [
            {"box_xyxy": [round(float(v), 2) for v in b], "score": round(float(s), 5), "class_id": int(c),
             "class_name": names[int(c)]} for b, s, c in zip(det.boxes, det.scores, det.labels)]})
    json_path = out_dir / "predictions.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    return PredictResult(out_dir, len(results), total, json_path)
