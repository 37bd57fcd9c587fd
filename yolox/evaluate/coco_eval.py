"""COCO box AP with pycocotools, on any backend, with the authors' protocol (REFERENCE.md).

Metrics are fractions in [0, 1]: ``AP50_95`` (AP at IoU 0.50:0.95), ``AP50``, ``AP75``, ``APs``, ``APm``,
``APl`` (small < 32^2, medium < 96^2, large pixels^2), and ``per_class`` AP50:95 by class name.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolox.config import EvalParams
from yolox.console import progress as progress_bar
from yolox.data.records import DetectionDataset
from yolox.errors import DataError
from yolox.files import write_text
from yolox.inference import Backend, detect
from yolox.ops.nms import Detections

log = logging.getLogger("yolox.evaluate")

METRIC_KEYS = ("AP50_95", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class EvalResult:
    """Metrics of one evaluation.

    Attributes:
        metrics: the six COCO summary APs (fractions; -1 where COCO has no ground truth of that size).
        per_class: AP50:95 per class name (fraction; classes without ground truth are left out).
        num_images, num_detections: counts. seconds_per_image: forward + NMS wall time per image.
        precision: COCOeval's precision array (T, R, K, A, M) for PR curves; None if nothing was detected.
        detections: per image id, the detections in original-image pixels.
    """

    metrics: dict[str, float]
    per_class: dict[str, float]
    num_images: int
    num_detections: int
    seconds_per_image: float
    precision: np.ndarray | None = None
    detections: dict[int, Detections] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.json`` content: the six AP keys and counts (headline only: ``dvc metrics show`` stays
        one short line; per-class AP goes to its own file, :meth:`per_class_rows`)."""
        return {**{k: round(v, 6) for k, v in self.metrics.items()},
                "num_images": self.num_images, "num_detections": self.num_detections}

    def per_class_rows(self) -> list[dict[str, Any]]:
        """Per-class AP50:95 as rows ``{"class", "AP50_95"}`` (best first): the ``per_class.json`` content, in
        the shape ``dvc plots`` draws as a bar chart."""
        return [{"class": k, "AP50_95": round(v, 6)} for k, v in sorted(self.per_class.items(), key=lambda kv: -kv[1])]

    def write(self, path: str | Path, per_class_path: str | Path | None = None) -> tuple[Path, Path]:
        """Write ``metrics.json`` (keys sorted, stable for DVC) and the per-class file (``per_class_path``,
        default ``<metrics stem>_per_class.json`` beside it), each atomically (:func:`yolox.files.write_text`:
        an interrupted write leaves the previous file intact); returns both paths."""
        path = Path(path)
        per_class = Path(per_class_path) if per_class_path else path.with_name(f"{path.stem}_per_class.json")
        for p, obj in ((path, self.to_json()), (per_class, self.per_class_rows())):
            write_text(p, json.dumps(obj, indent=2, sort_keys=isinstance(obj, dict)) + "\n")
        return path, per_class


def coco_ground_truth(dataset: DetectionDataset) -> COCO:
    """A pycocotools COCO object built in memory from the dataset (no file round trip)."""
    gt = COCO()
    gt.dataset = dataset.to_coco()
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def run_detection(backend: Backend, dataset: DetectionDataset, img_size: int, params: EvalParams,
                  progress: bool = True) -> tuple[dict[int, Detections], float]:
    """Detect on every image of the dataset, in batches of ``params.batch_size``.

    Returns:
        Detections by image id (original-image pixels), and forward + NMS seconds per image.

    Raises:
        DataError: an image cannot be read (names the file).
    """
    results: dict[int, Detections] = {}
    busy = 0.0
    records = dataset.records
    with progress_bar(disable=not progress, transient=True) as bar:   # on stderr
        task = bar.add_task("evaluate", total=len(records))
        for start in range(0, len(records), params.batch_size):
            chunk = records[start:start + params.batch_size]
            images = []
            for rec in chunk:
                img = cv2.imread(str(rec.path))
                if img is None:
                    raise DataError(f"cannot read image {rec.path}")
                images.append(img)
            t0 = time.perf_counter()
            dets = detect(backend, images, img_size, params.conf_thresh, params.nms_thresh, params.max_det)
            busy += time.perf_counter() - t0
            for rec, det in zip(chunk, dets):
                results[rec.image_id] = det
            bar.advance(task, len(chunk))
    return results, busy / max(len(records), 1)


def coco_metrics(dataset: DetectionDataset, detections: dict[int, Detections]
                 ) -> tuple[dict[str, float], dict[str, float], np.ndarray | None]:
    """COCOeval (bbox, maxDets 100) of detections against the dataset's boxes.

    Returns:
        (metrics, per_class AP50:95, precision array or None when there are no detections).
    """
    gt = coco_ground_truth(dataset)
    dts = []
    for image_id, det in detections.items():
        for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
            x0, y0, x1, y1 = box
            dts.append({"image_id": image_id, "category_id": dataset.category_ids[label],
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    if not dts or not gt.dataset["annotations"]:
        return {k: 0.0 for k in METRIC_KEYS}, {}, None
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(dts)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = [r.image_id for r in dataset.records]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics = {k: float(v) for k, v in zip(METRIC_KEYS, ev.stats[:6])}
    precision = ev.eval["precision"]  # (T IoUs, R recall points, K classes, A areas, M maxDets)
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        if p.size:
            per_class[dataset.names[dataset.category_ids.index(cat_id)]] = float(p.mean())
    return metrics, per_class, precision


def evaluate(backend: Backend, dataset: DetectionDataset, img_size: int, params: EvalParams | None = None,
             progress: bool = True) -> EvalResult:
    """Evaluate a backend on a dataset: letterbox at ``img_size`` (pixels), detect, COCO AP.

    Raises:
        DataError: no images, an image cannot be read, or the model's class count differs from the dataset's.
    """
    params = params or EvalParams()
    if not dataset.records:
        raise DataError("the dataset split to evaluate has no images: nothing to evaluate")
    if backend.num_classes != dataset.num_classes:
        raise DataError(f"the model predicts {backend.num_classes} classes, the dataset has "
                        f"{dataset.num_classes}: evaluate a model trained on this dataset's classes")
    detections, spi = run_detection(backend, dataset, img_size, params, progress)
    metrics, per_class, precision = coco_metrics(dataset, detections)
    n_det = sum(len(d) for d in detections.values())
    log.info("AP50:95 %.4f AP50 %.4f on %d images (%.1f ms/img)", metrics["AP50_95"], metrics["AP50"],
             len(dataset.records), spi * 1000)
    return EvalResult(metrics, per_class, len(dataset.records), n_det, spi, precision, detections)
