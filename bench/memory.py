"""Benchmark: resident memory of the training data loader (main process + its worker processes) per
epoch, for 20 epochs: it should stay flat (no leak in the dataset, the augmentation or the workers).

The loader is the trainer's (:func:`yolox.data.dataset.build_train_loader`: persistent workers, the
model's augmentation recipe with multi-scale, per-sample seeds), over coco128; every batch of every
epoch is drawn, Mosaic switched off for the last ``--no-aug-epochs`` epochs as in training. Memory is read
with psutil when installed (RSS, and PSS: shared pages counted once), else from /proc (RSS only).

    .venv/bin/python bench/memory.py [--data DIR] [--epochs 20] [--workers 2] [--batch 8] [--model yolox-nano]

Prints one line per epoch, the growth between the end of epoch 2 and the last epoch, then one JSON line
on stdout: ``{"bench": "memory", "rss_mb": [...per epoch...], "growth_mb": ..., "growth_pct": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_common_args, missing_dataset, read_yolo_dataset

from yolox.config import AugmentParams
from yolox.data.dataset import build_train_loader

MB = 1024 * 1024


def _children_proc(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _rss_proc(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def memory() -> dict[str, float]:
    """MB: ``main`` RSS, ``workers`` RSS (list), ``total`` RSS, and ``pss`` (main + workers) with psutil."""
    try:
        import psutil
    except ImportError:
        pids = _children_proc(os.getpid())
        workers = [_rss_proc(p) / MB for p in pids]
        main = _rss_proc(os.getpid()) / MB
        return {"main": main, "workers": workers, "total": main + sum(workers), "pss": float("nan")}
    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    rss = [p.memory_info().rss / MB for p in procs]
    try:
        pss = sum(p.memory_full_info().pss for p in procs) / MB
    except (psutil.AccessDenied, AttributeError):
        pss = float("nan")
    return {"main": rss[0], "workers": rss[1:], "total": sum(rss), "pss": pss}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, data=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--no-aug-epochs", type=int, default=5, help="last epochs without Mosaic")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--model", default="yolox-nano")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--no-multiscale", action="store_true", help="every batch at --size")
    args = ap.parse_args(argv)
    if missing_dataset(args.data):
        return 2

    torch.set_num_threads(1)
    dataset = read_yolo_dataset(args.data)
    loader = build_train_loader(dataset, AugmentParams(), args.model, args.size, args.batch, args.workers, seed=0,
                                multiscale=not args.no_multiscale)
    print(f"loader: {len(dataset.records)} images, {args.model} recipe at {args.size} "
          f"({'fixed size' if args.no_multiscale else 'multi-scale'}), batch {args.batch}, "
          f"{args.workers} persistent workers; psutil: {'yes' if _has_psutil() else 'no (/proc, RSS only)'}")
    before = memory()
    print(f"before the first epoch: main {before['main']:.0f} MB")
    per_epoch, pss = [], []
    for epoch in range(args.epochs):
        loader.dataset.set_mosaic(epoch < args.epochs - args.no_aug_epochs)
        loader.batch_sampler.set_epoch(epoch)
        t0, images = time.perf_counter(), 0
        for batch in loader:
            images += batch[0].shape[0]
        seconds = time.perf_counter() - t0
        m = memory()
        per_epoch.append(m["total"])
        pss.append(m["pss"])
        workers = " + ".join(f"{w:.0f}" for w in m["workers"])
        print(f"epoch {epoch + 1:2d}: RSS main {m['main']:6.0f} MB + workers {workers} MB = {m['total']:6.0f} MB"
              f"  (PSS {m['pss']:6.0f} MB)  {images / seconds:6.1f} img/s")
    base = per_epoch[min(1, len(per_epoch) - 1)]
    growth = per_epoch[-1] - base
    pct = 100 * growth / base
    print(f"RSS from the end of epoch 2 to epoch {args.epochs}: {growth:+.1f} MB ({pct:+.1f} %); "
          f"max - min over epochs 2..{args.epochs}: {max(per_epoch[1:]) - min(per_epoch[1:]):.1f} MB")
    print(json.dumps({"bench": "memory", "rss_mb": [round(v, 1) for v in per_epoch],
                      "pss_mb": [round(v, 1) for v in pss], "growth_mb": round(growth, 1),
                      "growth_pct": round(pct, 2), "workers": args.workers, "epochs": args.epochs}))
    return 0


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
