"""ONNX export of yolox-nano with the authors' weights: check against PyTorch, metadata, dynamic batch,
and the same COCO AP as the checkpoint on real coco128 images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from yolox.config import EvalParams
from yolox.data.records import DetectionDataset
from yolox.errors import ExportError
from yolox.evaluate.coco_eval import evaluate
from yolox.export.onnx_export import check_onnx, export_onnx, read_metadata
from yolox.inference import OnnxBackend, TorchBackend, load_model, preprocess
from yolox.models.build import build_model
from yolox.models.coco_classes import COCO_CLASSES
from yolox.models.yolox import YOLOX

SIZE = 416


@pytest.fixture(scope="module")
def exported(nano_model: YOLOX, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "models" / "nano.onnx"
    path = export_onnx(nano_model, out, SIZE, list(COCO_CLASSES), "yolox-nano", opset=17, dynamic_batch=True)
    assert path == out and out.is_file()
    return out


@pytest.fixture(scope="module")
def image_paths(coco128_dir: Path) -> list[Path]:
    return sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))


def test_check_onnx_on_real_images(nano_model: YOLOX, exported: Path, image_paths: list[Path]) -> None:
    result = check_onnx(nano_model, exported, image_paths[:4], SIZE, max_abs_diff=1e-3)
    print(f"\nexported ONNX vs PyTorch, 4 coco128 images: max |diff| = {result.max_abs_diff:.3g}")
    assert result.passed and 0 < result.max_abs_diff <= 1e-3
    assert result.num_check_images == 4 and result.opset == 17 and result.path == exported
    # the same comparison fails when the limit is below the measured difference
    strict = check_onnx(nano_model, exported, image_paths[:2], SIZE, max_abs_diff=1e-9)
    assert not strict.passed


def test_check_onnx_without_readable_images(nano_model: YOLOX, exported: Path, tmp_path: Path) -> None:
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ExportError, match="could be read"):
        check_onnx(nano_model, exported, [bad], SIZE, max_abs_diff=1e-3)


def test_metadata_and_graph(exported: Path) -> None:
    meta = read_metadata(exported)
    assert meta["names"] == list(COCO_CLASSES) and len(meta["names"]) == 80
    assert meta["input_size"] == 416
    assert meta["model_name"] == "yolox-nano"
    assert meta["strides"] == [8, 16, 32]
    graph = onnx.load(str(exported))
    onnx.checker.check_model(graph)
    opsets = {o.domain: o.version for o in graph.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == 17
    (inp,) = graph.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "images" and dims[0].dim_param and not dims[0].dim_value  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [3, SIZE, SIZE]
    assert [o.name for o in graph.graph.output] == ["output"]


def test_dynamic_batch_of_two(nano_model: YOLOX, exported: Path, image_paths: list[Path]) -> None:
    backend = OnnxBackend(exported)
    assert backend.fixed_batch is None and backend.num_classes == 80
    batch, _ = preprocess([cv2.imread(str(p)) for p in image_paths[4:6]], SIZE)
    out = backend(batch)
    assert out.shape == (2, 3549, 85)
    one = torch.cat([backend(batch[i:i + 1]) for i in range(2)])
    assert torch.allclose(out, one, atol=1e-4)
    torch_out = TorchBackend(nano_model)(batch)
    assert float((out - torch_out).abs().max()) <= 1e-3
    # objectness and class scores are probabilities, boxes raw offsets
    assert float(out[..., 4:].min()) >= 0 and float(out[..., 4:].max()) <= 1
    assert float(out[..., :4].min()) < 0


def test_exported_model_has_the_checkpoint_ap(nano_model: YOLOX, exported: Path,
                                              coco128_dataset: DetectionDataset) -> None:
    ds = coco128_dataset
    subset = DetectionDataset(ds.names, ds.category_ids, ds.records[:32])
    assert sum(len(r.labels) for r in subset.records) > 100
    onnx_backend = load_model(exported)[0]
    assert isinstance(onnx_backend, OnnxBackend)
    ap_onnx = evaluate(onnx_backend, subset, SIZE, EvalParams(), progress=False).metrics["AP50_95"]
    ap_pth = evaluate(TorchBackend(nano_model), subset, SIZE, EvalParams(), progress=False).metrics["AP50_95"]
    print(f"\n32 coco128 images, AP50:95: exported ONNX {ap_onnx:.4f}, checkpoint {ap_pth:.4f}")
    assert abs(ap_onnx - ap_pth) <= 0.001
    assert ap_pth > 0.2


def test_export_failure_is_an_export_error(nano_model: YOLOX, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    out = tmp_path / "x.onnx"
    with pytest.raises(ExportError, match="unsupported operator") as err:
        export_onnx(nano_model, out, SIZE, list(COCO_CLASSES), "yolox-nano", simplify=False)
    assert "yolox-nano" in str(err.value) and str(out) in str(err.value)


def test_export_fixed_batch_without_slim(tmp_path: Path, image_paths: list[Path]) -> None:
    torch.manual_seed(0)
    model = build_model("yolox-nano", num_classes=2).eval()
    path = export_onnx(model, tmp_path / "fixed.onnx", 128, ["cat", "dog"], "yolox-nano",
                       dynamic_batch=False, simplify=False)
    backend = OnnxBackend(path)
    assert backend.fixed_batch == 1 and backend.num_classes == 2
    assert read_metadata(path)["names"] == ["cat", "dog"]
    batch, _ = preprocess([cv2.imread(str(p)) for p in image_paths[:3]], 128)
    out = backend(batch)  # fed one image at a time
    assert out.shape == (3, (16 * 16 + 8 * 8 + 4 * 4), 7)
    assert np.isfinite(out.numpy()).all()
