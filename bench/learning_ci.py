"""Calibrate ``tests/train/test_learning.py`` against the authors' code: the test's short run, on both sides.

Builds the test's data (first 20 coco128 images, seeded 80/20 split) and start weights (the shared nano weights
with fresh class predictors, seed 0), then runs, for each ``--seeds``, ours (the test's own ``run_learning``)
and theirs (``bench/authors_loop.py`` in their venv: no augmentation, the same epochs, batch, lr, warm-up,
cosine with no no-aug phase, EMA). Prints fit AP50:95 (EMA, on the 16 train images) and the last epoch's mean
total loss per run and one JSON line; the authors' means are the test's ``AUTHORS_*`` figures.

    YOLOX_ASSETS_DIR=../shared .venv/bin/python bench/learning_ci.py --peer-python <venv>/bin/python \
        --peer-src <their repo> [--seeds 0 1 2]           (or --peer /work/peer for both)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from common import (
    add_common_args,
    authors_loop_argv,
    coco128_dir,
    parse_args,
    peer_env,
    use_asset_mirror,
    work_dir,
)
from helpers.learning import BATCH, EPOCHS, SIZE, prepare_learning_subset, reinit_start, run_learning
from learning import ap_of, peer_layout

from yolox.assets import resolve_weights
from yolox.config import PipelineParams
from yolox.data.records import load_prepared


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, peer_venv="required", threads=2, threads_help=None, out=True)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parse_args(ap)
    use_asset_mirror()
    torch.set_num_threads(args.threads)
    out = work_dir(args.out, "yolox-learning-ci-")
    coco128 = coco128_dir()
    prepared = prepare_learning_subset(coco128, out / "data")
    start = reinit_start(resolve_weights("yolox_nano.pth"), out / "start.pth")
    train_set = load_prepared(prepared, "train")
    peer_root = peer_layout(prepared, out)
    rows: dict[str, list[dict]] = {"ours": [], "theirs": []}
    for seed in args.seeds:
        ours = run_learning(prepared, start, out / f"ours_s{seed}", seed)
        rows["ours"].append({"seed": seed, **ours})
        weights = out / f"theirs_s{seed}.pth"
        cmd = authors_loop_argv(args.peer_python, "--data-dir", str(peer_root), "--weights", str(start), "--out",
                                str(weights), "--seed", str(seed), "--epochs", str(EPOCHS), "--no-aug=-1", "--batch",
                                str(BATCH), "--size", str(SIZE), "--noaug-all", "--threads", str(args.threads),
                                "--workers", "0")
        subprocess.run(cmd, check=True, env=peer_env(args.peer_src), stdout=subprocess.DEVNULL)
        hist = json.loads(Path(str(weights) + ".json").read_text())["history"]
        rows["theirs"].append({"seed": seed, "fit": ap_of(weights, train_set, PipelineParams().eval),
                               "last_loss": hist[-1]["total_loss"], "losses": [round(h["total_loss"], 3) for h in hist]})
        for side in rows:
            r = rows[side][-1]
            print(f"{side:6s} seed {seed}: fit {r['fit']:.4f} last loss {r['last_loss']:.3f} losses {r['losses']}",
                  flush=True)
    summary = {side: {k: round(statistics.mean(r[k] for r in v), 4) for k in ("fit", "last_loss")}
               for side, v in rows.items()}
    print(json.dumps({"bench": "learning_ci", "epochs": EPOCHS, "batch": BATCH, **summary, "runs": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
