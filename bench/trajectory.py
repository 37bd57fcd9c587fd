"""Controlled experiment: the same batches through the authors' training loop and through ours, step by step.

Every piece of one step is exact (loss, gradients, weights after the step, BatchNorm buffers); this checks the
iterations: the lr schedule step by step, Nesterov momentum and weight decay across steps, the EMA and the
BatchNorm statistics in train mode over many steps. Augmentation is off on both sides (letterbox only), so
the batches can be identical:

1. the authors' loop (``bench/authors_loop.py`` in their venv: their Exp, loader, optimizer, scheduler, EMA,
   their trainer's order) trains from the learning test's start (the shared nano weights with fresh class
   predictors, seed 0) on the learning test's 16 coco128 images, and saves every batch it trained on;
2. our trainer's pieces, in our trainer's order (lr = schedule(k) before step k, :func:`train_step`, EMA
   update), replay exactly those batches, twice: in channels_last (as our trainer runs) and contiguous NCHW.

The two runs of ours differ only in float rounding (other convolution kernels), so how far they drift apart
is the scale of chaotic divergence that any two exact implementations show over the same steps (SimOTA's
discrete choices amplify rounding). A loop that differs from the authors' in substance drifts from theirs far
beyond that scale, and one way (a loss that is systematically higher or lower). Prints the total loss per
iteration on the three runs, the relative differences, and the largest relative weight difference at the
end; one JSON line.

    YOLOX_ASSETS_DIR=../shared .venv/bin/python bench/trajectory.py --peer-python /work/peer/venv/bin/python \
        --peer-src /work/peer/yolox [--epochs 24] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from learning import peer_layout
from test_learning import BATCH, SIZE, prepare_learning_subset, reinit_start

from yolox.assets import resolve_weights
from yolox.models import build_model, load_weights
from yolox.train.ema import ModelEMA
from yolox.train.optim import build_optimizer
from yolox.train.schedule import WarmupCosineSchedule
from yolox.train.trainer import loss_values, prepare_for_training, train_step

LR_PER_IMG = 0.01 / 64


def replay(batches: list, start: Path, iters_per_epoch: int, epochs: int, channels_last: bool) -> dict:
    """Our trainer's loop over fixed batches ``[(images (B,3,S,S), targets (B,120,5) [cls,cx,cy,w,h])]``:
    the authors' recipe (SGD nesterov 0.9, wd 5e-4, warm-up 1 epoch then cosine, no no-aug phase, EMA)."""
    torch.manual_seed(0)
    model = build_model("yolox-nano", 80)
    load_weights(model, start)
    fmt = prepare_for_training(model, torch.device("cpu"), channels_last=channels_last)
    model.train()
    lr = LR_PER_IMG * BATCH
    optimizer = build_optimizer(model, lr)
    schedule = WarmupCosineSchedule(lr, epochs * iters_per_epoch, iters_per_epoch, 0)
    ema = ModelEMA(model)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    losses = []
    for k, (images, targets) in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = schedule(k)
        counts = (targets.sum(dim=2) > 0).sum(dim=1)
        rows = max(int(counts.max()), 1)
        loss = train_step(model, images.contiguous(memory_format=fmt), targets[:, :rows], counts, optimizer, scaler,
                          model.strides)
        ema.update(model)
        losses.append(loss_values(loss)["total_loss"])
    return {"losses": losses, "raw": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def max_rel_diff(a: dict, b: dict) -> tuple[float, str]:
    """Largest per-tensor ``max|a - b| / max|a|`` over the floating-point tensors, and its name."""
    worst = max(((float((a[k].float() - b[k].float()).abs().max()) / (float(a[k].float().abs().max()) + 1e-12), k)
                 for k in a if a[k].dtype.is_floating_point), key=lambda x: x[0])
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer-python", required=True)
    ap.add_argument("--peer-src", required=True)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    mirror = HERE.parents[1] / "shared"
    if not os.environ.get("YOLOX_ASSETS_DIR") and mirror.is_dir():
        os.environ["YOLOX_ASSETS_DIR"] = str(mirror)
    torch.set_num_threads(args.threads)
    out = (args.out or Path(tempfile.mkdtemp(prefix="yolox-trajectory-"))).resolve()
    coco128 = Path(os.environ["YOLOX_ASSETS_DIR"]) / "data" / "coco128"
    prepared = prepare_learning_subset(coco128, out / "data")
    start = reinit_start(resolve_weights("yolox_nano.pth"), out / "start.pth")
    theirs = out / "theirs.pth"
    subprocess.run([args.peer_python, str(HERE / "authors_loop.py"), "--data-dir", str(peer_layout(prepared, out)),
                    "--weights", str(start), "--out", str(theirs), "--seed", "0", "--epochs", str(args.epochs),
                    "--no-aug=-1", "--batch", str(BATCH), "--size", str(SIZE), "--noaug-all", "--threads",
                    str(args.threads), "--workers", "0", "--dump-batches", str(out / "batches.pt")],
                   check=True, env={**os.environ, "PYTHONPATH": args.peer_src}, stdout=subprocess.DEVNULL)
    meta = json.loads(Path(str(theirs) + ".json").read_text())
    batches = torch.load(out / "batches.pt", weights_only=True)
    ipe = meta["iters_per_epoch"]
    ours = replay(batches, start, ipe, args.epochs, channels_last=True)
    control = replay(batches, start, ipe, args.epochs, channels_last=False)
    t, o, c = meta["iter_losses"], ours["losses"], control["losses"]
    print(f"{len(batches)} identical batches of {BATCH} ({ipe} per epoch), no augmentation; total loss per iteration")
    print(f"{'iter':>4s} {'theirs':>9s} {'ours':>9s} {'ours NCHW':>9s} {'ours/theirs-1':>14s} {'cl/NCHW-1':>10s}")
    for k in range(0, len(t), max(len(t) // 16, 1)):
        print(f"{k:4d} {t[k]:9.4f} {o[k]:9.4f} {c[k]:9.4f} {o[k] / t[k] - 1:+14.2%} {o[k] / c[k] - 1:+10.2%}")
    theirs_raw = torch.load(theirs, weights_only=True)["model_raw"]
    w_theirs, name_t = max_rel_diff(theirs_raw, ours["raw"])
    w_control, name_c = max_rel_diff(control["raw"], ours["raw"])
    tail = slice(len(t) // 2, None)
    summary = {
        "bench": "trajectory", "iterations": len(t),
        "mean_loss_ratio_second_half": round(statistics.mean(x / y for x, y in zip(o[tail], t[tail])), 4),
        "control_mean_loss_ratio_second_half": round(statistics.mean(x / y for x, y in zip(o[tail], c[tail])), 4),
        "max_abs_rel_loss_diff": {"ours_vs_theirs": round(max(abs(x / y - 1) for x, y in zip(o, t)), 4),
                                  "ours_vs_control": round(max(abs(x / y - 1) for x, y in zip(o, c)), 4)},
        "first_iteration_apart_1e-3": {"ours_vs_theirs": next((k for k, (x, y) in enumerate(zip(o, t))
                                                               if abs(x / y - 1) > 1e-3), None),
                                       "ours_vs_control": next((k for k, (x, y) in enumerate(zip(o, c))
                                                                if abs(x / y - 1) > 1e-3), None)},
        "final_weights_max_rel_diff": {"ours_vs_theirs": [round(w_theirs, 4), name_t],
                                       "ours_vs_control": [round(w_control, 4), name_c]},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
