"""Benchmark: SimOTA time per batch, ours (:func:`yolox.train.assign.simota_assign`, batched) beside the authors'
per-image ``YOLOXHead.get_assignments`` loop (``--peer``), on the 8 most crowded coco128 images.

Inputs as in training at ``--size`` (default 416, 3549 anchor points, 80 classes): the images' real
boxes letterboxed to the input, and random predictions near them: every anchor point inside some box's
geometry prior predicts a jittered copy of one of those boxes (centre +- 15 % of the size, size x
exp(N(0, 0.25))), the others a random box around their cell; class and objectness logits random. Saved
once; both sides load the same file. Before timing, ours is checked against our plain per-image reference
(:func:`yolox.train.assign.simota_assign_reference`, identical assignment required) and, with ``--peer``, against
the authors' assignment (positives and matched boxes compared; ties in cost may be broken differently).

With ``--peer PATH`` (``PATH/yolox``, ``PATH/venv``: ``../shared/peer/README.md``) the two sides run in
worker processes of their own venvs, ``--pairs`` blocks of ``--repeats`` calls alternated (order swapped
every pair); printed per pair both medians, the ratio theirs / ours and the load average, then the medians
over pairs. Without ``--peer``: ours only, and ours against our per-image reference.

    .venv/bin/python bench/assign.py [--peer /work/peer] [--size 416] [--pairs 6] [--repeats 10] [--threads 2]

Ends with one JSON line: ``{"bench": "assign", "ms": ..., "authors_ms": ..., "ratio": ..., "ratios": [...],
"load_avg": ..., "boxes": [...], "exact": true, "agree_authors": ...}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import add_common_args, missing_dataset, parse_args, read_yolo_dataset
from sidebyside import alternate, authors_worker, blocks, ours_worker, print_pair

NUM_CLASSES = 80
BATCH = 8


def crowded_inputs(dataset, size: int, seed: int = 0) -> tuple[tuple[torch.Tensor, ...], list[int]]:
    """SimOTA inputs for the ``BATCH`` images with the most boxes, and their box counts."""
    from yolox.models.table import STRIDES
    from yolox.ops.decode import anchor_points
    from yolox.train.assign import geometry_prior

    records = sorted(dataset.records, key=lambda r: (-len(r.boxes), r.path.name))[:BATCH]
    g = torch.Generator().manual_seed(seed)
    grid, stride = anchor_points((size, size), STRIDES)
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


def save_inputs(inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    pred, cls_logits, obj_logits, gt_boxes, gt_classes, gt_valid, grid, stride = inputs
    torch.save({"pred_boxes": pred, "cls_logits": cls_logits, "obj_logits": obj_logits, "gt_boxes": gt_boxes,
                "gt_classes": gt_classes, "gt_valid": gt_valid, "counts": gt_valid.sum(1), "grid": grid,
                "stride": stride}, path)


def load_inputs(path: str | Path) -> tuple[torch.Tensor, ...]:
    x = torch.load(path, weights_only=True)
    return tuple(x[k] for k in ("pred_boxes", "cls_logits", "obj_logits", "gt_boxes", "gt_classes", "gt_valid",
                                "grid", "stride"))


def worker(a: argparse.Namespace) -> None:
    """Our side (a worker process): :func:`simota_assign` on the saved inputs."""
    from sidebyside import serve

    from yolox.train.assign import simota_assign

    torch.set_num_threads(a.threads)
    inputs = load_inputs(a.inputs)

    def setup(_: dict) -> dict:
        result = simota_assign(*inputs)
        torch.save({"fg_mask": result.fg_mask, "matched_gt": result.matched_gt}, a.out)
        return {"num_fg": result.num_fg}

    def run(req: dict) -> dict:
        times = []
        for _ in range(req["n"]):
            t0 = time.perf_counter()
            simota_assign(*inputs)
            times.append(time.perf_counter() - t0)
        return {"times": times}

    serve({"setup": setup, "run": run})


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
    add_common_args(ap, data=True, peer="optional", pairs=True, threads=2)
    ap.add_argument("--size", type=int, default=416, help="input side (pixels)")
    ap.add_argument("--repeats", type=int, default=10, help="timed calls per block (median)")
    ap.add_argument("--reference-repeats", type=int, default=3, help="timed calls of our per-image reference")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = parse_args(ap, argv)
    if args.worker:
        worker(args)
        return 0
    if missing_dataset(args.data):
        return 2

    from yolox.train.assign import simota_assign, simota_assign_reference

    torch.set_num_threads(args.threads)
    inputs, counts = crowded_inputs(read_yolo_dataset(args.data), args.size)
    batched, reference = simota_assign(*inputs), simota_assign_reference(*inputs)
    fg = reference.fg_mask
    exact = bool(torch.equal(batched.fg_mask, fg) and torch.equal(batched.matched_gt[fg], reference.matched_gt[fg])
                 and torch.equal(batched.matched_iou[fg], reference.matched_iou[fg]))
    print(f"SimOTA on the {BATCH} most crowded coco128 images at {args.size} ({inputs[0].shape[1]} anchor points, "
          f"{NUM_CLASSES} classes; boxes per image {counts}); {args.threads} torch threads")
    print(f"ours and our per-image reference identical: {exact} ({batched.num_fg} positives)")
    result: dict[str, object] = {"bench": "assign", "size": args.size, "boxes": counts, "exact": exact}
    with tempfile.TemporaryDirectory(prefix="bench-assign-") as tmp:
        path, ours_out, theirs_out = Path(tmp) / "inputs.pt", Path(tmp) / "ours.pt", Path(tmp) / "theirs.pt"
        save_inputs(inputs, path)
        common = ["--inputs", str(path), "--threads", str(args.threads)]
        with ours_worker("assign.py", *common, "--out", str(ours_out)) as ours:
            ours.call("setup")
            if args.peer is None:
                ms = statistics.median(blocks(ours, args.pairs, {"op": "run", "n": args.repeats})) * 1000
                t_reference = median_ms(simota_assign_reference, inputs, args.reference_repeats, warmup=1)
                print(f"ours {ms:.2f} ms/batch (median of {args.pairs} blocks of {args.repeats}); our per-image "
                      f"reference {t_reference:.1f} ms ({t_reference / ms:.1f}x)")
                result.update({"ms": round(ms, 2), "reference_ms": round(t_reference, 1)})
            else:
                with authors_worker(args.peer, "assign", *common, "--out", str(theirs_out)) as theirs:
                    theirs.call("setup")
                    a, b = torch.load(ours_out), torch.load(theirs_out)
                    both = a["fg_mask"] & b["fg_mask"]
                    same_gt = int((a["matched_gt"][both] == b["matched_gt"][both]).sum())
                    agree = bool(torch.equal(a["fg_mask"], b["fg_mask"]) and same_gt == int(both.sum()))
                    print(f"ours and the authors' assignment identical: {agree} (positives ours {int(a['fg_mask'].sum())},"
                          f" theirs {int(b['fg_mask'].sum())}; same matched box on {same_gt} of {int(both.sum())})")
                    sbs = alternate(ours, theirs, args.pairs, {"op": "run", "n": args.repeats}, print_pair("SimOTA"))
                    print(f"SimOTA: ours {sbs.ours * 1000:.2f} ms/batch, theirs {sbs.theirs * 1000:.1f} ms/batch "
                          f"(medians of {args.pairs} blocks of {args.repeats}); median ratio {sbs.ratio:.1f}x; "
                          f"load average {sbs.load:.2f}")
                    d = sbs.as_dict("x", digits=2)
                    result.update({k[2:]: v for k, v in d.items()})
                    result["agree_authors"] = agree
    print(json.dumps(result))
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
