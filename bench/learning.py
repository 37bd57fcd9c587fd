"""Benchmark: does our trainer learn as well as the authors' code? Side by side, same data, same start.

Protocol (issue 9). coco128 is prepared once with a seeded split (``--val-fraction``, default 0.25: 96 train
images = 6 full batches of 16 on both sides, 32 held out). Both sides start from the same weights file and
train yolox-nano on the same train split with the authors' fine-tuning recipe: fixed 416 input, batch 16,
lr 0.01/64 per image, warm-up 1 epoch, EMA, nano augmentation (mosaic p 0.5, scale 0.5-1.5, no MixUp, HSV,
flip). Experiments:

- ``reinit``: 30 epochs from the shared nano weights with the class predictors re-initialised (default
  start: ``../shared/peer/yolox_nano_reinit_cls.pth``, the authors' fresh predictors, seed 0), no-aug 5.
- ``keep2``: 2 epochs from the shared nano weights, the 80 classes kept (the nightly-retrain situation).

Ours runs :func:`yolox.train.trainer.train` (the project's trainer, nothing bench-specific); theirs runs
``bench/authors_loop.py`` in their venv (``--peer-python``, ``--peer-src``: ``../shared/peer/README.md``).
The two of one seed run at the same time (``--threads`` each), so both see the same machine load. Phases:
the authors' trainer keeps the lr at its floor for the last ``no_aug`` epochs (their ``yoloxwarmcos``) but
closes the mosaic and switches the L1 loss on at ``epoch + 1 == max_epoch - no_aug_epochs``, one epoch
earlier; ours gets the same lr floor (``train.no_aug_epochs``) and the same mosaic phase
(``train.close_mosaic_epochs = no_aug + 1``). With ``epochs <= no_aug`` (``keep2``) their scheduler is at its
floor from the end of the warm-up and their trainer never closes the mosaic: ours gets ``no_aug_epochs =
epochs - warm-up`` and ``close_mosaic_epochs = 0``. (Before ``close_mosaic_epochs`` existed, ours could only tie
the two: with ``no_aug + 1`` floor epochs its cosine ran one epoch shorter, 5-20 % below their lr from epoch 6.)

Both sides' EMA weights are evaluated by the same code (this project's COCO evaluation, the authors'
protocol): AP50:95 on the train split ("fit") and on the held-out split. Printed per run: per-epoch total
losses, fit and held-out AP; then the means over seeds and the ratios ours/theirs. Ends with one JSON line.

    YOLOX_ASSETS_DIR=../shared .venv/bin/python bench/learning.py \
        --peer-python /work/peer/venv/bin/python --peer-src /work/peer/yolox [--seeds 0 1 2] \
        [--experiments reinit keep2] [--epochs 30] [--out DIR]

Without ``--peer-python`` only our side runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from finetune import reinit_class_predictors

from yolox.assets import resolve_weights
from yolox.config import DataParams, PipelineParams
from yolox.data.prepare import prepare_dataset
from yolox.data.records import load_prepared
from yolox.evaluate.coco_eval import evaluate
from yolox.inference import TorchBackend
from yolox.models import build_model, load_weights

MODEL, SIZE, BATCH, LR_PER_IMG = "yolox-nano", 416, 16, 0.01 / 64
EXPERIMENTS = {"reinit": {"epochs": 30, "no_aug": 5, "start": "reinit"},
               "keep2": {"epochs": 2, "no_aug": 5, "start": "release"}}


def our_params(prepared: Path, start: Path, out: Path, seed: int, epochs: int, no_aug: int, threads: int,
               workers: int, max_iters: int | None) -> PipelineParams:
    """The authors' fine-tuning recipe as this project's params, phase for phase as their trainer runs it (module
    docstring): the lr floor for the last ``no_aug`` epochs (or every epoch after the warm-up when the run is
    shorter), the mosaic closed and the L1 loss on from ``epoch + 1 == epochs - no_aug`` (never, if that epoch
    does not exist)."""
    warmup = 1
    return PipelineParams.model_validate({
        "data": {"prepared_dir": str(prepared)},
        "model": {"name": MODEL, "input_size": SIZE, "weights": str(start)},
        "augment": {"multiscale_range": 0},       # nano's mosaic/mixup recipe from recipe_for_model
        "train": {"epochs": epochs, "batch_size": BATCH, "basic_lr_per_img": LR_PER_IMG, "warmup_epochs": warmup,
                  "no_aug_epochs": min(no_aug, epochs - warmup),
                  "close_mosaic_epochs": no_aug + 1 if epochs >= no_aug + 1 else 0,
                  "eval_interval": epochs + 1, "workers": workers, "seed": seed,
                  "device": "cpu", "freeze": [], "output_dir": str(out), "max_iters_per_epoch": max_iters},
    })


def run_ours(spec: dict) -> None:
    """Child process: train with our trainer, write the EMA weights and the per-epoch losses."""
    from yolox.train.trainer import train

    torch.set_num_threads(spec["threads"])
    params = our_params(Path(spec["prepared"]), Path(spec["start"]), Path(spec["out"]), spec["seed"],
                        spec["epochs"], spec["no_aug"], spec["threads"], spec["workers"], spec["max_iters"])
    t0 = time.time()
    result = train(params, spec["prepared"], progress=False)
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    torch.save({"model": state["model"]}, spec["weights_out"])
    history = [{"epoch": h["epoch"], "total_loss": h["train/total_loss"], "lr": h["train/lr"]} for h in result.history]
    Path(spec["weights_out"] + ".json").write_text(json.dumps({"history": history, "seconds": time.time() - t0}))


def peer_layout(prepared: Path, out: Path) -> Path:
    """The prepared train split in the COCO layout the authors' ``COCODataset`` reads (annotations/train.json,
    train2017/ -> the prepared images; category ids 1..N in class order map to the same class indices)."""
    root = out / "peer_coco"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    shutil.copy(prepared / "annotations" / "train.json", root / "annotations" / "train.json")
    link = root / "train2017"
    if not link.exists():
        link.symlink_to((prepared / "images").resolve())
    return root


def start_weights(kind: str, out: Path, given: str | None) -> Path:
    """``release``: the shared nano weights. ``reinit``: ``given`` or the shared re-initialised file when it exists,
    else the release weights with the class predictors of a fresh model (seed 0)."""
    release = resolve_weights("yolox_nano.pth")
    if kind == "release":
        return release
    candidates = [Path(given)] if given else [release.parent.parent / "peer" / "yolox_nano_reinit_cls.pth"]
    for c in candidates:
        if c.is_file():
            return c
    model = build_model(MODEL, 80)
    load_weights(model, release)
    reinit_class_predictors(model, MODEL, 0)
    path = out / "start_reinit.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


def ap_of(weights: Path, dataset, eval_params) -> float:
    model = build_model(MODEL, 80)
    load_weights(model, weights)
    return float(evaluate(TorchBackend(model.eval()), dataset, SIZE, eval_params, progress=False).metrics["AP50_95"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer-python", default=None, help="python of the authors' venv (omit: ours only)")
    ap.add_argument("--peer-src", default=None, help="the authors' repository (put on their PYTHONPATH)")
    ap.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="override the experiments' epochs")
    ap.add_argument("--val-fraction", type=float, default=0.25)
    ap.add_argument("--start", default=None, help="start weights of the reinit experiment")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (two runs at a time)")
    ap.add_argument("--workers", type=int, default=1, help="loader workers per run")
    ap.add_argument("--max-iters", type=int, default=None, help="cap on iterations per epoch (quick check)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--_ours", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    mirror = HERE.parents[1] / "shared"
    if not os.environ.get("YOLOX_ASSETS_DIR") and mirror.is_dir():
        os.environ["YOLOX_ASSETS_DIR"] = str(mirror)
    if args._ours:
        logging.basicConfig(level=logging.WARNING)
        run_ours(json.loads(Path(args._ours).read_text()))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(2)
    out = (args.out or Path(tempfile.mkdtemp(prefix="yolox-learning-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare_dataset(DataParams(source="coco128", val_fraction=args.val_fraction, split_seed=0),
                               out / "prepared").out_dir
    train_set, val_set = load_prepared(prepared, "train"), load_prepared(prepared, "val")
    eval_params = PipelineParams().eval
    peer_root = peer_layout(prepared, out) if args.peer_python else None
    print(f"coco128: {len(train_set.records)} train / {len(val_set.records)} held-out images; work folder {out}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    results: dict[str, dict] = {}
    for name in args.experiments:
        cfg = dict(EXPERIMENTS[name])
        if args.epochs:
            cfg["epochs"] = args.epochs
        start = start_weights(cfg["start"], out, args.start)
        start_ap = {"fit": ap_of(start, train_set, eval_params), "held_out": ap_of(start, val_set, eval_params)}
        print(f"\n== {name}: {cfg['epochs']} epochs from {start} (fit {start_ap['fit']:.4f}, "
              f"held-out {start_ap['held_out']:.4f})", flush=True)
        runs: dict[str, list[dict]] = {"ours": [], "theirs": []}
        for seed in args.seeds:
            procs = {}
            tag = f"{name}_s{seed}"
            spec = {"prepared": str(prepared), "start": str(start), "out": str(out / f"ours_{tag}"), "seed": seed,
                    "epochs": cfg["epochs"], "no_aug": cfg["no_aug"], "threads": args.threads,
                    "workers": args.workers, "max_iters": args.max_iters, "weights_out": str(out / f"ours_{tag}.pth")}
            (out / f"ours_{tag}.spec.json").write_text(json.dumps(spec))
            log_ours = open(out / f"ours_{tag}.log", "w")  # noqa: SIM115 (the child writes it while we wait)
            procs["ours"] = subprocess.Popen([sys.executable, __file__, "--_ours", str(out / f"ours_{tag}.spec.json")],
                                             stdout=log_ours, stderr=subprocess.STDOUT)
            if args.peer_python:
                cmd = [args.peer_python, str(HERE / "authors_loop.py"), "--data-dir", str(peer_root),
                       "--weights", str(start), "--out", str(out / f"theirs_{tag}.pth"), "--seed", str(seed),
                       "--epochs", str(cfg["epochs"]), "--no-aug", str(cfg["no_aug"]), "--threads", str(args.threads),
                       "--workers", str(args.workers)]
                if args.max_iters:
                    cmd += ["--max-iters", str(args.max_iters)]
                env = {**os.environ, "PYTHONPATH": str(args.peer_src)}
                procs["theirs"] = subprocess.Popen(cmd, stdout=open(out / f"theirs_{tag}.log", "w"),  # noqa: SIM115
                                                   stderr=subprocess.STDOUT, env=env)
            for side, proc in procs.items():
                if proc.wait() != 0:
                    raise SystemExit(f"{side} {tag} failed: see {out / f'{side}_{tag}.log'}")
            for side in procs:
                weights = out / f"{side}_{tag}.pth"
                meta = json.loads(Path(str(weights) + ".json").read_text())
                row = {"seed": seed, "fit": ap_of(weights, train_set, eval_params),
                       "held_out": ap_of(weights, val_set, eval_params), "seconds": round(meta["seconds"], 1),
                       "losses": [round(h["total_loss"], 3) for h in meta["history"]]}
                runs[side].append(row)
                print(f"{side:6s} seed {seed}: fit {row['fit']:.4f} held-out {row['held_out']:.4f} "
                      f"({row['seconds']:.0f} s) losses per epoch {row['losses']}", flush=True)
        summary = {"start": start_ap, "epochs": cfg["epochs"], "runs": runs}
        for side in ("ours", "theirs"):
            if runs[side]:
                summary[side] = {k: round(statistics.mean(r[k] for r in runs[side]), 4) for k in ("fit", "held_out")}
        if runs["theirs"]:
            o, t = summary["ours"], summary["theirs"]
            summary["fit_ratio"] = round(o["fit"] / max(t["fit"], 1e-9), 3)
            summary["held_out_diff"] = round(o["held_out"] - t["held_out"], 4)
            print(f"{name}: mean over seeds {args.seeds}: fit ours {o['fit']:.4f} theirs {t['fit']:.4f} "
                  f"(ratio {summary['fit_ratio']:.3f}); held-out ours {o['held_out']:.4f} theirs {t['held_out']:.4f} "
                  f"(ours - theirs {summary['held_out_diff']:+.4f}); start held-out {start_ap['held_out']:.4f}",
                  flush=True)
        results[name] = summary
    print(json.dumps({"bench": "learning", "train_images": len(train_set.records),
                      "held_out_images": len(val_set.records), "seeds": args.seeds,
                      **{k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in results.items()},
                      "runs": {k: v["runs"] for k, v in results.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
