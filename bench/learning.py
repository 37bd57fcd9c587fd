"""Benchmark: does our trainer learn as well as the authors' code? Side by side, same data, same start.

Protocol (issue 9). The dataset (``--data``: a name such as ``coco128`` or ``raccoon``, or a path; default
``coco128``) is prepared once by our ``prepare_dataset`` with a seeded split (``--val-fraction``, default 0.25
for coco128, 0.2 for any other dataset; a hash threshold on the file names, split seed 0: coco128 gives 101
train / 27 held-out images, raccoon 134 / 26; neither train count is a multiple of the batch 16). Both sides
start from the same weights file and train yolox-nano on the same train split with the authors' fine-tuning
recipe: fixed 416 input, batch 16, lr 0.01/64 per image, warm-up 1 epoch, EMA, nano augmentation (mosaic
p 0.5, scale 0.5-1.5, no MixUp, HSV, flip). Experiments:

- ``reinit`` (80 COCO classes only): 30 epochs from the shared nano weights with the class predictors
  re-initialised (default start: ``../shared/peer/yolox_nano_reinit_cls.pth``, the authors' fresh predictors,
  seed 0), no-aug 5.
- ``keep2`` (80 COCO classes only): 2 epochs from the shared nano weights, the 80 classes kept (the
  nightly-retrain situation).
- ``newclass`` (any dataset; the default for all but coco128): 30 epochs, no-aug 5, from the authors' COCO nano
  weights with FRESH class predictors for the dataset's classes: ``build_model("yolox-nano", N)`` after
  ``torch.manual_seed(0)``, ``load_weights(release, names=<class names>)`` (which keeps the fresh predictors
  when the class counts differ; with 80 classes the fresh ones are put back), saved as
  ``<out>/start_newclass.pth`` and given to both sides (theirs loads it strictly, ``--num-classes N``).

Ours runs :func:`yolox.train.trainer.train` (the project's trainer, nothing bench-specific); theirs runs
``bench/authors_loop.py`` in their venv (``--peer PATH``, or ``--peer-python`` and ``--peer-src``:
``../shared/peer/README.md``) on the prepared train split in their COCO layout (``annotations/train.json`` +
``train2017/``; our category ids are ``1..N`` in class order, which their ``COCODataset`` maps, sorted, to the same
class indices ``0..N-1``).
The two of one seed run at the same time (``--threads`` each), so both see the same machine load. Our loader
draws full batches (``train.full_batches``, as the authors' ``InfiniteSampler`` does: an epoch is ceil(N / 16)
batches from an endless stream of shuffled passes). ``--ours-ragged`` adds a third run per seed, ours with
``train.full_batches=false`` (one pass an epoch, its last batch the N mod 16 remaining images stepped at the
full lr), two of those at a time after the side-by-side pairs: which of the two learns better.

Phases: the authors' trainer keeps the lr at its floor for the last ``no_aug`` epochs (their ``yoloxwarmcos``)
but closes the mosaic and switches the L1 loss on at ``epoch + 1 == max_epoch - no_aug_epochs``, one epoch
earlier; ours gets the same lr floor (``train.no_aug_epochs``) and the same mosaic phase
(``train.close_mosaic_epochs = no_aug + 1``). With ``epochs <= no_aug`` (``keep2``) their scheduler is at its
floor from the end of the warm-up and their trainer never closes the mosaic: ours gets ``no_aug_epochs =
epochs - warm-up`` and ``close_mosaic_epochs = 0``. (Before ``close_mosaic_epochs`` existed, ours could only tie
the two: with ``no_aug + 1`` floor epochs its cosine ran one epoch shorter, 5-20 % below their lr from epoch 6.)

Every run's EMA weights are evaluated by the same code (this project's COCO evaluation, the authors'
protocol, with the dataset's class count): AP50:95 on the train split ("fit") and on the held-out split.
Printed per run: per-epoch total losses, fit and held-out AP; then a table per seed, the means over seeds and
ours - theirs. Ends with one JSON line.

    YOLOX_ASSETS_DIR=../shared .venv/bin/python bench/learning.py \
        --peer-python /work/peer/venv/bin/python --peer-src /work/peer/yolox [--seeds 0 1 2] \
        [--data coco128 --experiments reinit keep2 | --data raccoon --experiments newclass --ours-ragged] \
        [--epochs 30] [--threads 1 --workers 1] [--out DIR]

Quick check end to end: ``--epochs 1 --seeds 0 --max-iters 2``. Without ``--peer``/``--peer-python`` only our side
runs.
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
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import add_common_args, authors_loop_argv, parse_args, peer_env, use_asset_mirror, work_dir

from yolox.assets import resolve_weights
from yolox.config import DataParams, PipelineParams
from yolox.data.prepare import prepare_dataset
from yolox.data.records import load_prepared
from yolox.evaluate.coco_eval import evaluate
from yolox.inference import TorchBackend
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights

MODEL, SIZE, BATCH, LR_PER_IMG = "yolox-nano", 416, 16, 0.01 / 64
COCO_CLASSES = 80
EXPERIMENTS = {"reinit": {"epochs": 30, "no_aug": 5, "start": "reinit"},
               "keep2": {"epochs": 2, "no_aug": 5, "start": "release"},
               "newclass": {"epochs": 30, "no_aug": 5, "start": "newclass"}}
COCO_ONLY = ("reinit", "keep2")
SIDES = ("ours", "ours_ragged", "theirs")
CLASS_PREDICTORS = "head.cls_preds."


def reinit_class_predictors(model: torch.nn.Module, name: str, seed: int = 0) -> int:
    """Replace the class predictors of ``model`` (a ``name`` model) by those of a freshly initialised
    one (seeded); returns the number of tensors replaced."""
    torch.manual_seed(seed)
    fresh = build_model(name, model.num_classes)
    own, new = model.state_dict(), fresh.state_dict()
    keys = [k for k in own if k.startswith(CLASS_PREDICTORS)]
    model.load_state_dict({**own, **{k: new[k] for k in keys}})
    return len(keys)


def our_params(prepared: Path, start: Path, out: Path, seed: int, epochs: int, no_aug: int, threads: int,
               workers: int, max_iters: int | None, full_batches: bool = True) -> PipelineParams:
    """The authors' fine-tuning recipe as this project's params, phase for phase as their trainer runs it (module
    docstring): the lr floor for the last ``no_aug`` epochs (or every epoch after the warm-up when the run is
    shorter), the mosaic closed and the L1 loss on from ``epoch + 1 == epochs - no_aug`` (never, if that epoch
    does not exist). ``full_batches``: ``train.full_batches`` (false: the ragged last batch)."""
    warmup = 1
    return PipelineParams.model_validate({
        "data": {"prepared_dir": str(prepared)},
        "model": {"name": MODEL, "input_size": SIZE, "weights": str(start)},
        "augment": {"multiscale_range": 0},       # nano's mosaic/mixup recipe from recipe_for_model
        "train": {"epochs": epochs, "batch_size": BATCH, "basic_lr_per_img": LR_PER_IMG, "warmup_epochs": warmup,
                  "no_aug_epochs": min(no_aug, epochs - warmup),
                  "close_mosaic_epochs": no_aug + 1 if epochs >= no_aug + 1 else 0,
                  "eval_interval": epochs + 1, "workers": workers, "seed": seed, "full_batches": full_batches,
                  "device": "cpu", "freeze": [], "output_dir": str(out), "max_iters_per_epoch": max_iters},
    })


def run_ours(spec: dict) -> None:
    """Child process: train with our trainer, write the EMA weights and the per-epoch losses."""
    from yolox.train.trainer import train

    torch.set_num_threads(spec["threads"])
    params = our_params(Path(spec["prepared"]), Path(spec["start"]), Path(spec["out"]), spec["seed"],
                        spec["epochs"], spec["no_aug"], spec["threads"], spec["workers"], spec["max_iters"],
                        spec.get("full_batches", True))
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
    categories = json.loads((root / "annotations" / "train.json").read_text())["categories"]
    ids = [c["id"] for c in categories]
    if ids != sorted(ids):
        raise SystemExit(f"category ids {ids} are not in class order: the authors' COCODataset would map them "
                         "to other class indices than ours")
    link = root / "train2017"
    if not link.exists():
        link.symlink_to((prepared / "images").resolve())
    return root


def start_weights(kind: str, out: Path, given: str | None, names: list[str]) -> Path:
    """``release``: the shared nano weights. ``reinit``: ``given`` or the shared re-initialised file when it exists,
    else the release weights with the class predictors of a fresh model (seed 0). ``newclass``: a model of
    ``names`` built after ``torch.manual_seed(0)``, the release weights loaded into it but its fresh class
    predictors kept (``load_weights`` keeps them when the class counts differ; with 80 classes they are put back),
    written to ``<out>/start_newclass.pth``."""
    release = resolve_weights("yolox_nano.pth")
    if kind == "release":
        return release
    if kind == "newclass":
        torch.manual_seed(0)
        model = build_model(MODEL, len(names))
        fresh = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(CLASS_PREDICTORS)}
        load_weights(model, release, names=names)
        model.load_state_dict({**model.state_dict(), **fresh})
        path = out / "start_newclass.pth"
        torch.save({"model": model.state_dict()}, path)
        return path
    candidates = [Path(given)] if given else [release.parent.parent / "peer" / "yolox_nano_reinit_cls.pth"]
    for c in candidates:
        if c.is_file():
            return c
    model = build_model(MODEL, COCO_CLASSES)
    load_weights(model, release)
    reinit_class_predictors(model, MODEL, 0)
    path = out / "start_reinit.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


def ap_of(weights: Path, dataset, eval_params) -> float:
    """AP50:95 of ``weights`` (a yolox-nano of the dataset's class count) on ``dataset``."""
    model = build_model(MODEL, dataset.num_classes)
    load_weights(model, weights)
    return float(evaluate(TorchBackend(model.eval()), dataset, SIZE, eval_params, progress=False).metrics["AP50_95"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, peer_venv="optional", threads=1, threads_help="torch threads per run (two runs at a time)",
                    out=True)
    ap.add_argument("--data", default="coco128", help="dataset name (coco128, raccoon) or path, as prepare reads it")
    ap.add_argument("--names", nargs="+", default=None, help="class list (data.names; default the source's)")
    ap.add_argument("--experiments", nargs="+", default=None, choices=list(EXPERIMENTS),
                    help="default: reinit keep2 for coco128, newclass for any other dataset")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="override the experiments' epochs")
    ap.add_argument("--val-fraction", type=float, default=None, help="default 0.25 for coco128, else 0.2")
    ap.add_argument("--start", default=None, help="start weights of the reinit experiment")
    ap.add_argument("--ours-ragged", action="store_true",
                    help="also ours with train.full_batches=false (the ragged last batch), after the pairs")
    ap.add_argument("--workers", type=int, default=1, help="loader workers per run")
    ap.add_argument("--max-iters", type=int, default=None, help="cap on iterations per epoch (quick check)")
    ap.add_argument("--_ours", default=None, help=argparse.SUPPRESS)
    args = parse_args(ap, argv)
    use_asset_mirror()
    if args._ours:
        logging.basicConfig(level=logging.WARNING)
        run_ours(json.loads(Path(args._ours).read_text()))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(2)
    coco128 = args.data == "coco128"
    val_fraction = args.val_fraction if args.val_fraction is not None else (0.25 if coco128 else 0.2)
    experiments = args.experiments or (list(COCO_ONLY) if coco128 else ["newclass"])
    out = work_dir(args.out, "yolox-learning-")
    out.mkdir(parents=True, exist_ok=True)
    prep = prepare_dataset(DataParams(source=args.data, names=args.names, val_fraction=val_fraction, split_seed=0),
                           out / "prepared")
    prepared, names = prep.out_dir, list(prep.names)
    bad = [e for e in experiments if e in COCO_ONLY and len(names) != COCO_CLASSES]
    if bad:
        raise SystemExit(f"{' '.join(bad)} start(s) from the 80 COCO classes; {args.data} has {len(names)} "
                         "class(es): use --experiments newclass")
    train_set, val_set = load_prepared(prepared, "train"), load_prepared(prepared, "val")
    eval_params = PipelineParams().eval
    peer_root = peer_layout(prepared, out) if args.peer_python else None
    print(f"{args.data}: {len(names)} class(es), {len(train_set.records)} train / {len(val_set.records)} held-out "
          f"images (val fraction {val_fraction}); batch {BATCH}; work folder {out}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    def launch(side: str, tag: str, cfg: dict, start: Path, seed: int) -> subprocess.Popen:
        log = open(out / f"{side}_{tag}.log", "w")  # noqa: SIM115 (the child writes it while we wait)
        if side == "theirs":
            cmd = authors_loop_argv(
                args.peer_python, "--data-dir", str(peer_root), "--weights", str(start), "--out",
                str(out / f"theirs_{tag}.pth"), "--seed", str(seed), "--num-classes", str(len(names)), "--epochs",
                str(cfg["epochs"]), "--no-aug", str(cfg["no_aug"]), "--threads", str(args.threads), "--workers",
                str(args.workers))
            if args.max_iters:
                cmd += ["--max-iters", str(args.max_iters)]
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=peer_env(args.peer_src))
        spec = {"prepared": str(prepared), "start": str(start), "out": str(out / f"{side}_{tag}"), "seed": seed,
                "epochs": cfg["epochs"], "no_aug": cfg["no_aug"], "threads": args.threads,
                "workers": args.workers, "max_iters": args.max_iters, "full_batches": side == "ours",
                "weights_out": str(out / f"{side}_{tag}.pth")}
        (out / f"{side}_{tag}.spec.json").write_text(json.dumps(spec))
        return subprocess.Popen([sys.executable, __file__, "--_ours", str(out / f"{side}_{tag}.spec.json")],
                                stdout=log, stderr=subprocess.STDOUT)

    results: dict[str, dict] = {}
    for name in experiments:
        cfg = dict(EXPERIMENTS[name])
        if args.epochs:
            cfg["epochs"] = args.epochs
        start = start_weights(cfg["start"], out, args.start, names)
        start_ap = {"fit": ap_of(start, train_set, eval_params), "held_out": ap_of(start, val_set, eval_params)}
        print(f"\n== {name}: {cfg['epochs']} epochs from {start} (fit {start_ap['fit']:.4f}, "
              f"held-out {start_ap['held_out']:.4f})", flush=True)
        # rounds of runs at the same time: ours and theirs of a seed, then the ragged variants two by two
        rounds = [[("ours", s)] + ([("theirs", s)] if args.peer_python else []) for s in args.seeds]
        if args.ours_ragged:
            ragged = [("ours_ragged", s) for s in args.seeds]
            rounds += [ragged[i:i + 2] for i in range(0, len(ragged), 2)]
        runs: dict[str, list[dict]] = {side: [] for side in SIDES}
        for jobs in rounds:
            procs = {(side, seed): launch(side, f"{name}_s{seed}", cfg, start, seed) for side, seed in jobs}
            for (side, seed), proc in procs.items():
                if proc.wait() != 0:
                    raise SystemExit(f"{side} {name}_s{seed} failed: see {out / f'{side}_{name}_s{seed}.log'}")
            for side, seed in procs:
                weights = out / f"{side}_{name}_s{seed}.pth"
                meta = json.loads(Path(str(weights) + ".json").read_text())
                row = {"seed": seed, "fit": ap_of(weights, train_set, eval_params),
                       "held_out": ap_of(weights, val_set, eval_params), "seconds": round(meta["seconds"], 1),
                       "losses": [round(h["total_loss"], 3) for h in meta["history"]]}
                runs[side].append(row)
                print(f"{side:11s} seed {seed}: fit {row['fit']:.4f} held-out {row['held_out']:.4f} "
                      f"({row['seconds']:.0f} s) losses per epoch {row['losses']}", flush=True)
        runs = {side: sorted(rows, key=lambda r: r["seed"]) for side, rows in runs.items() if rows}
        summary: dict = {"start": start_ap, "epochs": cfg["epochs"], "runs": runs}
        print(f"\n{name}: AP50:95 per seed (fit / held-out, seconds)", flush=True)
        for seed in args.seeds:
            cells = [f"{side} " + " ".join(f"{r['fit']:.4f} / {r['held_out']:.4f} ({r['seconds']:.0f} s)"
                                           for r in rows if r["seed"] == seed) for side, rows in runs.items()]
            print(f"  seed {seed}: " + " | ".join(cells), flush=True)
        for side, rows in runs.items():
            summary[side] = {k: round(statistics.mean(r[k] for r in rows), 4) for k in ("fit", "held_out", "seconds")}
            if len(rows) > 1:
                summary[side]["held_out_sd"] = round(statistics.stdev(r["held_out"] for r in rows), 4)
            print(f"  mean {side:11s}: fit {summary[side]['fit']:.4f} held-out {summary[side]['held_out']:.4f} "
                  f"(sd {summary[side].get('held_out_sd', float('nan')):.4f}) {summary[side]['seconds']:.0f} s",
                  flush=True)
        if "theirs" in runs:
            o, t = summary["ours"], summary["theirs"]
            summary["fit_ratio"] = round(o["fit"] / max(t["fit"], 1e-9), 3)
            summary["held_out_diff"] = round(o["held_out"] - t["held_out"], 4)
            print(f"{name}: mean over seeds {args.seeds}: fit ours {o['fit']:.4f} theirs {t['fit']:.4f} "
                  f"(ratio {summary['fit_ratio']:.3f}); held-out ours {o['held_out']:.4f} theirs {t['held_out']:.4f} "
                  f"(ours - theirs {summary['held_out_diff']:+.4f}); start held-out {start_ap['held_out']:.4f}",
                  flush=True)
        if "ours_ragged" in runs:
            summary["full_minus_ragged_held_out"] = round(summary["ours"]["held_out"]
                                                          - summary["ours_ragged"]["held_out"], 4)
            print(f"{name}: held-out ours full batches - ours ragged {summary['full_minus_ragged_held_out']:+.4f}",
                  flush=True)
        results[name] = summary
    print(json.dumps({"bench": "learning", "data": args.data, "classes": len(names),
                      "train_images": len(train_set.records), "held_out_images": len(val_set.records),
                      "val_fraction": val_fraction, "seeds": args.seeds,
                      **{k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in results.items()},
                      "runs": {k: v["runs"] for k, v in results.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
