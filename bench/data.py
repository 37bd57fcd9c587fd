"""Benchmark: training data pipeline throughput of ONE process (no DataLoader), ours beside the authors'.

Two recipes:

- nano: yolox-nano recipe at 416 (Mosaic with probability 0.5, scale 0.5-1.5, no MixUp)
- s:    yolox-s recipe at 640 (Mosaic + MixUp, scale 0.1-2.0)

One sample = what a loader worker does per image: read, augment, a float32 (3, S, S) image and padded
targets (ours: ``TrainDataset.__getitem__``; theirs: ``MosaicDetection.__getitem__`` over their
``COCODataset`` with their ``TrainTransform``, built as their ``get_data_loader`` does, from their ``Exp``).
Each side with its defaults: ours holds the decoded images in RAM when they fit in ``train.cache_ram_mb``
(coco128 does: ``yolox/data/cache.py``); theirs decodes every image unless told ``--cache``.
``--cache-mb 0`` makes ours decode every image too; ``--authors-cache`` turns on their RAM cache
(images already resized to the input side).
Both sides run single-threaded (``torch.set_num_threads(1)``, ``cv2.setNumThreads(0)``) on the same 128
coco128 images (``--peer-coco``: the COCO layout of ``../shared/peer/README.md``), each in a worker process of
its own venv; ``--pairs`` blocks of ``--samples`` samples alternate between them (the order swapped every pair).
Printed per pair: both sides' ms per sample, the ratio theirs / ours (= our img/s over theirs) and the load
average; then the medians over pairs. Without ``--peer``, our figures only.

``--stats N`` also compares what the samples hold (issue 9): the share of samples without a target and the targets
per sample, counted two ways: every row of the padded targets with w + h > 0 (the authors' count) and only boxes
with min(w, h) > 1 px. Their ``TrainTransform`` falls back to the untransformed mosaic and ALL its targets when
none has a side over 1 px, and those include boxes the affine clipped to zero width at the border: the first
count then includes degenerate targets that the second, and our pipeline (which drops them), does not.

    .venv/bin/python bench/data.py [--peer /work/peer] [--peer-coco /work/peer/coco] [--recipes nano s]
                                   [--pairs 6] [--samples 128] [--stats 400] [--cache-mb MB] [--authors-cache]

Ends with one JSON line: ``{"bench": "data", "nano_img_s": ..., "nano_authors_img_s": ..., "nano_ratio": ...,
"nano_ratios": [...], "nano_load_avg": ..., "s_img_s": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import add_common_args, missing_dataset, parse_args, read_yolo_dataset
from sidebyside import alternate, authors_worker, blocks, ours_worker, print_pair

from yolox.config import CACHE_RAM_MB

RECIPES = {"nano": ("yolox-nano", 416), "s": ("yolox-s", 640)}


def worker(a: argparse.Namespace) -> None:
    """Our side (a worker process): ``TrainDataset.__getitem__`` with the recipe, mosaic on."""
    from sidebyside import serve

    from yolox.config import AugmentParams
    from yolox.data.dataset import SampleKey, TrainDataset

    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    model, size = RECIPES[a.recipe]
    train = TrainDataset(read_yolo_dataset(Path(a.data)), AugmentParams(), size, model, seed=a.seed,
                         cache_mb=a.cache_mb)
    order = np.random.default_rng(a.seed).permutation(len(train))
    state = {"i": 0}

    def sample():
        out = train[SampleKey(int(order[state["i"] % len(order)]), size, True)]
        state["i"] += 1
        return out

    def setup(req: dict) -> dict:
        for _ in range(req.get("warmup", 0)):
            sample()
        p = train.params
        return {"images": len(train), "size": size, "mosaic_prob": p.mosaic_prob, "mixup": p.enable_mixup,
                "mosaic_scale": list(p.mosaic_scale), "cache_mib": round(train.augment.cache.nbytes / 2**20)}

    def run(req: dict) -> dict:
        t0 = time.perf_counter()
        for _ in range(req["n"]):
            sample()
        return {"times": [(time.perf_counter() - t0) / req["n"]]}

    def stats(req: dict) -> dict:
        """As the authors' worker's ``stats``: per sample, rows with w + h > 0, rows with min(w, h) > 1, grey share."""
        rows = []
        for _ in range(req["n"]):
            img, targets = sample()[:2]
            wh = targets.numpy()[:, 3:5]
            grey = (np.abs(img.numpy() - 114).max(axis=0) < 1).mean()
            rows.append([int((wh.sum(1) > 0).sum()), int((wh.min(1) > 1).sum()), float(grey)])
        return {"rows": rows}

    serve({"setup": setup, "run": run, "stats": stats})


def summarise(rows: list[list[float]]) -> dict[str, float]:
    """Share of samples without a target row / without a box of positive size, mean counts, mean grey share."""
    a = np.asarray(rows, np.float64)
    return {"no_row": round(float((a[:, 0] == 0).mean()), 3), "rows": round(float(a[:, 0].mean()), 2),
            "no_box": round(float((a[:, 1] == 0).mean()), 3), "boxes": round(float(a[:, 1].mean()), 2),
            "grey": round(float(a[:, 2].mean()), 3)}


def print_stats(key: str, side: str, s: dict[str, float], n: int) -> None:
    print(f"  {side:6s} {n} samples: no target row {s['no_row']:.1%}, rows/sample {s['rows']:.2f} | "
          f"no box with min side > 1 px {s['no_box']:.1%}, boxes/sample {s['boxes']:.2f} | grey {s['grey']:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, data=True, peer="optional", pairs=True)
    ap.add_argument("--peer-coco", type=Path, default=None,
                    help="coco128 in the COCO layout for their COCODataset (default: PATH/coco)")
    ap.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    ap.add_argument("--samples", type=int, default=128, help="samples per block")
    ap.add_argument("--warmup", type=int, default=32, help="untimed samples first, per side")
    ap.add_argument("--stats", type=int, default=0,
                    help="also N samples' content per side: share without targets, targets per sample, grey share")
    ap.add_argument("--cache-mb", type=int, default=CACHE_RAM_MB,
                    help="ours: train.cache_ram_mb (default: the project's default; 0: decode every image)")
    ap.add_argument("--authors-cache", action="store_true",
                    help="theirs: COCODataset(cache=True, cache_type='ram'), their --cache (resized images in RAM)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--recipe", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parse_args(ap, argv)
    if args.worker:
        worker(args)
        return 0
    if missing_dataset(args.data):
        return 2
    coco = args.peer_coco or (args.peer / "coco" if args.peer else None)
    if args.peer and not (coco / "annotations" / "instances_train2017.json").is_file():
        print(f"{coco}/annotations/instances_train2017.json not found: pass --peer-coco "
              "(../shared/peer/README.md, step 3)", file=sys.stderr)
        return 2

    print(f"data: {args.data}; one process, 1 thread per side; blocks of {args.samples} samples, "
          f"{'side by side with the authors: ' + str(args.peer) if args.peer else 'ours only (no --peer)'}")
    result: dict[str, object] = {"bench": "data"}
    for key in args.recipes:
        model, size = RECIPES[key]
        with ours_worker("data.py", "--recipe", key, "--data", str(args.data), "--cache-mb", str(args.cache_mb)) as ours:
            recipe = ours.call("setup", warmup=args.warmup)
            print(f"{key} recipe ({model} @ {size}): ours {recipe}")
            if args.peer is None and args.stats:
                s = summarise(ours.call("stats", n=args.stats)["rows"])
                print_stats(key, "ours", s, args.stats)
                result[f"{key}_ours_content"] = s
            if args.peer is None:
                rate = 1 / statistics.median(blocks(ours, args.pairs, {"op": "run", "n": args.samples}))
                print(f"  ours {rate:.1f} img/s ({1000 / rate:.2f} ms/img; median of {args.pairs} blocks)")
                result[f"{key}_img_s"] = round(rate, 1)
                continue
            with authors_worker(args.peer, "data", "--recipe", key, "--coco", str(coco), "--threads", "1",
                                *(["--cache"] if args.authors_cache else [])) as theirs:
                print(f"  theirs {theirs.call('setup', warmup=args.warmup)}")
                if args.stats:
                    for side, w in (("ours", ours), ("theirs", theirs)):
                        s = summarise(w.call("stats", n=args.stats)["rows"])
                        print_stats(key, side, s, args.stats)
                        result[f"{key}_{side}_content"] = s
                sbs = alternate(ours, theirs, args.pairs, {"op": "run", "n": args.samples},
                                print_pair(f"{key} recipe", "ms/img"))
                print(f"{key} recipe: ours {1 / sbs.ours:.1f} img/s, theirs {1 / sbs.theirs:.1f} img/s (medians of "
                      f"{args.pairs} blocks of {args.samples}); median ratio {sbs.ratio:.2f}x; load average {sbs.load:.2f}")
                d = sbs.as_dict(key, digits=3)
                result.update({f"{key}_img_s": round(1 / sbs.ours, 1), f"{key}_authors_img_s": round(1 / sbs.theirs, 1),
                               f"{key}_ratio": d[f"{key}_ratio"], f"{key}_ratios": d[f"{key}_ratios"],
                               f"{key}_load_avg": d[f"{key}_load_avg"]})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
