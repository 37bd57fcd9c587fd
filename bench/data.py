"""Benchmark: training data pipeline throughput of ONE worker process (no DataLoader), in images/s.

Two recipes, as REFERENCE.md measured the authors' code on this machine class:

- nano: yolox-nano recipe at 416 (Mosaic with probability 0.5, scale 0.5-1.5, no MixUp) -> 122 img/s
- s:    yolox-s recipe at 640 (Mosaic + MixUp)                                        -> 40 img/s

One sample = what a loader worker does per image: read, augment, float32 (3, S, S) tensor and padded
targets (``TrainDataset.__getitem__``). Single thread (``torch.set_num_threads(1)``,
``cv2.setNumThreads(0)``), warm-up first, then the median of ``--repeats`` timed passes.

    .venv/bin/python bench/data.py [--data DIR] [--samples 384] [--repeats 3]

Ends with one JSON line on stdout:
``{"bench": "data", "nano_img_s": ..., "s_img_s": ..., "nano_ratio": ..., "s_ratio": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from yolox.config import AugmentParams
from yolox.data.dataset import SampleKey, TrainDataset
from yolox.data.records import DetectionDataset, ImageRecord

AUTHORS_IMG_S = {"nano": 122.0, "s": 40.0}
RECIPES = {"nano": ("yolox-nano", 416), "s": ("yolox-s", 640)}


def default_data_dir() -> Path:
    assets = os.environ.get("YOLOX_ASSETS_DIR") or str(Path(__file__).resolve().parents[1].parent / "shared")
    return Path(assets).expanduser() / "data" / "coco128"


def read_yolo_dataset(root: Path) -> DetectionDataset:
    """A YOLO-layout dataset (``images/<split>/*.jpg``, ``labels/<split>/*.txt``, ``dataset.yaml``)."""
    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    names = [meta["names"][i] for i in range(len(meta["names"]))]
    split = meta.get("train", "images/train2017")
    image_dir = root / split
    label_dir = root / split.replace("images", "labels", 1)
    records = []
    for k, path in enumerate(sorted(image_dir.glob("*.jpg"))):
        h, w = cv2.imread(str(path)).shape[:2]
        label_file = label_dir / f"{path.stem}.txt"
        rows = np.loadtxt(label_file, ndmin=2).reshape(-1, 5) if label_file.is_file() else np.zeros((0, 5))
        cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32)
        records.append(ImageRecord(k + 1, path.resolve(), w, h, boxes, rows[:, 0].astype(np.int64)))
    return DetectionDataset(names, list(range(1, len(names) + 1)), records)


def measure(dataset: DetectionDataset, model: str, size: int, samples: int, repeats: int, warmup: int) -> float:
    """Median images/s of ``TrainDataset.__getitem__`` (mosaic on) over ``repeats`` passes."""
    train = TrainDataset(dataset, AugmentParams(), size, model, seed=0)
    order = np.random.default_rng(0).permutation(np.resize(np.arange(len(train)), samples + warmup))
    for i in order[:warmup]:
        train[SampleKey(int(i), size, True)]
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in order[warmup:]:
            train[SampleKey(int(i), size, True)]
        rates.append(samples / (time.perf_counter() - t0))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_data_dir(), help="YOLO dataset folder (coco128)")
    ap.add_argument("--samples", type=int, default=384, help="samples per timed pass")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes (median reported)")
    ap.add_argument("--warmup", type=int, default=64, help="untimed samples first")
    args = ap.parse_args(argv)
    if not (args.data / "dataset.yaml").is_file():
        print(f"{args.data}/dataset.yaml not found: pass --data or set YOLOX_ASSETS_DIR", file=sys.stderr)
        return 2

    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    dataset = read_yolo_dataset(args.data)
    print(f"data: {args.data} ({len(dataset.records)} images); one process, 1 thread; "
          f"{args.samples} samples x {args.repeats} passes (median)")
    result: dict[str, object] = {"bench": "data"}
    for key, (model, size) in RECIPES.items():
        rate = measure(dataset, model, size, args.samples, args.repeats, args.warmup)
        ratio = rate / AUTHORS_IMG_S[key]
        print(f"{key:>5} recipe ({model} @ {size}): {rate:7.1f} img/s  ({1000 / rate:5.2f} ms/img)  "
              f"authors {AUTHORS_IMG_S[key]:.0f} img/s  ratio {ratio:.2f}x")
        result[f"{key}_img_s"] = round(rate, 1)
        result[f"{key}_ratio"] = round(ratio, 2)
    print(json.dumps({k: result[k] for k in ("bench", "nano_img_s", "s_img_s", "nano_ratio", "s_ratio")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
