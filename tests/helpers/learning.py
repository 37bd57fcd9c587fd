"""The learning test's short run (tests/train/test_learning.py), shared with bench/learning_ci.py, which runs
it beside the authors' code to calibrate the test: from the authors' yolox-nano weights with the class
predictors re-initialised (a fresh model's, seed 0), the first 20 coco128 images prepared (seeded 80/20 split:
16 train images), no augmentation (letterbox only), 416 px, batch 8, lr 0.01/64 per image (the authors'),
warm-up 1 epoch then cosine, EMA, for ``EPOCHS`` epochs of 2 iterations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from helpers.train import make_yolo_subset
from yolox.config import DataParams, PipelineParams
from yolox.data.prepare import prepare_dataset
from yolox.data.records import load_prepared
from yolox.evaluate.coco_eval import evaluate
from yolox.inference import TorchBackend
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights
from yolox.train.trainer import train

IMAGES, SIZE, BATCH, EPOCHS = 20, 416, 8, 24


def prepare_learning_subset(coco128_dir: Path, root: Path) -> Path:
    """The first ``IMAGES`` coco128 images, prepared with a seeded 80/20 split (16 train, 4 val)."""
    source = make_yolo_subset(coco128_dir, root / "raw", n=IMAGES)
    return prepare_dataset(DataParams(source=str(source), val_fraction=0.2, split_seed=0), root / "prepared").out_dir


def reinit_start(nano_pth: Path, out: Path) -> Path:
    """The authors' nano weights with the class predictors of a fresh model (``torch.manual_seed(0)``)."""
    model = build_model("yolox-nano", 80)
    load_weights(model, nano_pth)
    torch.manual_seed(0)
    fresh = build_model("yolox-nano", 80).state_dict()
    model.load_state_dict({**model.state_dict(), **{k: v for k, v in fresh.items() if k.startswith("head.cls_preds.")}})
    torch.save({"model": model.state_dict()}, out)
    return out


def learning_params(start: Path, out: Path, seed: int = 0) -> PipelineParams:
    """The learning run as params: no augmentation (letterbox only), no no-aug phase (no L1 loss)."""
    return PipelineParams.model_validate({
        "model": {"name": "yolox-nano", "input_size": SIZE, "weights": str(start)},
        "augment": {"mosaic_prob": 0.0, "enable_mixup": False, "hsv_prob": 0.0, "flip_prob": 0.0,
                    "multiscale_range": 0},
        "train": {"epochs": EPOCHS, "batch_size": BATCH, "basic_lr_per_img": 0.01 / 64, "warmup_epochs": 1,
                  "no_aug_epochs": 0, "eval_interval": EPOCHS + 1, "workers": 0, "seed": seed, "device": "cpu",
                  "freeze": [], "output_dir": str(out)},
    })


def run_learning(prepared: Path, start: Path, out: Path, seed: int = 0) -> dict[str, Any]:
    """Train as the learning test does; returns the EMA model's fit AP50:95 and the last epoch's mean total
    loss."""
    result = train(learning_params(start, out, seed), prepared, progress=False)
    model = build_model("yolox-nano", 80)
    model.load_state_dict(torch.load(result.checkpoint, map_location="cpu", weights_only=True)["model"])
    return {"fit": fit_ap(model, prepared), "last_loss": float(result.history[-1]["train/total_loss"]),
            "losses": [round(h["train/total_loss"], 3) for h in result.history]}


def fit_ap(model: torch.nn.Module, prepared: Path) -> float:
    """AP50:95 of ``model`` on the train split of ``prepared`` at ``SIZE`` (the default eval params)."""
    return float(evaluate(TorchBackend(model.eval()), load_prepared(prepared, "train"), SIZE,
                          PipelineParams().eval,
                          progress=False).metrics["AP50_95"])
