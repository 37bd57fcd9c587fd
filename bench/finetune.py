"""Benchmark: fine-tune yolox-nano from the released weights with re-initialised class predictors, and
measure the AP50:95 (EMA weights) on a held-out split before and after.

1. ``prepare``: the train source (``--train``: a dataset name such as coco128, a YOLO folder or
   dataset.yaml, or a COCO json) and the val source (``--val``; default a seeded ``--val-fraction``
   split of the train source) into ``<out>/prepared``.
2. The model: ``--weights`` (default the release ``yolox_nano.pth``) with the class predictors
   (``head.cls_preds.*``) re-initialised as a fresh model's (seeded), written to ``<out>/reinit.pth``;
   its AP50:95 on val is the "before" figure.
3. :func:`yolox.train.trainer.train` from ``reinit.pth`` with the project's fine-tuning recipe
   (``--params``, default params/finetune.yaml: the authors' recipe, see the comment there) overridden
   by this benchmark's: ``--epochs`` (30), warm-up ``--warmup`` (1), no-aug ``--no-aug`` (5),
   ``--batch`` (16), ``--size`` (416), evaluation at the end only; its EMA model's
   AP50:95 on val is the "after" figure.

Quick mode for a 2-core CPU: ``--epochs 3 --max-iters 10`` (10 iterations an epoch; no-aug and warm-up
are capped to leave at least one epoch of each phase: 3 epochs = warm-up, cosine, no-aug).

    .venv/bin/python bench/finetune.py [--train coco128] [--val SOURCE] [--epochs 30] [--max-iters N] [--out DIR]

Ends with one JSON line on stdout: ``{"bench": "finetune", "ap_before": ..., "ap_after": ..., "seconds": ...}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

from yolox.assets import resolve_weights
from yolox.config import DataParams, PipelineParams, load_params
from yolox.data.prepare import prepare_dataset
from yolox.data.records import load_prepared
from yolox.evaluate.coco_eval import evaluate
from yolox.inference import TorchBackend
from yolox.models import build_model, load_weights
from yolox.train.trainer import train

CLASS_PREDICTORS = "head.cls_preds."
DEFAULT_PARAMS = Path(__file__).resolve().parents[1] / "params" / "finetune.yaml"


def reinit_class_predictors(model: torch.nn.Module, name: str, seed: int = 0) -> int:
    """Replace the class predictors of ``model`` (a ``name`` model) by those of a freshly initialised
    one (seeded); returns the number of tensors replaced."""
    torch.manual_seed(seed)
    fresh = build_model(name, model.num_classes)
    own, new = model.state_dict(), fresh.state_dict()
    keys = [k for k in own if k.startswith(CLASS_PREDICTORS)]
    model.load_state_dict({**own, **{k: new[k] for k in keys}})
    return len(keys)


def finetune_params(base: PipelineParams, args: argparse.Namespace, weights: Path, out: Path) -> PipelineParams:
    """``base`` with this benchmark's model, schedule and loop settings."""
    raw = base.model_dump(mode="json")
    epochs = args.epochs
    no_aug = min(args.no_aug, max(epochs - 2, 0))            # leave a warm-up and a cosine epoch
    raw["model"].update(name=args.model, input_size=args.size, weights=str(weights))
    raw["train"].update(
        epochs=epochs, no_aug_epochs=no_aug, warmup_epochs=min(args.warmup, max(epochs - no_aug - 1, 0)),
        batch_size=args.batch, workers=args.workers, seed=args.seed, max_iters_per_epoch=args.max_iters,
        eval_interval=epochs + 1,            # evaluated once, at the end (the trainer always does)
        output_dir=str(out / "train"), device=args.device)
    if args.lr_per_img is not None:
        raw["train"]["basic_lr_per_img"] = args.lr_per_img
    return PipelineParams.model_validate(raw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", default="coco128", help="train source: dataset name, YOLO folder/yaml or COCO json")
    ap.add_argument("--val", default=None, help="val source (default: a seeded split of --train)")
    ap.add_argument("--val-fraction", type=float, default=0.2, help="held-out share when --val is not given")
    ap.add_argument("--images", default=None, help="image folder of a COCO json source")
    ap.add_argument("--weights", default="yolox_nano.pth", help="checkpoint to start from")
    ap.add_argument("--model", default="yolox-nano")
    ap.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="base params (the fine-tuning recipe)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=1, help="warm-up epochs")
    ap.add_argument("--no-aug", type=int, default=5, help="last epochs without Mosaic, with the L1 loss")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--max-iters", type=int, default=None, help="cap on iterations per epoch (quick mode)")
    ap.add_argument("--lr-per-img", type=float, default=None,
                    help="train.basic_lr_per_img (default: --params'; the authors' is 0.01/64 = 1.5625e-4)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)
    mirror = Path(__file__).resolve().parents[2] / "shared"        # as bench/data.py: <repo>/../shared
    if not os.environ.get("YOLOX_ASSETS_DIR") and mirror.is_dir():
        os.environ["YOLOX_ASSETS_DIR"] = str(mirror)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    out = args.out or Path(tempfile.mkdtemp(prefix="yolox-finetune-"))
    base = load_params(args.params)
    prepared = prepare_dataset(DataParams(source=args.train, val_source=args.val, images=args.images,
                                          val_fraction=args.val_fraction, split_seed=base.data.split_seed),
                               out / "prepared")
    val = load_prepared(prepared.out_dir, "val")
    print(f"train {prepared.num_train_images} images ({prepared.num_train_boxes} boxes), val {prepared.num_val_images} "
          f"images ({prepared.num_val_boxes} boxes), {len(prepared.names)} classes; work folder {out}")

    model = build_model(args.model, len(prepared.names))
    load_weights(model, resolve_weights(args.weights))
    n = reinit_class_predictors(model, args.model, args.seed)
    weights = out / "reinit.pth"
    torch.save({"model": model.state_dict()}, weights)
    params = finetune_params(base, args, weights, out)
    before = evaluate(TorchBackend(model), val, args.size, params.eval, progress=False).metrics
    print(f"re-initialised {n} class-predictor tensors; AP50:95 before fine-tuning {before['AP50_95']:.4f} "
          f"(AP50 {before['AP50']:.4f})")

    tp = params.train
    print(f"fine-tuning: {tp.epochs} epochs (warm-up {tp.warmup_epochs}, no-aug {tp.no_aug_epochs}), batch "
          f"{tp.batch_size}, {args.size} px, lr {tp.basic_lr_per_img * tp.batch_size:.3g}, frozen {tp.freeze}, "
          f"max iterations/epoch {tp.max_iters_per_epoch}, {args.threads} threads, {tp.workers} workers; "
          f"load average {os.getloadavg()[0]:.2f}")
    t0 = time.time()
    result = train(params, prepared.out_dir, progress=False)
    seconds = time.time() - t0
    after = {k.removeprefix("val/"): v for k, v in result.history[-1].items() if k.startswith("val/")}
    iterations = int(torch.load(result.checkpoint, map_location="cpu", weights_only=True)["iteration"])
    print(f"AP50:95 after {tp.epochs} epochs (EMA weights): {after['AP50_95']:.4f} (AP50 {after['AP50']:.4f}); "
          f"before {before['AP50_95']:.4f}; wall time {seconds:.0f} s")
    print(json.dumps({"bench": "finetune", "ap_before": round(before["AP50_95"], 4), "ap_after": round(after["AP50_95"], 4),
                      "ap50_before": round(before["AP50"], 4), "ap50_after": round(after["AP50"], 4),
                      "seconds": round(seconds, 1), "epochs": tp.epochs, "max_iters": tp.max_iters_per_epoch,
                      "iterations": iterations, "batch": tp.batch_size, "size": args.size,
                      "train_images": prepared.num_train_images, "val_images": prepared.num_val_images}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
