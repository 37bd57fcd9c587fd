"""Benchmark: images/s of a full training step, as the trainer runs it, against the authors' code.

One step = :func:`yolox.train.trainer.train_step` (forward, batched SimOTA, loss, backward, SGD step)
plus the EMA update, on batches of 8 real coco128 images letterboxed to the input side with their real
boxes (no augmentation: the data pipeline is ``bench/data.py``'s business). Models from a seeded
random initialisation, in train mode, with the authors' optimizer groups. REFERENCE.md measured the
authors' code on this machine class (2 threads): yolox-nano 416 b8 528 ms, yolox-s 640 b8 3.79 s.

    .venv/bin/python bench/train_step.py [--models nano s] [--steps N ...] [--warmup 3] [--threads 2]
                                         [--contiguous] [--profile]

The model is prepared as the trainer does (:func:`yolox.train.trainer.prepare_for_training`:
channels_last, activations out of place); ``--contiguous`` measures the NCHW layout instead.

Prints each model's median step time, img/s, the authors' figure and the ratio (authors' ms / ours; the
target is >= 1.2x); also the first quartile and the minimum, which show what the step takes when no other
process competes for the two cores (two OpenMP threads slow down badly on a shared, loaded machine; the
load average is printed). Then one JSON line on stdout:
``{"bench": "train_step", "nano_img_s": ..., "nano_ms": ..., "nano_ratio": ..., "s_img_s": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import default_data_dir, read_yolo_dataset  # bench/data.py

from yolox.config import AugmentParams
from yolox.data.dataset import SampleKey, TrainDataset, collate
from yolox.models import build_model
from yolox.train.ema import ModelEMA
from yolox.train.optim import build_optimizer
from yolox.train.trainer import prepare_for_training, train_step

AUTHORS_MS = {"nano": 528.0, "s": 3790.0}
MODELS = {"nano": ("yolox-nano", 416), "s": ("yolox-s", 640)}
BATCH = 8
DEFAULT_STEPS = {"nano": 15, "s": 5}


def real_batches(dataset, size: int, n_batches: int, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """``n_batches`` batches of 8 coco128 images letterboxed to ``size`` with their boxes (collate layout)."""
    train = TrainDataset(dataset, AugmentParams(hsv_prob=0.0, flip_prob=0.0), size, seed=seed)
    order = np.random.default_rng(seed).permutation(len(train))
    batches = []
    for b in range(n_batches):
        idx = order[(b * BATCH) % len(order):][:BATCH]
        batches.append(collate([train[SampleKey(int(i), size, False)] for i in idx]))
    return batches


def measure(name: str, size: int, batches, steps: int, warmup: int, channels_last: bool,
            profile: bool = False) -> list[float]:
    """Seconds of each timed step (after ``warmup`` untimed ones)."""
    torch.manual_seed(0)
    model = build_model(name, 80).train()
    fmt = prepare_for_training(model, torch.device("cpu"), channels_last)
    optimizer = build_optimizer(model, lr=0.01 / 64 * BATCH)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    ema = ModelEMA(model)
    times = []
    for i in range(warmup + steps):
        images, targets, counts, _ = batches[i % len(batches)]
        images = images.contiguous(memory_format=fmt)
        t0 = time.perf_counter()
        train_step(model, images, targets, counts, optimizer, scaler, model.strides)
        ema.update(model)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    if profile:
        from torch.profiler import profile as torch_profile

        images, targets, counts, _ = batches[0]
        with torch_profile() as prof:
            for _ in range(3):
                train_step(model, images.contiguous(memory_format=fmt), targets, counts, optimizer, scaler,
                           model.strides)
                ema.update(model)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_data_dir(), help="YOLO dataset folder (coco128)")
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--steps", nargs="+", type=int, default=None,
                    help="timed steps per model, in --models order (median; default nano 15, s 5)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the authors' figures: 2)")
    ap.add_argument("--contiguous", action="store_true", help="NCHW model and inputs (default: channels_last)")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table per model")
    args = ap.parse_args(argv)
    if not (args.data / "dataset.yaml").is_file():
        print(f"{args.data}/dataset.yaml not found: pass --data or set YOLOX_ASSETS_DIR", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    channels_last = not args.contiguous
    dataset = read_yolo_dataset(args.data)
    load = os.getloadavg()[0]
    print(f"train step: batch {BATCH} of real coco128 images and boxes, {args.threads} torch threads, "
          f"{'channels_last' if channels_last else 'contiguous'}, torch {torch.__version__}; "
          f"load average before: {load:.2f}")
    result: dict[str, object] = {"bench": "train_step"}
    steps = dict(zip(args.models, args.steps + args.steps[-1:] * len(args.models))) if args.steps else DEFAULT_STEPS
    for key in args.models:
        name, size = MODELS[key]
        batches = real_batches(dataset, size, 4)
        boxes = sum(int(b[2].sum()) for b in batches) / len(batches)
        times = measure(name, size, batches, steps[key], args.warmup, channels_last, args.profile)
        ms = statistics.median(times) * 1000
        q1, best = float(np.percentile(times, 25)) * 1000, min(times) * 1000
        img_s = BATCH / ms * 1000
        ratio = AUTHORS_MS[key] / ms
        print(f"{name} @ {size}: {ms:7.1f} ms/step ({img_s:5.1f} img/s; median of {len(times)}; first quartile "
              f"{q1:.1f} ms, min {best:.1f} ms; {boxes:.0f} boxes/batch)  authors {AUTHORS_MS[key]:.0f} ms "
              f"({BATCH / AUTHORS_MS[key] * 1000:.1f} img/s)  ratio {ratio:.2f}x (target >= 1.2x; "
              f"{AUTHORS_MS[key] / q1:.2f}x at the first quartile, {AUTHORS_MS[key] / best:.2f}x at the min)")
        result.update({f"{key}_ms": round(ms, 1), f"{key}_img_s": round(img_s, 2), f"{key}_ratio": round(ratio, 2),
                       f"{key}_q1_ms": round(q1, 1), f"{key}_min_ms": round(best, 1)})
    result["load_avg"] = round(load, 2)
    result["channels_last"] = channels_last
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
