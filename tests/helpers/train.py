"""Tiny training runs on CPU, shared by the training, resume, interruption, distributed and fault tests: a
coco128 subset in YOLO layout and prepared, the tiny params, checkpoints read and compared, a signal sent from
inside a step.

Tiny runs: yolox-nano at 128 px, batch 4, 3 iterations an epoch, on a 16-image subset of the real coco128
prepared with ``yolox.data.prepare``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from yolox.config import DataParams, PipelineParams
from yolox.data.prepare import link_or_copy, prepare_dataset

SIZE = 128


def make_yolo_subset(coco128_dir: Path, root: Path, n: int = 16, start: int = 0, keep_labels: bool = True) -> Path:
    """A YOLO-layout copy of coco128 images ``start .. start + n`` (sorted by name): images hard-linked (copied
    across disks; not symlinked: prepare reads nothing that resolves outside the dataset root), label files
    copied (none when ``keep_labels`` is False: every image is then a background image)."""
    images, labels = root / "images" / "train2017", root / "labels" / "train2017"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    src = sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))
    for path in src[start:start + n]:
        link_or_copy(path, images / path.name)
        label = coco128_dir / "labels" / "train2017" / f"{path.stem}.txt"
        if keep_labels and label.is_file():
            shutil.copy(label, labels / label.name)
    shutil.copy(coco128_dir / "dataset.yaml", root / "dataset.yaml")
    return root


def prepare_subset(coco128_dir: Path, tmp: Path, n: int = 16) -> Path:
    """A prepared dataset of ``n`` coco128 images (seeded 75/25 split)."""
    source = make_yolo_subset(coco128_dir, tmp / "raw", n=n)
    return prepare_dataset(DataParams(source=str(source), val_fraction=0.25), tmp / "prepared").out_dir


def tiny_params(**train: Any) -> PipelineParams:
    """yolox-nano at 128 px from scratch, batch 4, 3 epochs of 3 iterations (warm-up 1, no-aug 1: all
    three phases), no multi-scale, CPU, evaluation only at the end; ``train`` overrides TrainParams."""
    raw: dict[str, Any] = {
        "model": {"name": "yolox-nano", "input_size": SIZE, "weights": None},
        "augment": {"multiscale_range": 0},
        "train": {"epochs": 3, "batch_size": 4, "warmup_epochs": 1, "no_aug_epochs": 1, "max_iters_per_epoch": 3,
                  "workers": 0, "device": "cpu", "eval_interval": 100, "seed": 0, **train},
        "eval": {"batch_size": 4},
    }
    return PipelineParams.model_validate(raw)


def checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint as saved (``weights_only``), on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], exact: bool = True) -> None:
    """The same keys and the same tensors (bit for bit, or within rtol 1e-5 / atol 1e-6)."""
    assert a.keys() == b.keys()
    for k, x in a.items():
        y = b[k]
        same = torch.equal(x, y) if exact else torch.allclose(x.float(), y.float(), rtol=1e-5, atol=1e-6)
        assert same, f"{k} differs (max abs diff {float((x.float() - y.float()).abs().max()):.3g})"


def assert_same_run(want: dict[str, Any], got: dict[str, Any]) -> None:
    """Two runs' final checkpoints (:func:`checkpoint`) of the same params and seed, one of them interrupted
    and resumed: the same epoch, iteration and EMA updates; the same weights (raw and EMA) and momentum to
    rounding; the same loss every epoch."""
    assert (got["epoch"], got["iteration"], got["ema_updates"]) == (want["epoch"], want["iteration"],
                                                                    want["ema_updates"])
    assert_same_weights(want["model_raw"], got["model_raw"], exact=False)
    assert_same_weights(want["model"], got["model"], exact=False)
    for a, b in zip(want["optimizer"]["state"].values(), got["optimizer"]["state"].values()):
        assert torch.allclose(a["momentum_buffer"], b["momentum_buffer"], rtol=1e-5, atol=1e-7)
    assert [h["train/total_loss"] for h in got["history"]] == pytest.approx(
        [h["train/total_loss"] for h in want["history"]], rel=1e-6)


def signal_at_step(monkeypatch: pytest.MonkeyPatch, signum: int, step: int) -> None:
    """Send ``signum`` to this process while it runs optimizer step ``step`` (from 1) of the run."""
    from yolox.train import trainer

    real, calls = trainer.train_step, [0]

    def step_with_signal(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == step:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", step_with_signal)
