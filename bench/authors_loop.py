"""The authors' training loop, driven from outside their repository, for side-by-side measurements.

Runs in the AUTHORS' virtual environment with their repository on ``PYTHONPATH`` (``../shared/peer/README.md``),
never in this project's venv (both packages are named ``yolox``). ``bench/learning.py --peer-python ...``
starts it; nothing here is imported by the project.

What it uses of theirs: ``get_exp(None, <model>)`` (their Exp: ``get_model``, ``get_data_loader`` with their
``COCODataset``/``MosaicDetection``/``TrainTransform``/``InfiniteSampler``, ``get_optimizer``,
``get_lr_scheduler`` = ``yoloxwarmcos``) and ``ModelEMA``. The loop follows the order of operations of their
``Trainer`` (``yolox/core/trainer.py``), minus logging, AMP and multi-scale (fixed input side):

    before each epoch: if epoch + 1 == max_epoch - no_aug_epochs: close mosaic, switch the L1 loss on
    each iteration:    forward with targets -> zero_grad -> backward -> step -> EMA update
                       -> lr = scheduler.update_lr(iteration + 1) on every parameter group

(so their first step runs at ``warmup_lr`` = 0, and the mosaic is off for ``no_aug_epochs + 1`` epochs while
the lr is at its floor for ``no_aug_epochs``: their trainer's condition, kept as it is).

    PYTHONPATH=<their repo> <their venv>/bin/python bench/authors_loop.py --data-dir D --ann train.json \
        --weights start.pth --out ema.pth --seed 0 [--epochs 30 --warmup 1 --no-aug 5 --batch 16]

``D`` is a COCO layout: ``D/annotations/<ann>`` and the images in ``D/train2017/``. Writes the EMA weights as
``{"model": state_dict, "model_raw": state_dict}`` (their parameter names, which are also this project's) and
``<out>.json`` with the mean loss terms of every epoch, the total loss of every iteration and the wall time;
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True, help="COCO layout: annotations/<ann>, train2017/")
    ap.add_argument("--ann", default="train.json", help="annotation file name under <data-dir>/annotations")
    ap.add_argument("--weights", required=True, help="start checkpoint {'model': state_dict}, loaded strictly")
    ap.add_argument("--out", required=True, help="where the EMA weights go")
    ap.add_argument("--model", default="yolox-nano")
    ap.add_argument("--num-classes", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-aug", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--lr-per-img", type=float, default=0.01 / 64)
    ap.add_argument("--noaug-all", action="store_true", help="no augmentation at all: letterbox only")
    ap.add_argument("--max-iters", type=int, default=None, help="cap on iterations per epoch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    from yolox.exp import get_exp  # theirs: PYTHONPATH points at their repository
    from yolox.utils import ModelEMA

    exp = get_exp(None, a.model)
    exp.data_dir, exp.train_ann, exp.num_classes = a.data_dir, a.ann, a.num_classes
    exp.max_epoch, exp.warmup_epochs, exp.no_aug_epochs = a.epochs, a.warmup, a.no_aug
    exp.input_size = (a.size, a.size)
    exp.basic_lr_per_img, exp.data_num_workers, exp.seed = a.lr_per_img, a.workers, a.seed
    if a.noaug_all:
        exp.mosaic_prob, exp.mixup_prob, exp.enable_mixup, exp.hsv_prob, exp.flip_prob = 0.0, 0.0, False, 0.0, 0.0

    model = exp.get_model()
    model.load_state_dict(torch.load(a.weights, map_location="cpu", weights_only=True)["model"], strict=True)
    model.train()
    loader = exp.get_data_loader(batch_size=a.batch, is_distributed=False, no_aug=False)
    iters = len(loader) if a.max_iters is None else min(len(loader), a.max_iters)
    optimizer = exp.get_optimizer(a.batch)
    scheduler = exp.get_lr_scheduler(exp.basic_lr_per_img * a.batch, iters)
    ema = ModelEMA(model, 0.9998)
    batches = iter(loader)
    history, iter_losses, t0 = [], [], time.time()
    for epoch in range(exp.max_epoch):
        if epoch + 1 == exp.max_epoch - exp.no_aug_epochs:
            loader.close_mosaic()
            model.head.use_l1 = True
        sums: dict[str, float] = {}
        for i in range(iters):
            images, targets = next(batches)[:2]
            images, targets = images.float(), targets.float()
            targets.requires_grad = False
            out = model(images, targets)
            optimizer.zero_grad()
            out["total_loss"].backward()
            optimizer.step()
            ema.update(model)
            lr = scheduler.update_lr(epoch * iters + i + 1)
            for group in optimizer.param_groups:
                group["lr"] = lr
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
            iter_losses.append(float(out["total_loss"].detach()))
        row = {"epoch": epoch + 1, **{k: v / iters for k, v in sums.items()}, "lr": lr}
        history.append(row)
        print(json.dumps(row), flush=True)
    torch.save({"model": ema.ema.state_dict(), "model_raw": model.state_dict()}, a.out)
    with open(a.out + ".json", "w") as f:
        json.dump({"history": history, "iter_losses": iter_losses, "seconds": time.time() - t0,
                   "iters_per_epoch": iters}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
