"""COCO evaluation of the authors' nano weights (PyTorch and ONNX) on coco128."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from yolox.config import EvalParams
from yolox.data.records import DetectionDataset
from yolox.errors import DataError
from yolox.evaluate.coco_eval import METRIC_KEYS, EvalResult, evaluate
from yolox.inference import OnnxBackend, TorchBackend, load_model
from yolox.models.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES

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
