"""The step-parity test's protocol (tests/train/test_step_parity.py), shared with bench/step_parity.py, which
runs the same step with the authors' code to measure the test's figures: the shared yolox-nano weights, train
mode, the first 8 coco128 images with boxes (sorted by file name) letterboxed to 416 with their boxes (targets
padded to 120 rows), SGD with the authors' groups at lr 0.01/64 * 8, one step."""

from __future__ import annotations

from pathlib import Path

import cv2
import torch

from yolox.models.build import build_model
from yolox.models.checkpoint import read_state_dict
from yolox.ops.letterbox import letterbox, to_input_tensor
from yolox.train.optim import build_optimizer
from yolox.train.trainer import prepare_for_training, train_step

SIZE, BATCH, MAX_LABELS, LR_PER_IMG = 416, 8, 120, 0.01 / 64


def parity_batch(records) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images (8, 3, 416, 416) float32 BGR, targets (8, 120, 5) [class, cx, cy, w, h] input pixels, counts (8,)
    from the first 8 records with boxes, in file-name order."""
    chosen = sorted((r for r in records if len(r.labels)), key=lambda r: r.path.name)[:BATCH]
    images, targets = [], torch.zeros(BATCH, MAX_LABELS, 5)
    counts = torch.zeros(BATCH, dtype=torch.long)
    for i, rec in enumerate(chosen):
        canvas, r = letterbox(cv2.imread(str(rec.path)), SIZE)
        images.append(canvas)
        b = torch.from_numpy(rec.boxes).double() * r
        n = min(len(rec.labels), MAX_LABELS)
        targets[i, :n, 0] = torch.from_numpy(rec.labels[:n]).float()
        targets[i, :n, 1:3] = ((b[:n, :2] + b[:n, 2:]) / 2).float()
        targets[i, :n, 3:5] = (b[:n, 2:] - b[:n, :2]).float()
        counts[i] = n
    return to_input_tensor(images), targets, counts


def update_l1(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, float]:
    """Sum of |after - before| (float64) per group of parameters named by their first two name parts."""
    sums: dict[str, float] = {}
    for name, p in after.items():
        key = ".".join(name.split(".")[:2])
        sums[key] = sums.get(key, 0.0) + float((p.detach().double() - before[name].double()).abs().sum())
    return sums


def one_step(weights: Path, batch, channels_last: bool) -> tuple[dict[str, float], dict[str, float]]:
    """Our trainer's step (:func:`train_step`) from ``weights``: (loss terms, update sizes)."""
    model = build_model("yolox-nano", 80)
    model.load_state_dict(read_state_dict(weights, "model"), strict=True)
    model.train()
    fmt = prepare_for_training(model, torch.device("cpu"), channels_last)
    optimizer = build_optimizer(model, lr=LR_PER_IMG * BATCH)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    images, targets, counts = batch
    loss = train_step(model, images.contiguous(memory_format=fmt), targets, counts, optimizer,
                      torch.amp.GradScaler("cuda", enabled=False), model.strides)
    return loss.as_dict(), update_l1(before, dict(model.named_parameters()))
