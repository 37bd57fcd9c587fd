"""Learning test: a short real training run must learn as much as the authors' code does in the same run.

Every piece of a step can be exact while a run still learns badly (issue 9), so this trains end to end:
from the authors' yolox-nano weights with the class predictors re-initialised (a fresh model's, seed 0),
the first 20 coco128 images prepared (seeded 80/20 split: 16 train images), no augmentation (letterbox
only), 416 px, batch 8, lr 0.01/64 per image (the authors'), warm-up 1 epoch then cosine, EMA, for
``EPOCHS`` epochs of 2 iterations. The EMA model's AP50:95 on its 16 train images ("fit") and the mean
total loss of the last epoch are compared with the figures the AUTHORS' code reaches under the same
settings from the same weights file (``bench/learning_ci.py``: their Exp, data loader, optimizer,
scheduler and EMA in their trainer's order, ``bench/authors_loop.py``). Calibrated on 2026-12-01 on this
machine class (2 CPU cores, torch 2.13 CPU), with::

    YOLOX_ASSETS_DIR=../shared .venv/bin/python bench/learning_ci.py \
        --peer-python /work/peer/venv/bin/python --peer-src /work/peer/yolox

Over seeds 0, 1, 2 (one thread per run) it printed, theirs: fit AP50:95 0.2115 / 0.3134 / 0.2625 (mean
0.2625), last-epoch loss 4.370 / 4.293 / 4.327; ours: fit 0.1320 / 0.2859 / 0.2706 (mean 0.2295), last loss
4.577 / 4.491 / 4.245. The fit AP of one short run varies with the order of the batches (0.13-0.31 above, on
both sides), the loss curve much less (within 4 % of the authors' mean at every epoch from the third, on
their side; within 10 % on ours). So the test asserts the loss curve closely and the AP loosely: the AP
must leave the start (about 0.005) for at least 0.35x the authors' mean; a trainer that learns half as fast,
or not at all, fails both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from test_train import make_yolo_subset

from yolox.config import DataParams, PipelineParams
from yolox.data.prepare import prepare_dataset
from yolox.data.records import load_prepared
from yolox.evaluate.coco_eval import evaluate
from yolox.inference import TorchBackend
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights
from yolox.train.trainer import train

IMAGES, SIZE, BATCH, EPOCHS = 20, 416, 8, 24
AUTHORS_FIT_AP = 0.2625    # mean over 3 seeds of the authors' code (module docstring)
AUTHORS_LOSSES = (23.384, 18.407, 13.651, 11.363, 10.053, 9.192, 8.536, 7.938, 7.368, 6.837, 6.425, 6.032,
                  5.679, 5.414, 5.149, 5.001, 4.879, 4.682, 4.621, 4.547, 4.482, 4.435, 4.363, 4.33)
"""The authors' mean total loss of each epoch (same runs)."""


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
    """The run of this test as params: no augmentation (letterbox only), no no-aug phase (no L1 loss)."""
    return PipelineParams.model_validate({
        "model": {"name": "yolox-nano", "input_size": SIZE, "weights": str(start)},
        "augment": {"mosaic_prob": 0.0, "enable_mixup": False, "hsv_prob": 0.0, "flip_prob": 0.0,
                    "multiscale_range": 0},
        "train": {"epochs": EPOCHS, "batch_size": BATCH, "basic_lr_per_img": 0.01 / 64, "warmup_epochs": 1,
                  "no_aug_epochs": 0, "eval_interval": EPOCHS + 1, "workers": 0, "seed": seed, "device": "cpu",
                  "freeze": [], "output_dir": str(out)},
    })


def run_learning(prepared: Path, start: Path, out: Path, seed: int = 0) -> dict[str, Any]:
    """Train as this test does; returns the EMA model's fit AP50:95 and the last epoch's mean total loss."""
    result = train(learning_params(start, out, seed), prepared, progress=False)
    model = build_model("yolox-nano", 80)
    model.load_state_dict(torch.load(result.checkpoint, map_location="cpu", weights_only=True)["model"])
    fit = evaluate(TorchBackend(model.eval()), load_prepared(prepared, "train"), SIZE, PipelineParams().eval,
                   progress=False).metrics["AP50_95"]
    return {"fit": float(fit), "last_loss": float(result.history[-1]["train/total_loss"]),
            "losses": [round(h["train/total_loss"], 3) for h in result.history]}


def test_short_run_learns_as_well_as_the_authors_code(coco128_dir: Path, nano_pth: Path, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        prepared = prepare_learning_subset(coco128_dir, tmp_path)
        start = reinit_start(nano_pth, tmp_path / "start.pth")
        model = build_model("yolox-nano", 80)
        load_weights(model, start)
        before = evaluate(TorchBackend(model.eval()), load_prepared(prepared, "train"), SIZE, PipelineParams().eval,
                          progress=False).metrics["AP50_95"]
        got = run_learning(prepared, start, tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    assert before < 0.01
    assert len(got["losses"]) == len(AUTHORS_LOSSES) == EPOCHS
    ratios = [ours / theirs for ours, theirs in zip(got["losses"][2:], AUTHORS_LOSSES[2:])]
    assert max(ratios) <= 1.15, f"loss per epoch {got['losses']} vs the authors' {AUTHORS_LOSSES}"
    assert got["last_loss"] <= 1.1 * AUTHORS_LOSSES[-1], got
    assert got["fit"] >= 0.35 * AUTHORS_FIT_AP, got
