"""The training loop on CPU (REFERENCE.md 'Training recipe'; issue 4 items 5 and 7): deterministic mode,
background images, crowded batches through the SimOTA chunking, frozen parameters, the lr schedule per
iteration, and the EMA weights in the checkpoint.

Tiny runs: yolox-nano at 128 px, batch 4, 3 iterations an epoch, on a 16-image subset of the real coco128
prepared with ``yolox.data.prepare`` (tests/helpers/train.py); one torch thread (a loaded 2-core machine makes
two threads spin).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.train import SIZE, assert_same_weights, checkpoint, make_yolo_subset, tiny_params

import yolox.train.assign as assign_module
from yolox.config import DataParams
from yolox.data.prepare import prepare_dataset
from yolox.errors import ConfigError
from yolox.inference import load_torch_model
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights
from yolox.models.table import STRIDES
from yolox.ops.decode import anchor_points
from yolox.train.assign import simota_assign, simota_assign_reference
from yolox.train.checkpoint import read_run_id
from yolox.train.ema import ModelEMA
from yolox.train.schedule import WarmupCosineSchedule
from yolox.train.trainer import freeze_parameters, train, train_step

STEM = "backbone.backbone.stem"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run_a(prepared_subset: Path, nano_pth: Path,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Fine-tune the released nano weights (deterministic mode, stem frozen), recording the lr of every
    optimizer step."""
    params = tiny_params(deterministic=True, freeze=[STEM])
    params.model.weights = str(nano_pth)
    lrs: list[list[float]] = []
    real_step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        lrs.append([g["lr"] for g in self.param_groups])
        return real_step(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.SGD, "step", recording_step)
        result = train(params, prepared_subset, tmp_path_factory.mktemp("run_a"), progress=False,
                       run_id="run-a")
    return {"params": params, "result": result, "lrs": lrs, "state": checkpoint(result.checkpoint)}


# ------------------------------------------------------------------------------------ determinism


def test_deterministic_runs_give_identical_weights(run_a: dict[str, Any], prepared_subset: Path,
                                                   tmp_path: Path) -> None:
    assert not torch.are_deterministic_algorithms_enabled()        # restored after the run
    again = train(run_a["params"], prepared_subset, tmp_path / "b", progress=False)
    b = checkpoint(again.checkpoint)
    a = run_a["state"]
    assert_same_weights(a["model_raw"], b["model_raw"])
    assert_same_weights(a["model"], b["model"])
    assert [h["train/total_loss"] for h in a["history"]] == [h["train/total_loss"] for h in b["history"]]
    assert a["loader"] == b["loader"] and a["loader"]["sample_seed"] > 0

    other = run_a["params"].model_copy(deep=True)
    other.train.seed = 1
    c = checkpoint(train(other, prepared_subset, tmp_path / "c", progress=False).checkpoint)
    differs = [k for k, v in a["model_raw"].items() if v.dtype.is_floating_point and not torch.equal(v, c["model_raw"][k])]
    assert len(differs) > 100                                       # the seed matters


def test_checkpoint_contents(run_a: dict[str, Any]) -> None:
    state, result = run_a["state"], run_a["result"]
    assert state["epoch"] == 3 and state["iteration"] == 9 and state["ema_updates"] == 9
    assert state["phase"] == {"mosaic": False, "l1": True}          # the last epoch is the no-aug epoch
    assert state["mlflow_run_id"] == "run-a" == read_run_id(result.output_dir) == result.run_id
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert state["loader"]["seed"] == 0 and state["world_size"] == 1
    assert state["params"]["train"]["freeze"] == [STEM]
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3] and "val/AP50_95" in state["history"][-1]
    assert (result.output_dir / "history.csv").is_file()
    hist = state["history"]
    assert hist[2]["train/l1_loss"] > 0 and hist[0]["train/l1_loss"] == 0   # L1 only in the no-aug epoch


# ------------------------------------------------------------------------------------ schedule, freeze, EMA


def test_lr_follows_the_schedule_every_iteration(run_a: dict[str, Any]) -> None:
    tp = run_a["params"].train
    lr = tp.basic_lr_per_img * tp.batch_size
    schedule = WarmupCosineSchedule(lr, 9, 3, 3, tp.min_lr_ratio, tp.warmup_lr)
    lrs = run_a["lrs"]
    assert len(lrs) == 9
    for step, groups in enumerate(lrs):   # the authors' order: step k (from 0) runs at schedule(k)
        assert len(groups) == 3 and all(g == pytest.approx(schedule(step), rel=1e-12) for g in groups), step
    assert lrs[0][0] == tp.warmup_lr == 0.0                                           # first step: warmup_lr
    assert lrs[1][0] == pytest.approx(lr / 9) and lrs[3][0] == pytest.approx(lr)     # (it / 3)^2 warm-up
    assert lrs[-1][0] == pytest.approx(lr * tp.min_lr_ratio)                          # constant no-aug tail
    history = run_a["state"]["history"]
    assert [h["train/lr"] for h in history] == pytest.approx([schedule(2), schedule(5), schedule(8)])


def test_frozen_parameters_do_not_move(run_a: dict[str, Any], nano_pth: Path) -> None:
    start = build_model("yolox-nano", 80)
    load_weights(start, nano_pth)
    initial = start.state_dict()
    raw = run_a["state"]["model_raw"]
    frozen = [n for n, _ in start.named_parameters() if n.startswith(STEM)]
    assert frozen
    for name in frozen:
        assert torch.equal(raw[name], initial[name]), name
    moved = [n for n, _ in start.named_parameters() if not n.startswith(STEM) and not torch.equal(raw[n], initial[n])]
    assert len(moved) > 100

    model = build_model("yolox-nano", 80)
    assert freeze_parameters(model, [STEM, "head.cls_preds"]) == len(frozen) + 6
    with pytest.raises(ConfigError, match="'backbone.nope' matches no parameter"):
        freeze_parameters(model, ["backbone.nope"])


def test_ema_weights_are_the_checkpoint_model(run_a: dict[str, Any], prepared_subset: Path, nano_pth: Path,
                                              tmp_path: Path) -> None:
    state = run_a["state"]
    floats = [k for k, v in state["model"].items() if v.dtype.is_floating_point]
    assert sum(not torch.equal(state["model"][k], state["model_raw"][k]) for k in floats) > 100
    loaded, meta = load_torch_model(run_a["result"].checkpoint)   # the one loader: the EMA weights, and the meta
    assert_same_weights({k: v for k, v in loaded.state_dict().items()}, state["model"])
    assert meta.name == "yolox-nano" and meta.input_size == SIZE

    # One optimizer step from known weights: "model" = d * initial + (1 - d) * raw, d = decay(1).
    params = tiny_params(epochs=1, warmup_epochs=0, no_aug_epochs=0, max_iters_per_epoch=1)
    params.model.weights = str(nano_pth)
    one = checkpoint(train(params, prepared_subset, tmp_path, progress=False).checkpoint)
    start = build_model("yolox-nano", 80)
    load_weights(start, nano_pth)
    d = ModelEMA(start).decay(1)
    assert one["ema_updates"] == 1 and 0 < d < 1e-3
    for k, v in start.state_dict().items():
        if v.dtype.is_floating_point:
            want = v * d + one["model_raw"][k] * (1 - d)
            assert torch.allclose(one["model"][k], want, rtol=1e-5, atol=1e-6), k


def test_close_mosaic_epochs_close_the_mosaic_before_the_lr_floor(prepared_subset: Path,
                                                                  tmp_path: Path) -> None:
    """The authors' trainer closes the mosaic (and turns the L1 loss on) one epoch before its lr floor:
    ``close_mosaic_epochs = no_aug_epochs + 1`` gives that phase; the lr schedule follows ``no_aug_epochs`` only."""
    params = tiny_params(epochs=3, warmup_epochs=1, no_aug_epochs=1, close_mosaic_epochs=2, max_iters_per_epoch=2)
    history = train(params, prepared_subset, tmp_path / "out", progress=False).history
    assert [h["train/l1_loss"] > 0 for h in history] == [False, True, True]   # L1 from epoch 2 (mosaic closed)
    lr = params.train.basic_lr_per_img * params.train.batch_size
    floor = lr * params.train.min_lr_ratio
    assert history[1]["train/lr"] > 1.5 * floor and history[2]["train/lr"] == pytest.approx(floor)
    assert checkpoint(tmp_path / "out" / "last.pth")["phase"] == {"mosaic": False, "l1": True}
    assert params.train.model_copy(update={"close_mosaic_epochs": None}).mosaic_off_epochs == 1


# ------------------------------------------------------------------------------------ background, crowded


def test_background_images_train(coco128_dir: Path, tmp_path: Path) -> None:
    """Every training image without boxes: every batch has zero positives; the loss stays finite and the
    objectness still learns (towards 'nothing here')."""
    background = make_yolo_subset(coco128_dir, tmp_path / "bg", n=12, keep_labels=False)
    labelled = make_yolo_subset(coco128_dir, tmp_path / "val", n=4, start=12)
    prepared = prepare_dataset(DataParams(source=str(background), val_source=str(labelled)),
                               tmp_path / "prepared").out_dir
    params = tiny_params(epochs=2, no_aug_epochs=1)
    result = train(params, prepared, tmp_path / "out", progress=False)
    for row in result.history:
        assert row["train/num_fg"] == 0
        for k, v in row.items():
            assert math.isfinite(v), (k, v)
    assert result.history[1]["train/obj_loss"] > 0
    state = checkpoint(result.checkpoint)
    prior = build_model("yolox-nano", 80).state_dict()["head.obj_preds.0.bias"]   # a constant at init
    assert (state["model_raw"]["head.obj_preds.0.bias"] < prior).all()


def _crowded_targets(n_boxes: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n, 5) rows [class, cx, cy, w, h] of a jittered grid of small boxes covering the 128 image."""
    g = torch.Generator().manual_seed(0)
    side = math.ceil(math.sqrt(n_boxes))
    step = SIZE / side
    idx = torch.arange(n_boxes)
    targets = torch.zeros(batch, n_boxes, 5)
    for b in range(batch):
        targets[b, :, 0] = torch.randint(0, 80, (n_boxes,), generator=g).float()
        targets[b, :, 1] = (idx % side + 0.5) * step + torch.rand(n_boxes, generator=g) - 0.5
        targets[b, :, 2] = (idx // side + 0.5) * step + torch.rand(n_boxes, generator=g) - 0.5
        targets[b, :, 3:5] = step * (0.6 + 0.8 * torch.rand(n_boxes, 2, generator=g))
    return targets, torch.full((batch,), n_boxes, dtype=torch.int64)


def test_crowded_batch_is_assigned_in_chunks(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Hundreds of boxes per image: with a small cost-entry budget SimOTA assigns one image at a time
    (and logs it), the step trains, and the assignment is still exactly the per-image reference's."""
    torch.manual_seed(0)
    model = build_model("yolox-nano", 80).train()
    targets, counts = _crowded_targets(300)
    images = torch.rand(2, 3, SIZE, SIZE) * 255
    A = anchor_points((SIZE, SIZE), STRIDES)[0].shape[0]
    monkeypatch.setattr(assign_module, "MAX_COST_ENTRIES", 300 * A)           # room for one image
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    with caplog.at_level(logging.INFO, logger="yolox.assign"):
        loss = train_step(model, images, targets, counts, opt, scaler, model.strides)
    assert "SimOTA: crowded batch (300 boxes max per image), assigning 1 image(s) at a time" in caplog.text
    assert math.isfinite(float(loss.total.detach())) and loss.num_fg > 100

    # the chunked assignment is the reference's
    with torch.no_grad():
        raw = model(images)
    grid, stride = anchor_points((SIZE, SIZE), STRIDES)
    boxes = torch.cat([(raw[..., :2] + grid) * stride[:, None], torch.exp(raw[..., 2:4]) * stride[:, None]], -1)
    inputs = (boxes, raw[..., 5:], raw[..., 4], targets[..., 1:5], targets[..., 0].long(),
              torch.ones(2, 300, dtype=torch.bool), grid, stride)
    chunked, reference = simota_assign(*inputs), simota_assign_reference(*inputs)
    assert torch.equal(chunked.fg_mask, reference.fg_mask)
    fg = reference.fg_mask
    assert torch.equal(chunked.matched_gt[fg], reference.matched_gt[fg])
    assert torch.equal(chunked.matched_iou[fg], reference.matched_iou[fg])
