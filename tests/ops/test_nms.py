"""NMS (yolox/ops/nms.py): the higher score kept, a strict IoU threshold, never across classes (batched,
negative coordinates included), and postprocess's best class score, threshold and ``max_det``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from yolox.ops.nms import batched_nms, nms, postprocess


def test_nms_keeps_the_higher_scored_of_two_overlapping() -> None:
    boxes = np.array([[10, 10, 50, 50], [12, 12, 52, 52]], np.float32)   # IoU 0.82
    assert nms(boxes, np.array([0.6, 0.9], np.float32), 0.65).tolist() == [1]
    assert nms(boxes, np.array([0.9, 0.6], np.float32), 0.65).tolist() == [0]
    # below the threshold both stay, by descending score
    assert nms(boxes, np.array([0.6, 0.9], np.float32), 0.9).tolist() == [1, 0]


def test_nms_keeps_both_disjoint_boxes_and_orders_by_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [21, 21, 31, 31]], np.float32)
    keep = nms(boxes, np.array([0.3, 0.5, 0.4], np.float32), 0.5)
    assert keep.tolist() == [1, 0] and keep.dtype == np.int64
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []


def test_nms_threshold_is_strict() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)         # IoU exactly 0.5
    assert nms(boxes, np.array([0.9, 0.8], np.float32), 0.5).tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8], np.float32), 0.49).tolist() == [0]


def test_batched_nms_never_suppresses_across_classes() -> None:
    boxes = np.array([[10, 10, 50, 50], [10, 10, 50, 50], [11, 11, 50, 50], [100, 100, 120, 120]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    keep = batched_nms(boxes, scores, np.array([0, 1, 0, 1]), 0.65)
    assert keep.tolist() == [0, 1, 3]          # box 2 suppressed by box 0 (same class), box 1 kept
    keep = batched_nms(boxes, scores, np.array([0, 0, 0, 0]), 0.65)
    assert keep.tolist() == [0, 3]
    # random boxes of 5 classes: equal to NMS run class by class
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (200, 2))], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 200).astype(np.float32)
    labels = rng.integers(0, 5, 200)
    per_class = set()
    for c in range(5):
        idx = np.nonzero(labels == c)[0]
        per_class |= set(idx[nms(boxes[idx], scores[idx], 0.5)].tolist())
    assert set(batched_nms(boxes, scores, labels, 0.5).tolist()) == per_class


def test_batched_nms_across_classes_with_negative_coordinates() -> None:
    # class 0 near the bottom-right corner of a 416 input (x1 = 420 > 416, unclipped); class 1 hanging
    # over the top-left corner: offset = 421, so class 1 becomes [390, 390, 422, 422], IoU 0.88 with class 0
    boxes = np.array([[390, 390, 420, 420], [-31, -31, 1, 1]], np.float32)
    keep = batched_nms(boxes, np.array([0.9, 0.8], np.float32), np.array([0, 1]), 0.65)
    assert keep.tolist() == [0, 1]


def test_postprocess_best_class_score_and_threshold() -> None:
    # (1, 3, 5 + 3): [cx, cy, w, h, obj, cls...] decoded, probabilities
    decoded = torch.tensor([[
        [50, 50, 20, 20, 0.8, 0.1, 0.9, 0.2],    # class 1, score 0.72
        [51, 50, 20, 20, 0.9, 0.7, 0.0, 0.6],    # class 0, score 0.63: same place, other class -> kept
        [200, 200, 10, 10, 0.05, 0.1, 0.1, 0.1],  # score 0.005 < 0.01 -> dropped
    ]])
    (det,) = postprocess(decoded, conf_thresh=0.01, nms_thresh=0.65)
    assert det.labels.tolist() == [1, 0]
    assert det.scores == pytest.approx([0.72, 0.63])
    assert det.boxes[0].tolist() == pytest.approx([40, 40, 60, 60])
    (det,) = postprocess(decoded, conf_thresh=0.01, nms_thresh=0.65, max_det=1)
    assert len(det) == 1 and det.labels.tolist() == [1]
