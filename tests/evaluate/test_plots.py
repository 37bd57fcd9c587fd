"""The evaluation's plots (yolox/evaluate/plots.py): the confusion matrix counts, by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_confusion_matrix_counts() -> None:
    from yolox.data.records import DetectionDataset, ImageRecord
    from yolox.evaluate.plots import confusion_matrix
    from yolox.ops.nms import Detections

    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float32)
    rec = ImageRecord(1, Path("x.jpg"), 64, 64, gt, np.array([0, 1, 1]))
    ds = DetectionDataset(["a", "b"], [1, 2], [rec])
    det = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 31], [60, 0, 63, 3], [0, 0, 10, 10]], np.float32),
                     np.array([0.9, 0.8, 0.7, 0.1], np.float32), np.array([0, 0, 1, 1]))
    m = confusion_matrix(ds, {1: det})  # rows true a, b, background; columns predicted a, b, background
    assert m.tolist() == [[1, 0, 0], [1, 0, 1], [0, 1, 0]]
