"""Benchmark: SimOTA time per batch, batched (:func:`yolox.assign.simota_assign`) vs the plain per-image
reference (:func:`yolox.assign.simota_assign_reference`), on the 8 most crowded coco128 images.

Inputs as in training at ``--size`` (default 416, 3549 anchor points, 80 classes): the images' real
boxes letterboxed to the input, and random predictions near them: every anchor point inside some box's
geometry prior predicts a jittered copy of one of those boxes (centre +- 15 % of the size, size x
exp(N(0, 0.25))), the others a random box around their cell; class and objectness logits random. The
two assignments are checked to be identical before timing.

    .venv/bin/python bench/assign.py [--data DIR] [--size 416] [--repeats 20] [--threads 2]

Prints both medians and the speed-up (target >= 5x), then one JSON line on stdout:
``{"bench": "assign", "batched_ms": ..., "reference_ms": ..., "speedup": ..., "boxes": [...], "exact": true}``.
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

from yolox.assign import geometry_prior, simota_assign, simota_assign_reference
from yolox.models.head import anchor_points

NUM_CLASSES = 80
BATCH = 8


def crowded_inputs(dataset, size: int, seed: int = 0) -> tuple[tuple[torch.Tensor, ...], list[int]]:
    """SimOTA inputs for the ``BATCH`` images with the most boxes, and their box counts."""
    records = sorted(dataset.records, key=lambda r: (-len(r.boxes), r.path.name))[:BATCH]
    g = torch.Generator().manual_seed(seed)
    grid, stride = anchor_points((size, size))
    A, G = grid.shape[0], max(len(r.boxes) for r in records)
    gt_boxes, gt_classes = torch.zeros(BATCH, G, 4), torch.zeros(BATCH, G, dtype=torch.long)
    gt_valid = torch.zeros(BATCH, G, dtype=torch.bool)
    for i, rec in enumerate(records):
        b = rec.boxes.astype(np.float64) * (size / max(rec.height, rec.width))       # letterbox, top-left
        n = len(b)
        gt_boxes[i, :n] = torch.from_numpy(np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1)).float()
        gt_classes[i, :n] = torch.from_numpy(rec.labels)
        gt_valid[i, :n] = True
    centres = (grid + 0.5) * stride[:, None]
    pred = torch.empty(BATCH, A, 4)
    prior = geometry_prior(gt_boxes, grid, stride) & gt_valid[:, :, None]
    for i in range(BATCH):
        pred[i, :, :2] = centres + torch.randn(A, 2, generator=g) * stride[:, None]
        pred[i, :, 2:] = stride[:, None] * torch.exp(torch.randn(A, 2, generator=g))
        near = prior[i].any(0)
        which = torch.multinomial(prior[i].float().T[near] + 1e-9, 1, generator=g).squeeze(1)
        gb, n = gt_boxes[i, which], int(near.sum())
        pred[i, near, :2] = gb[:, :2] + torch.randn(n, 2, generator=g) * 0.15 * gb[:, 2:]
        pred[i, near, 2:] = gb[:, 2:] * torch.exp(torch.randn(n, 2, generator=g) * 0.25)
    cls_logits = torch.randn(BATCH, A, NUM_CLASSES, generator=g) * 2 - 3
    obj_logits = torch.randn(BATCH, A, generator=g) * 2
    return (pred, cls_logits, obj_logits, gt_boxes, gt_classes, gt_valid, grid, stride), [len(r.boxes) for r in records]


def median_ms(fn, inputs, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn(*inputs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*inputs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_data_dir(), help="YOLO dataset folder (coco128)")
    ap.add_argument("--size", type=int, default=416, help="input side (pixels)")
    ap.add_argument("--repeats", type=int, default=20, help="timed calls of the batched version (median)")
    ap.add_argument("--reference-repeats", type=int, default=5, help="timed calls of the reference (median)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args(argv)
    if not (args.data / "dataset.yaml").is_file():
        print(f"{args.data}/dataset.yaml not found: pass --data or set YOLOX_ASSETS_DIR", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    inputs, counts = crowded_inputs(read_yolo_dataset(args.data), args.size)
    batched, reference = simota_assign(*inputs), simota_assign_reference(*inputs)
    fg = reference.fg_mask
    exact = bool(torch.equal(batched.fg_mask, fg) and torch.equal(batched.matched_gt[fg], reference.matched_gt[fg])
                 and torch.equal(batched.matched_iou[fg], reference.matched_iou[fg]))
    load = os.getloadavg()[0]
    print(f"SimOTA on the {BATCH} most crowded coco128 images at {args.size} ({inputs[0].shape[1]} anchor points, "
          f"{NUM_CLASSES} classes; boxes per image {counts}); {args.threads} torch threads; load average {load:.2f}")
    print(f"batched and reference assignments identical: {exact} ({batched.num_fg} positives)")
    t_batched = median_ms(simota_assign, inputs, args.repeats)
    t_reference = median_ms(simota_assign_reference, inputs, args.reference_repeats, warmup=1)
    speedup = t_reference / t_batched
    print(f"batched   {t_batched:8.1f} ms/batch (median of {args.repeats})")
    print(f"reference {t_reference:8.1f} ms/batch (median of {args.reference_repeats})")
    print(f"speed-up  {speedup:8.1f}x (target >= 5x)")
    print(json.dumps({"bench": "assign", "batched_ms": round(t_batched, 2), "reference_ms": round(t_reference, 1),
                      "speedup": round(speedup, 1), "boxes": counts, "exact": exact, "size": args.size,
                      "load_avg": round(load, 2)}))
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
