"""Training building blocks: lr schedule, optimizer groups, EMA, checkpoints, RNG state."""

from __future__ import annotations

import itertools
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from yolox.errors import CheckpointError
from yolox.models.build import build_model
from yolox.train import checkpoint as ckpt_module
from yolox.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from yolox.train.ema import ModelEMA
from yolox.train.optim import build_optimizer
from yolox.train.schedule import WarmupCosineSchedule

# ------------------------------------------------------------------------------------ schedule

LR = 0.01
SCHED = WarmupCosineSchedule(lr=LR, total_iters=1000, warmup_iters=100, no_aug_iters=150)
MIN_LR = LR * 0.05


def test_schedule_warmup_is_quadratic_from_zero() -> None:
    assert SCHED(0) == 0.0
    assert SCHED(100) == pytest.approx(LR)
    assert SCHED(50) == pytest.approx(LR / 4)
    for it in range(0, 101, 7):
        assert SCHED(it) == pytest.approx(LR * (it / 100) ** 2, abs=1e-15)
    warm = WarmupCosineSchedule(lr=LR, total_iters=1000, warmup_iters=100, no_aug_iters=150, warmup_lr=0.001)
    assert warm(0) == pytest.approx(0.001) and warm(100) == pytest.approx(LR)
    assert warm(50) == pytest.approx(0.009 * 0.25 + 0.001)


def test_schedule_tail_is_min_lr() -> None:
    for it in (850, 851, 900, 999, 1000, 1200):
        assert SCHED(it) == pytest.approx(MIN_LR)


def test_schedule_cosine_part() -> None:
    values = [SCHED(it) for it in range(100, 851)]
    assert all(a > b for a, b in itertools.pairwise(values))      # strictly decreasing
    assert all(MIN_LR - 1e-12 <= v <= LR + 1e-12 for v in values)
    assert SCHED(101) == pytest.approx(LR, rel=1e-4)              # continuous at both ends
    assert SCHED(849) == pytest.approx(MIN_LR, rel=1e-3)
    assert SCHED(100 + 375) == pytest.approx((LR + MIN_LR) / 2)   # half way: cos = 0
    it = 300
    want = MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * (it - 100) / 750))
    assert SCHED(it) == pytest.approx(want)


def test_schedule_without_warmup() -> None:
    s = WarmupCosineSchedule(lr=LR, total_iters=100, warmup_iters=0, no_aug_iters=0)
    assert s(0) == pytest.approx(LR) and s(100) == pytest.approx(MIN_LR)


# ------------------------------------------------------------------------------------ optimizer


@pytest.mark.parametrize("name", ["yolox-nano", "yolox-s", "yolox-darknet53"])
def test_optimizer_groups(name: str) -> None:
    model = build_model(name)
    opt = build_optimizer(model, lr=0.02, momentum=0.9, weight_decay=5e-4)
    assert len(opt.param_groups) == 3
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))                                    # no parameter twice
    assert set(ids) == {id(p) for p in model.parameters()}              # and none left out
    bn_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    biases = {id(m.bias) for m in model.modules() if getattr(m, "bias", None) is not None}
    conv_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d)}
    g_bn, g_w, g_b = ({id(p) for p in g["params"]} for g in opt.param_groups)
    assert g_bn == bn_weights and g_b == biases and g_w == conv_weights
    assert opt.param_groups[0]["weight_decay"] == 0 and opt.param_groups[2]["weight_decay"] == 0
    assert opt.param_groups[1]["weight_decay"] == 5e-4
    assert all(g["nesterov"] and g["momentum"] == 0.9 and g["lr"] == 0.02 for g in opt.param_groups)
    # BN biases and the head's prediction biases are in the no-decay group
    names = {id(p): n for n, p in model.named_parameters()}
    assert "head.cls_preds.0.bias" in {names[i] for i in g_b}
    assert any(names[i].endswith("bn.bias") for i in g_b)


def test_optimizer_decays_only_conv_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4))
    opt = build_optimizer(model, lr=0.1, momentum=0.9, weight_decay=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)                                   # only weight decay moves them
    opt.step()
    after = dict(model.named_parameters())
    # first Nesterov step with a zero gradient: d = wd * p, buf = d, step = d + 0.9 * buf = 1.9 * d
    assert torch.allclose(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5 * 1.9))
    for n in ("0.bias", "1.weight", "1.bias"):
        assert torch.equal(after[n], before[n]), n


# ------------------------------------------------------------------------------------ EMA


def _small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.SiLU())


def test_ema_decay_formula() -> None:
    ema = ModelEMA(_small())
    assert ema.decay(0) == 0.0
    for u in (1, 100, 2000, 10_000, 100_000):
        assert ema.decay(u) == pytest.approx(0.9998 * (1 - math.exp(-u / 2000)))
    assert ema.decay(100_000) == pytest.approx(0.9998, rel=1e-12)
    assert ModelEMA(_small(), decay=0.99).decay(2000) == pytest.approx(0.99 * (1 - math.exp(-1)))


def test_ema_moves_towards_the_model() -> None:
    torch.manual_seed(0)
    model = _small()
    ema = ModelEMA(model, updates=3000)
    assert not ema.ema.training and not any(p.requires_grad for p in ema.ema.parameters())
    start = {k: v.clone() for k, v in ema.ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.add_(2.0)
        model[1].num_batches_tracked.add_(5)
    ema.update(model)
    assert ema.updates == 3001
    d = 0.9998 * (1 - math.exp(-3001 / 2000))
    target = model.state_dict()
    for k, v in ema.ema.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, d * start[k] + (1 - d) * target[k], atol=1e-6), k
            gap_before = (target[k] - start[k]).abs().sum()
            if gap_before > 0:
                assert (target[k] - v).abs().sum() < gap_before, k  # strictly closer to the model
        else:
            assert torch.equal(v, start[k]), k                      # integer buffers are not averaged
    # the EMA is a separate copy: the model's own tensors are untouched
    assert not torch.equal(ema.ema[0].weight, model[0].weight)


def test_ema_unwraps_a_wrapped_model() -> None:
    class Wrapper(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

    inner = _small()
    ema = ModelEMA(Wrapper(inner))
    assert set(ema.ema.state_dict()) == set(inner.state_dict())
    with torch.no_grad():
        inner[0].weight.add_(1.0)
    ema.update(Wrapper(inner))  # first update: decay(1) ~ 5e-4, nearly a copy
    assert torch.allclose(ema.ema[0].weight, inner[0].weight, atol=1e-3)


# ------------------------------------------------------------------------------------ checkpoints


def _train_state(tag: float) -> dict:
    return {"model": {"w": torch.full((3,), tag)}, "model_raw": {"w": torch.zeros(3)}, "optimizer": {},
            "epoch": int(tag), "iteration": 10 * int(tag)}


def test_save_checkpoint_round_trip(tmp_path: Path) -> None:
    path = save_checkpoint(_train_state(1.0), tmp_path / "run" / "last.pth")
    assert path.is_file()
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pth"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_save_checkpoint_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   error: BaseException) -> None:
    path = save_checkpoint(_train_state(1.0), tmp_path / "last.pth")
    original = path.read_bytes()
    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)      # write the whole thing into the temp file...
        f.seek(0)
        f.truncate(100)                         # ...leave it half written...
        raise error                             # ...and die

    monkeypatch.setattr(ckpt_module.torch, "save", half_then_fail)
    with pytest.raises(CheckpointError if isinstance(error, RuntimeError) else type(error)):   # a write error
        save_checkpoint(_train_state(2.0), path)                                             # is reported
    monkeypatch.undo()
    assert path.read_bytes() == original                           # previous checkpoint intact
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pth"]                     # no temp file left behind


def test_load_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a valid checkpoint"):
        load_checkpoint(bad)
    weights_only = tmp_path / "weights.pth"
    torch.save({"model": {"w": torch.zeros(1)}}, weights_only)
    with pytest.raises(CheckpointError, match="model_raw"):
        load_checkpoint(weights_only)


def _draws() -> tuple:
    return (torch.rand(4).tolist(), torch.randn(2).tolist(), np.random.rand(3).tolist(),
            np.random.randn(3).tolist(), random.random(), random.gauss(0, 1), random.randint(0, 10**9))


def test_rng_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    np.random.randn(1)      # leave a cached gaussian in numpy's state (has_gauss = 1)
    random.gauss(0, 1)      # and in python's (gauss_next set)
    state = rng_state()
    first = _draws()
    assert _draws() != first  # the generators did move on
    set_rng_state(state)
    assert _draws() == first
    # the state survives a checkpoint (weights_only load)
    path = save_checkpoint({**_train_state(1.0), "rng": state}, tmp_path / "rng.pth")
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    set_rng_state(load_checkpoint(path)["rng"])
    assert _draws() == first
