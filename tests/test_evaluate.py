"""COCO evaluation of the authors' nano weights (PyTorch and ONNX) on coco128, NMS and decoding."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from yolox.config import EvalParams
from yolox.data.records import DetectionDataset
from yolox.errors import DataError
from yolox.evaluate.coco_eval import METRIC_KEYS, EvalResult, evaluate
from yolox.inference import OnnxBackend, TorchBackend, detect, load_model
from yolox.models.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from yolox.models.table import STRIDES
from yolox.ops.decode import decode_outputs
from yolox.ops.nms import batched_nms, nms, postprocess

SIZE = 416


@pytest.fixture(scope="module")
def pth_result(nano_pth: Path, coco128_dataset: DetectionDataset) -> EvalResult:
    backend = load_model(nano_pth, "yolox-nano")[0]
    assert isinstance(backend, TorchBackend)
    return evaluate(backend, coco128_dataset, SIZE, EvalParams(), progress=False)


@pytest.fixture(scope="module")
def onnx_result(nano_onnx: Path, coco128_dataset: DetectionDataset) -> EvalResult:
    backend = load_model(nano_onnx)[0]
    assert isinstance(backend, OnnxBackend) and backend.fixed_batch == 1
    return evaluate(backend, coco128_dataset, SIZE, EvalParams(), progress=False)


def test_dataset_is_coco128(coco128_dataset: DetectionDataset) -> None:
    assert len(coco128_dataset.records) == 128
    assert sum(len(r.labels) for r in coco128_dataset.records) == 929
    assert coco128_dataset.names == list(COCO_CLASSES)
    assert coco128_dataset.category_ids == list(COCO_CATEGORY_IDS)


def test_ap_parity_pth_vs_onnx(pth_result: EvalResult, onnx_result: EvalResult) -> None:
    ap_pth, ap_onnx = pth_result.metrics["AP50_95"], onnx_result.metrics["AP50_95"]
    print(f"\ncoco128 AP50:95 at 416: yolox_nano.pth {ap_pth:.4f}, yolox_nano.onnx {ap_onnx:.4f}, "
          f"|diff| {abs(ap_pth - ap_onnx):.2g}; AP50 {pth_result.metrics['AP50']:.4f} / "
          f"{onnx_result.metrics['AP50']:.4f}")
    assert abs(ap_pth - ap_onnx) <= 0.001
    assert abs(pth_result.metrics["AP50"] - onnx_result.metrics["AP50"]) <= 0.002
    assert 0.25 <= ap_pth <= 0.45
    assert pth_result.num_images == onnx_result.num_images == 128
    # both backends give nearly the same detections (only kernels' rounding differs)
    assert abs(pth_result.num_detections - onnx_result.num_detections) <= 0.01 * onnx_result.num_detections


@pytest.mark.parametrize("which", ["pth", "onnx"])
def test_metrics_keys_and_ranges(which: str, pth_result: EvalResult, onnx_result: EvalResult,
                                 coco128_dataset: DetectionDataset) -> None:
    result = pth_result if which == "pth" else onnx_result
    assert set(result.metrics) == set(METRIC_KEYS) == {"AP50_95", "AP50", "AP75", "APs", "APm", "APl"}
    for k, v in result.metrics.items():
        assert 0.0 <= v <= 1.0, (k, v)  # coco128 has small, medium and large boxes: no -1
    m = result.metrics
    assert m["AP50"] >= m["AP50_95"] and m["AP50"] >= m["AP75"]
    # per class: exactly the classes with ground truth in coco128, by name
    with_gt = {coco128_dataset.names[int(c)] for r in coco128_dataset.records for c in r.labels}
    assert set(result.per_class) == with_gt and len(with_gt) > 60
    assert all(0.0 <= v <= 1.0 for v in result.per_class.values())
    assert result.per_class["person"] > 0.3
    assert result.precision is not None and result.precision.shape[2] == 80
    # at most max_det per image, boxes in original pixels (not clipped, but near the image)
    assert len(result.detections) == 128
    for rec in coco128_dataset.records:
        det = result.detections[rec.image_id]
        assert len(det) <= EvalParams().max_det
        if len(det):
            assert (det.scores >= 0.01).all() and (np.diff(det.scores) <= 0).all()
            assert det.boxes[:, 2].max() <= rec.width * 1.5 and det.boxes[:, 3].max() <= rec.height * 1.5


def test_eval_result_write(pth_result: EvalResult, tmp_path: Path) -> None:
    path, per_class_path = pth_result.write(tmp_path / "sub" / "metrics.json")
    data = json.loads(path.read_text())
    assert set(data) == {"AP50_95", "AP50", "AP75", "APs", "APm", "APl", "num_images", "num_detections"}
    assert data["AP50_95"] == pytest.approx(pth_result.metrics["AP50_95"], abs=1e-6)
    assert data["num_images"] == 128
    assert list(data) == sorted(data)  # keys sorted, stable for DVC
    assert len(path.read_text()) < 300  # `dvc metrics show` stays one short line per run
    rows = json.loads(per_class_path.read_text())      # per-class AP in its own file, as dvc plots rows
    assert per_class_path == tmp_path / "sub" / "metrics_per_class.json"
    assert {r["class"] for r in rows} == pth_result.per_class.keys()
    assert [r["AP50_95"] for r in rows] == sorted((r["AP50_95"] for r in rows), reverse=True)


def test_class_count_mismatch_is_a_data_error(nano_onnx: Path, coco128_dataset: DetectionDataset) -> None:
    three = DetectionDataset(["a", "b", "c"], [1, 2, 3], coco128_dataset.records[:2])
    with pytest.raises(DataError, match="80 classes"):
        evaluate(load_model(nano_onnx)[0], three, SIZE, progress=False)


# ------------------------------------------------------------------------------------ NMS


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


# ------------------------------------------------------------------------------------ decoding


def test_decode_outputs_matches_the_reference_formula() -> None:
    # 64 x 96 input: stride 8 -> 8 rows x 12 cols, stride 16 -> 4 x 6, stride 32 -> 2 x 3 (row-major)
    A = 8 * 12 + 4 * 6 + 2 * 3
    raw = torch.zeros(1, A, 7)
    raw[..., 4:] = torch.rand(1, A, 3)
    a8 = 1 * 12 + 2               # stride 8, row 1, col 2
    a16 = 96 + 2 * 6 + 3          # stride 16, row 2, col 3
    a32 = 96 + 24 + 1 * 3 + 2     # stride 32, row 1, col 2
    raw[0, a8, :4] = torch.tensor([0.25, 0.75, math.log(2.0), 0.0])
    raw[0, a16, :4] = torch.tensor([0.0, 0.0, 0.0, math.log(0.5)])
    raw[0, a32, :4] = torch.tensor([-0.5, 1.5, math.log(3.0), math.log(1.5)])
    out = decode_outputs(raw, (64, 96), STRIDES)
    assert out.shape == raw.shape
    # cx = (x + col) * s, cy = (y + row) * s, w = exp(log w) * s -- no +0.5
    assert out[0, a8, :4].tolist() == pytest.approx([(0.25 + 2) * 8, (0.75 + 1) * 8, 16, 8])
    assert out[0, a16, :4].tolist() == pytest.approx([3 * 16, 2 * 16, 16, 8])
    assert out[0, a32, :4].tolist() == pytest.approx([(-0.5 + 2) * 32, (1.5 + 1) * 32, 96, 48])
    assert out[0, 0, :4].tolist() == pytest.approx([0, 0, 8, 8])            # cell (0, 0): no +0.5
    assert torch.equal(out[..., 4:], raw[..., 4:])                          # passed through
    assert decode_outputs(raw.double(), (64, 96), STRIDES).dtype == torch.float64


class _StubBackend:
    """A backend returning one confident box at anchor (col 2, row 1) of stride 8, 416 input."""

    strides = (8, 16, 32)
    num_classes = 3

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        out = torch.zeros(images.shape[0], 3549, 8)
        out[:, :, 4] = 0.001
        out[:, 52 + 2, :4] = torch.tensor([-3.0, 0.5, math.log(8.0), math.log(4.0)])
        out[:, 52 + 2, 4:] = torch.tensor([0.9, 0.1, 0.95, 0.1])
        return out


def test_detect_maps_boxes_back_by_r_without_clipping() -> None:
    img = np.full((208, 104, 3), 80, np.uint8)           # r = 416 / 208 = 2
    (det,) = detect(_StubBackend(), [img], SIZE)
    assert len(det) == 1 and det.labels.tolist() == [1]
    # decoded in the canvas: cx = (-3 + 2) * 8 = -8, cy = 12, w = 64, h = 32 -> xyxy [-40, -4, 24, 28] / 2
    assert det.boxes[0].tolist() == pytest.approx([-20, -2, 12, 14])
    assert det.scores[0] == pytest.approx(0.9 * 0.95)
