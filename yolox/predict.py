"""``yolox predict``: detections on images, drawn and written as JSON (same path as eval and serving).

A bad image never stops the run: each image is checked as ``prepare`` checks it
(:func:`yolox.data.validate.check_image`: it decodes, and a JPEG is not cut short), and one that fails is
skipped with its reason, logged and listed in the JSON beside the detections of every good image.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolox.config import ServeParams
from yolox.errors import ConfigError, DataError
from yolox.inference import Backend, detect
from yolox.ops.nms import Detections

log = logging.getLogger("yolox.predict")

SERVE = ServeParams()  # the default thresholds (yolox.config owns them)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
UNSUPPORTED_FILE = "not an image file"
"""Skip reason of a file in a source folder whose extension is not one of :data:`IMAGE_SUFFIXES`."""


@dataclass
class PredictResult:
    """What :func:`predict` did: images predicted, detections found, the JSON written, and the skipped files
    (``{"image", "reason", "detail"}`` each)."""

    out_dir: Path
    images: int
    detections: int
    json_path: Path
    skipped: list[dict[str, str]] = field(default_factory=list)


def list_images(source: str | Path) -> list[Path]:
    """The image files of ``source`` (one image, or a folder and its sub-folders, sorted). Raises DataError if
    none."""
    files, _ = _source_files(Path(source))
    if not files:
        raise DataError(_no_images(Path(source)))
    return files


def _source_files(source: Path, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(image files, other files) of an image or a folder tree, sorted; files under ``exclude`` left out."""
    if source.is_file():
        return [source], []
    if not source.is_dir():
        return [], []
    files = sorted(p for p in source.rglob("*") if p.is_file() and not (exclude and exclude in p.resolve().parents))
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES], \
        [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]


def _no_images(source: Path) -> str:
    if not source.exists():
        return f"{source}: no such file or folder"
    return f"no images at {source} (expected an image file or a folder of {sorted(IMAGE_SUFFIXES)})"


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


def read_image(path: Path) -> np.ndarray | dict[str, str]:
    """The image as BGR uint8 (H, W, 3) (grey, alpha and 16-bit files converted, EXIF rotation applied), or its
    skip record ``{"image", "reason", "detail"}`` when ``prepare`` would reject it: not decodable, or a JPEG
    cut short (OpenCV would decode it with a grey bottom and only a warning). Any size is accepted."""
    from yolox.data.readers import NOT_AN_IMAGE, Issue, RawImage
    from yolox.data.validate import check_image

    try:
        checked = check_image(RawImage(path, str(path), None, None), min_image_size=1)
        img = None if isinstance(checked, Issue) else cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as err:  # e.g. a header claiming more pixels than OpenCV's limit (a decompression bomb)
        return {"image": str(path), "reason": NOT_AN_IMAGE, "detail": f"OpenCV refuses it: {opencv_reason(err)}"}
    if img is None:
        reason, detail = (checked.reason, checked.detail) if isinstance(checked, Issue) else \
            (NOT_AN_IMAGE, "cv2.imread cannot decode it")
        return {"image": str(path), "reason": reason, "detail": detail}
    return img


def opencv_reason(err: Exception) -> str:
    """The failed check of a ``cv2.error`` (e.g. ``pixels <= CV_IO_MAX_IMAGE_PIXELS``), without OpenCV's
    source file and line."""
    text = " ".join(str(err).split())
    return text.split("Assertion failed)")[-1].split(" in function")[0].strip() if "Assertion failed)" in text \
        else text.split("error: ")[-1]


def _output_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file: give a folder for the drawn images and predictions.json")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out_dir}: cannot create the folder ({err.strerror or err})") from None
    return out_dir


def _drawn_path(path: Path, source: Path, out_dir: Path) -> Path:
    """Where the drawn copy of ``path`` goes: its path below the source folder, in ``out_dir`` (PNG when its
    extension is not one OpenCV writes)."""
    rel = Path(path.name) if source.is_file() else path.relative_to(source)
    if rel.suffix.lower() not in IMAGE_SUFFIXES:
        rel = rel.with_name(rel.name + ".png")
    return out_dir / rel


def predict(backend: Backend, source: str | Path, out_dir: str | Path, names: list[str], img_size: int,
            conf_thresh: float = SERVE.conf_thresh, nms_thresh: float = SERVE.nms_thresh,
            max_det: int = SERVE.max_det) -> PredictResult:
    """Detect on every image of ``source`` (an image, or a folder and its sub-folders); write the drawn images
    to ``out_dir`` (same relative paths) and ``<out_dir>/predictions.json``::

        {"images": [{"image": path, "detections": [{"box_xyxy": [x0, y0, x1, y1], "score", "class_id",
                                                    "class_name"}, ...]}, ...],
         "skipped": [{"image": path, "reason": "truncated JPEG", "detail": "..."}, ...]}

    Boxes are xyxy in original-image pixels. An image that cannot be read (see :func:`read_image`) and a file
    of a folder that is not an image (:data:`UNSUPPORTED_FILE`) are skipped with their reason: logged, and
    listed under ``skipped``; the other images are predicted all the same.

    Raises:
        DataError: no images at ``source``, or none of them could be read (the JSON is written first).
        ConfigError: ``out_dir`` is a file or cannot be created.
    """
    source, out_dir = Path(source), Path(out_dir)
    files, others = _source_files(source, out_dir.resolve())
    if not files and not others:
        raise DataError(_no_images(source))
    out_dir = _output_dir(out_dir)
    results: list[dict[str, Any]] = []
    skipped = [{"image": str(p), "reason": UNSUPPORTED_FILE,
                "detail": f"extension {p.suffix or '(none)'!r} is not one of {sorted(IMAGE_SUFFIXES)}"} for p in others]
    for s in skipped:
        log.warning("skipped %s: %s (%s)", s["image"], s["reason"], s["detail"])
    total = 0
    for path in files:
        img = read_image(path)
        if isinstance(img, dict):
            log.warning("skipped %s: %s (%s)", img["image"], img["reason"], img["detail"])
            skipped.append(img)
            continue
        det = detect(backend, [img], img_size, conf_thresh, nms_thresh, max_det)[0]
        drawn = _drawn_path(path, source, out_dir)
        drawn.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(drawn), draw(img, det, names))
        total += len(det)
        results.append({"image": str(path), "detections": [
            {"box_xyxy": [round(float(v), 2) for v in b], "score": round(float(s), 5), "class_id": int(c),
             "class_name": names[int(c)]} for b, s, c in zip(det.boxes, det.scores, det.labels)]})
    json_path = out_dir / "predictions.json"
    json_path.write_text(json.dumps({"images": results, "skipped": skipped}, indent=2) + "\n")
    if not results:
        raise DataError(f"no image of {source} could be read ({len(skipped)} skipped: "
                        f"{', '.join(sorted({s['reason'] for s in skipped}))}); see {json_path}")
    return PredictResult(out_dir, len(results), total, json_path, skipped)
