"""The YOLOX loss on a real letterboxed coco128 batch with the authors' nano weights, and its terms on a
hand-computed case (REFERENCE.md, 'Label assignment' step 5)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from yolox.data.records import DetectionDataset, ImageRecord
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights
from yolox.models.table import STRIDES
from yolox.ops.decode import anchor_points
from yolox.ops.letterbox import letterbox, to_input_tensor
from yolox.train.losses import REG_WEIGHT, yolox_loss

SIZE = 416
MAX_LABELS = 120  # targets are padded like the training collate (AugmentParams.max_labels)
BACKGROUND = ("000000000250.jpg", "000000000508.jpg")


def _batch(records: list[ImageRecord]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Letterboxed images (B, 3, 416, 416), targets (B, 120, 5) [class, cx, cy, w, h] canvas px, counts."""
    images, targets = [], torch.zeros(len(records), MAX_LABELS, 5)
    counts = torch.zeros(len(records), dtype=torch.long)
    for i, rec in enumerate(records):
        canvas, r = letterbox(cv2.imread(str(rec.path)), SIZE)
        images.append(canvas)
        b = torch.from_numpy(rec.boxes).double() * r
        n = len(rec.labels)
        targets[i, :n, 0] = torch.from_numpy(rec.labels).float()
        targets[i, :n, 1:3] = ((b[:, :2] + b[:, 2:]) / 2).float()
        targets[i, :n, 3:5] = (b[:, 2:] - b[:, :2]).float()
        counts[i] = n
    return to_input_tensor(images), targets, counts


@pytest.fixture(scope="module")
def nano(nano_pth: Path) -> torch.nn.Module:
    model = build_model("yolox-nano")
    load_weights(model, nano_pth)
    return model


@pytest.fixture(scope="module")
def real_batch(coco128_dataset: DetectionDataset):
    records = [r for r in coco128_dataset.records if len(r.labels)][:4]
    return _batch(records)


@pytest.fixture(scope="module")
def real_raw(nano: torch.nn.Module, real_batch) -> torch.Tensor:
    nano.train()  # as in training: BatchNorm on batch statistics
    with torch.no_grad():
        return nano(real_batch[0])


def test_real_batch_with_released_weights(real_batch, real_raw: torch.Tensor) -> None:
    _, targets, counts = real_batch
    out = yolox_loss(real_raw, targets, counts, (SIZE, SIZE))
    values = out.as_dict()
    assert all(math.isfinite(v) for v in values.values()), values
    # every image with boxes has candidates, and every claimed candidate ends up positive
    assert out.num_fg >= int((counts > 0).sum()) > 0
    assert 0 < float(out.iou) < 1                                    # mean (1 - IoU^2) over positives
    assert float(out.obj) > 0 and float(out.cls) > 0 and float(out.l1) == 0
    assert float(out.total) == pytest.approx(REG_WEIGHT * float(out.iou) + float(out.obj) + float(out.cls))


def test_trained_weights_have_lower_loss_than_fresh(real_batch, real_raw: torch.Tensor) -> None:
    images, targets, counts = real_batch
    torch.manual_seed(0)
    fresh = build_model("yolox-nano").train()
    with torch.no_grad():
        fresh_loss = yolox_loss(fresh(images), targets, counts, (SIZE, SIZE))
    trained_loss = yolox_loss(real_raw, targets, counts, (SIZE, SIZE))
    print(f"\nnano loss on 4 coco128 images: trained {trained_loss.as_dict()}")
    print(f"  fresh {fresh_loss.as_dict()}")
    assert float(trained_loss.iou) < float(fresh_loss.iou)
    assert float(trained_loss.total) < 0.7 * float(fresh_loss.total)


def test_background_only_batch(nano: torch.nn.Module, coco128_dataset: DetectionDataset) -> None:
    records = [r for r in coco128_dataset.records if r.path.name in BACKGROUND]
    assert len(records) == 2 and all(len(r.labels) == 0 for r in records)
    images, targets, counts = _batch(records)
    assert int(counts.sum()) == 0
    nano.eval()
    with torch.no_grad():
        raw = nano(images)
    out = yolox_loss(raw, targets, counts, (SIZE, SIZE), use_l1=True)
    assert out.num_fg == 0
    assert float(out.iou) == 0.0 and float(out.cls) == 0.0 and float(out.l1) == 0.0
    # objectness: every prediction is a negative, divided by max(num_fg, 1) = 1
    want = F.binary_cross_entropy_with_logits(raw[..., 4], torch.zeros_like(raw[..., 4]), reduction="sum")
    assert math.isfinite(float(out.obj)) and float(out.obj) == pytest.approx(float(want), rel=1e-5)
    assert float(out.total) == pytest.approx(float(want), rel=1e-5)


def test_background_only_batch_without_padding() -> None:
    raw = torch.randn(2, 3549, 85)
    out = yolox_loss(raw, torch.zeros(2, 0, 5), torch.zeros(2, dtype=torch.long), (SIZE, SIZE))
    assert out.num_fg == 0 and float(out.iou) == 0.0 and math.isfinite(float(out.obj))


def test_use_l1_adds_a_positive_term(real_batch, real_raw: torch.Tensor) -> None:
    _, targets, counts = real_batch
    plain = yolox_loss(real_raw, targets, counts, (SIZE, SIZE))
    with_l1 = yolox_loss(real_raw, targets, counts, (SIZE, SIZE), use_l1=True)
    assert float(plain.l1) == 0.0 and float(with_l1.l1) > 0
    assert with_l1.num_fg == plain.num_fg
    for part in ("iou", "obj", "cls"):
        assert float(getattr(with_l1, part)) == pytest.approx(float(getattr(plain, part)))
    assert float(with_l1.total) == pytest.approx(float(plain.total) + float(with_l1.l1), rel=1e-6)


def test_gradients_flow(nano_pth: Path, real_batch) -> None:
    images, targets, counts = real_batch
    model = build_model("yolox-nano")
    load_weights(model, nano_pth)
    model.train()
    out = yolox_loss(model(images[:2]), targets[:2], counts[:2], (SIZE, SIZE), use_l1=True)
    out.total.backward()
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    nonzero = [n for n, p in params.items() if p.grad.abs().sum() > 0]
    assert len(nonzero) == len(params)
    for name in ("head.cls_preds.0.weight", "head.reg_preds.1.weight", "head.obj_preds.2.bias",
                 "backbone.backbone.stem.conv.conv.weight"):
        assert params[name].grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------ hand-computed


def _raw_for(boxes: dict[int, list[float]], size: int = 64, num_classes: int = 4) -> torch.Tensor:
    """Raw outputs (1, A, 5 + C) whose decoded boxes are ``boxes`` (anchor -> cxcywh) and a 1x1 box at
    (60, 60) elsewhere; objectness logits 0, class logits -4."""
    grid, stride = anchor_points((size, size), STRIDES)
    A = grid.shape[0]
    want = torch.tensor([60.0, 60.0, 1.0, 1.0]).repeat(A, 1)
    for a, b in boxes.items():
        want[a] = torch.tensor(b)
    raw = torch.zeros(1, A, 5 + num_classes)
    raw[0, :, :2] = want[:, :2] / stride[:, None] - grid
    raw[0, :, 2:4] = torch.log(want[:, 2:] / stride[:, None])
    raw[0, :, 5:] = -4.0
    return raw


def test_loss_terms_by_hand() -> None:
    gt = [28.0, 28.0, 20.0, 20.0]
    a1, a2, a3 = 3 * 8 + 3, 2 * 8 + 2, 4 * 8 + 4    # stride-8 cells (3,3), (2,2), (4,4): all in gt's prior
    raw = _raw_for({a1: gt, a2: [28.0, 28.0, 20.0, 10.0], a3: [28.0, 28.0, 20.0, 10.0]})
    raw[0, a2, 5] = -3.0                             # a2 cheaper than a3 (class-0 probability higher)
    raw[0, a3, 5] = -3.5
    targets = torch.zeros(1, 3, 5)
    targets[0, 0] = torch.tensor([0.0, *gt])
    out = yolox_loss(raw, targets, torch.tensor([1]), (64, 64), use_l1=True)
    # IoUs 1, 0.5, 0.5 -> dynamic k = int(2.0) = 2 -> positives a1 (IoU 1) and a2 (IoU 0.5)
    assert out.num_fg == 2

    def sp(x: float) -> float:  # softplus
        return math.log1p(math.exp(x))

    A = raw.shape[1]                                   # 84 anchor points at 64x64
    iou = ((1 - 1.0**2) + (1 - 0.5**2)) / 2
    obj = (2 * sp(-0.0) + (A - 2) * sp(0.0)) / 2       # BCE(0, 1) = BCE(0, 0) = log 2
    # class targets one_hot * IoU: BCE_logits(x, t) = softplus(x) - x * t
    cls_a1 = (sp(-4.0) + 4.0 * 1.0) + 3 * sp(-4.0)
    cls_a2 = (sp(-3.0) + 3.0 * 0.5) + 3 * sp(-4.0)
    cls = (cls_a1 + cls_a2) / 2
    l1 = abs(math.log(10 / 8) - math.log(20 / 8 + 1e-8)) / 2   # only a2's log h is off
    assert float(out.iou) == pytest.approx(iou, abs=1e-6)
    assert float(out.obj) == pytest.approx(obj, rel=1e-6)
    assert float(out.cls) == pytest.approx(cls, rel=1e-6)
    assert float(out.l1) == pytest.approx(l1, rel=1e-5)
    assert float(out.total) == pytest.approx(5.0 * iou + obj + cls + l1, rel=1e-6)


def test_loss_accepts_half_precision_outputs() -> None:
    raw = _raw_for({27: [28.0, 28.0, 20.0, 20.0]}).half()
    targets = torch.tensor([[[1.0, 28.0, 28.0, 20.0, 20.0]]])
    out = yolox_loss(raw, targets, torch.tensor([1]), (64, 64))
    assert out.total.dtype == torch.float32 and math.isfinite(float(out.total)) and out.num_fg >= 1
    assert np.isfinite(list(out.as_dict().values())).all()
