"""Benchmark: choose a training recipe by measurement. Candidates are override sets of a params file.

coco128 is prepared once with a seeded split (``--val-fraction``, default 0.25: 96 train, 32 held-out images).
Each candidate (``--candidate NAME:key=value;key=value``, applied over ``--params``) trains with the project's
trainer on the train split, for each of ``--seeds``; its EMA weights are evaluated (AP50:95, the authors'
protocol) on the train split ("fit") and on the held-out split, next to the start weights' figures.

Used for the defaults in ``params/`` (issue 9): the nightly retrain (same classes, from the production
weights) must not lose held-out AP; fine-tuning to new classes must match the authors' recipe.

    YOLOX_ASSETS_DIR=../shared .venv/bin/python bench/recipes.py --params params/default.yaml \
        --candidate 'authors-lr:train.basic_lr_per_img=1.5625e-4' --candidate 'as-is:' [--seeds 0 1]

Ends with one JSON line: per candidate the mean fit and held-out AP over seeds, and the start's.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch
from common import add_common_args, parse_args, use_asset_mirror, work_dir  # bench/common.py

from yolox.assets import resolve_weights
from yolox.config import DataParams, load_params
from yolox.data.prepare import prepare_dataset
from yolox.data.records import load_prepared
from yolox.evaluate.coco_eval import evaluate
from yolox.inference import TorchBackend
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights
from yolox.train.trainer import train


def ap(model: torch.nn.Module, dataset, params) -> float:
    return float(evaluate(TorchBackend(model.eval()), dataset, params.model.input_size, params.eval,
                          progress=False).metrics["AP50_95"])


def main(argv: list[str] | None = None) -> int:
    ap_ = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap_.add_argument("--params", type=Path, required=True)
    ap_.add_argument("--candidate", action="append", default=[], help="NAME:key=value;key=value (repeatable)")
    ap_.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap_.add_argument("--val-fraction", type=float, default=0.25)
    add_common_args(ap_, threads=2, threads_help=None, out=True)
    args = parse_args(ap_, argv)
    use_asset_mirror()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    out = work_dir(args.out, "yolox-recipes-")
    prepared = prepare_dataset(DataParams(source="coco128", val_fraction=args.val_fraction, split_seed=0),
                               out / "prepared").out_dir
    splits = {"fit": load_prepared(prepared, "train"), "held_out": load_prepared(prepared, "val")}
    candidates = args.candidate or ["as-is:"]
    results = {}
    for cand in candidates:
        name, _, spec = cand.partition(":")
        overrides = [s for s in spec.split(";") if s.strip()]
        rows = []
        for seed in args.seeds:
            params = load_params(args.params, overrides + [f"train.seed={seed}", "train.device=cpu",
                                                           f"train.output_dir={out / f'{name}_s{seed}'}"])
            if "start" not in results:   # the start weights (model.weights of the first candidate)
                start = build_model(params.model.name, len(splits["fit"].names))
                if params.model.weights:
                    load_weights(start, resolve_weights(params.model.weights))
                results["start"] = {k: round(ap(start, ds, params), 4) for k, ds in splits.items()}
                print(f"start ({params.model.weights}): fit {results['start']['fit']:.4f} "
                      f"held-out {results['start']['held_out']:.4f}", flush=True)
            t0 = time.time()
            result = train(params, prepared, progress=False)
            model = build_model(params.model.name, len(splits["fit"].names))
            model.load_state_dict(torch.load(result.checkpoint, map_location="cpu", weights_only=True)["model"])
            row = {"seed": seed, **{k: ap(model, ds, params) for k, ds in splits.items()},
                   "seconds": round(time.time() - t0, 1)}
            rows.append(row)
            print(f"{name} seed {seed}: fit {row['fit']:.4f} held-out {row['held_out']:.4f} ({row['seconds']:.0f} s)",
                  flush=True)
        mean = {k: round(statistics.mean(r[k] for r in rows), 4) for k in ("fit", "held_out")}
        results[name] = {"overrides": overrides, **mean, "runs": rows}
        print(f"{name}: mean fit {mean['fit']:.4f} held-out {mean['held_out']:.4f} "
              f"(start held-out {results['start']['held_out']:.4f})", flush=True)
    print(json.dumps({"bench": "recipes", "params": str(args.params), "seeds": args.seeds, **results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
