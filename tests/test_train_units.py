"""Training building blocks: lr schedule, optimizer groups, EMA, checkpoints, RNG state, params."""

from __future__ import annotations

import itertools
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from yolox.config import PipelineParams, apply_override, flatten, load_params, parse_params
from yolox.errors import CheckpointError, ConfigError
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


# ------------------------------------------------------------------------------------ params


@pytest.mark.parametrize(("raw", "field"), [
    ({"train": {"epochz": 3}}, "train.epochz"),
    ({"bogus": {}}, "bogus"),
    ({"augment": {"mosaic_prob": 1.5}}, "augment.mosaic_prob"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"model": {"input_size": 100}}, "model.input_size"),
    ({"model": {"name": "yolox-huge"}}, "model.name"),
    ({"eval": {"nms_thresh": 0}}, "eval.nms_thresh"),
    ({"export": {"opset": 11}}, "export.opset"),
    ({"data": {"val_fraction": 1.0}}, "data.val_fraction"),
    ({"train": {"batch_size": "many"}}, "train.batch_size"),
])
def test_bad_params_name_the_dotted_field(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "params/test.yaml")
    msg = str(err.value)
    assert msg.startswith("params/test.yaml: invalid params")
    assert f"  {field}: " in msg, msg


def test_unknown_key_and_literal_messages() -> None:
    with pytest.raises(ConfigError, match=r"train\.epochz: unknown key"):
        parse_params({"train": {"epochz": 3}})
    with pytest.raises(ConfigError, match=r"model\.name: must be one of .*yolox-nano.*\(got 'yolox-huge'\)"):
        parse_params({"model": {"name": "yolox-huge"}})


def test_every_bad_field_is_listed() -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"train": {"epochs": 0, "momentum": 1.5}, "gate": {"min_ap": -1}})
    msg = str(err.value)
    for field in ("train.epochs", "train.momentum", "gate.min_ap"):
        assert field in msg


def test_cross_field_check() -> None:
    with pytest.raises(ConfigError, match=r"train: .*no_aug_epochs \(20\) must not exceed epochs \(10\)"):
        parse_params({"train": {"epochs": 10, "no_aug_epochs": 20}})


def test_defaults_are_the_authors_recipe() -> None:
    p = parse_params({})
    assert p.model.name == "yolox-nano" and p.model.input_size == 416
    assert p.train.basic_lr_per_img == pytest.approx(0.01 / 64)
    assert (p.train.warmup_epochs, p.train.no_aug_epochs, p.train.epochs) == (5, 15, 300)
    assert (p.train.min_lr_ratio, p.train.momentum, p.train.weight_decay) == (0.05, 0.9, 5e-4)
    assert p.train.ema_decay == 0.9998
    assert (p.eval.conf_thresh, p.eval.nms_thresh, p.eval.max_det) == (0.01, 0.65, 100)


def test_apply_override() -> None:
    raw: dict = {"train": {"epochs": 5}}
    apply_override(raw, "train.epochs=17")
    apply_override(raw, "train.amp=false")
    apply_override(raw, "augment.mosaic_scale=[0.5, 1.5]")   # creates the section
    apply_override(raw, "model.weights=null")
    apply_override(raw, "tracking.run_name=a=b")             # only the first '=' splits
    assert raw == {"train": {"epochs": 17, "amp": False}, "augment": {"mosaic_scale": [0.5, 1.5]},
                   "model": {"weights": None}, "tracking": {"run_name": "a=b"}}
    p = parse_params(raw)
    assert p.train.epochs == 17 and p.augment.mosaic_scale == (0.5, 1.5) and p.model.weights is None
    for bad in ("train.epochs", "=5", " =5"):
        with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
            apply_override({}, bad)
    with pytest.raises(ConfigError, match="epochs is not a section"):
        apply_override({"train": {"epochs": 5}}, "train.epochs.x=1")


def test_load_params_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 20, "batch_size": 8}, "model": {"name": "yolox-s"}}))
    p = load_params(path, ["train.epochs=30", "eval.batch_size=4"])
    assert (p.train.epochs, p.train.batch_size, p.eval.batch_size, p.model.name) == (30, 8, 4, "yolox-s")
    with pytest.raises(ConfigError, match=rf"{path}: invalid params\n  train\.epochs"):
        load_params(path, ["train.epochs=0"])
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_params(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("train: {epochs: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "broken.yaml")


def test_flat_gives_dotted_names() -> None:
    p = parse_params({"train": {"epochs": 42}})
    flat = p.flat()
    assert flat["train.epochs"] == 42
    assert flat["model.name"] == "yolox-nano"
    assert flat["augment.mosaic_scale"] == [0.1, 2.0]
    assert flat["model.weights"] == "yolox_nano.pth" and flat["tracking.run_name"] is None
    assert all(k.count(".") == 1 for k in flat if not k.startswith("train.distributed."))
    assert flat["train.distributed.kubernetes.namespace"] == "yolox"   # nested sections: one dot per level
    sections = PipelineParams.model_fields
    assert {k.split(".")[0] for k in flat} == set(sections)
    def leaves(model) -> int:   # fields, counting a nested section's fields instead of the section
        return sum(leaves(getattr(model, f)) if hasattr(getattr(model, f), "model_fields") else 1
                   for f in type(model).model_fields)

    assert len(flat) == leaves(p)
    assert not any(isinstance(v, dict) for v in flat.values())
    assert flatten({"a": {"b": {"c": 1}, "d": 2}, "e": 3}) == {"a.b.c": 1, "a.d": 2, "e": 3}


LIVE_LOADER_AT_EXIT = '''
import sys
from pathlib import Path
import cv2, numpy as np
from yolox.config import AugmentParams
from yolox.data.dataset import build_train_loader
from yolox.data.records import DetectionDataset, ImageRecord
root = Path(sys.argv[1])
records = []
for k, path in enumerate(sorted((root / "images" / "train2017").glob("*.jpg"))[:8]):
    h, w = cv2.imread(str(path)).shape[:2]
    records.append(ImageRecord(k + 1, path.resolve(), w, h, np.array([[10, 10, 60, 60]], np.float32),
                               np.zeros(1, np.int64)))
dataset = DetectionDataset(["thing"], [1], records)
it = iter(build_train_loader(dataset, AugmentParams(), "yolox-nano", 128, 4, 2, seed=0, multiscale=False))
images, targets = next(it)[:2]
print("batch", tuple(images.shape), flush=True)
# exits with the iterator (and its 2 workers) alive: multiprocessing terminates (SIGTERM), then joins them
'''


def test_a_process_exiting_with_a_live_training_loader_does_not_hang(coco128_dir: Path, tmp_path: Path) -> None:
    """The loader's workers defer SIGTERM (the trainer stops them itself after finishing its step), but not
    forever: a script that exits while its training-loader iterator is alive (multiprocessing's exit
    handler SIGTERMs its daemonic workers, then joins them) ended only by SIGKILL before; it must now
    exit within the workers' grace (``WORKER_STOP_GRACE_S``)."""
    import subprocess
    import sys
    import time

    from yolox.data.dataset import WORKER_STOP_GRACE_S

    script = tmp_path / "live_loader.py"
    script.write_text(LIVE_LOADER_AT_EXIT)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), str(coco128_dir)], capture_output=True, text=True, check=False,
                          timeout=WORKER_STOP_GRACE_S + 60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batch (4, 3, 128, 128)" in proc.stdout
    assert time.perf_counter() - t0 < WORKER_STOP_GRACE_S + 45
