"""The authors' side of the side-by-side benchmarks: a worker process driving THEIR code.

Runs in the authors' virtual environment with their repository on ``PYTHONPATH`` (``sidebyside.authors_worker``
starts it; ``../shared/peer/README.md``), never in this project's venv: both packages are named ``yolox``.
Nothing here is imported by the project, and nothing of theirs is copied: it calls their components as their
trainer does. Tasks (first argument), each answering the requests of :func:`sidebyside.serve`:

- ``train_step --model M --weights W --batches B.pt``: their ``Exp.get_model()`` (strict load of ``W``), train
  mode, ``get_optimizer(8)`` at lr 0.01/64 * 8 (as ``step_authors.py``), ``ModelEMA(model, 0.9998)``; one step
  is their ``Trainer.train_one_iter`` minus logging and AMP: ``model(images, targets)`` (forward, their
  per-image SimOTA and loss), ``zero_grad``, ``backward``, ``step``, EMA update. ``setup`` answers the loss
  terms of the first step (the weights as loaded, batch 0) and runs ``--warmup`` more; ``run n`` answers the
  seconds of ``n`` steps (batches in turn). ``profile`` answers seconds per phase (forward with the loss,
  ``get_assignments`` inside it, backward, optimizer, EMA) over ``n`` steps. ``figures`` (instead of
  ``setup``) answers the loss terms of one step and the size of its update per group of parameters.
- ``assign --inputs X.pt [--out Y.pt]``: their ``YOLOXHead.get_assignments`` called per image with box
  targets, as their ``get_losses`` loop does; ``run n`` answers the seconds of ``n`` passes over the batch.
  ``--out`` gets their assignment (fg mask, matched box index per anchor point) for comparison.
- ``predict --weights W --images-file F [--fuse]``: their demo path (``tools/demo.py``, imported from their
  repository): ``Predictor(model, exp, COCO_CLASSES, None, None, "cpu", False, False).inference(path)``
  (``cv2.imread``, ``ValTransform``, the model, ``postprocess`` with ``class_agnostic=True``) on their
  ``exp.get_model()`` with ``W`` loaded (``fuse_model`` with ``--fuse``, the demo's option), ``exp.test_size``
  ``--size``, ``test_conf`` ``--conf``, ``nmsthre`` ``--nms``; boxes divided by the ratio as their ``visual``
  does (original pixels). Their loguru sink is removed, so their per-image log line is not timed. ``setup``
  answers each image's detections ``[x0, y0, x1, y1, score, class]``, ``run n`` the seconds per image,
  ``profile n`` the milliseconds of its phases.
- ``data --recipe nano|s --coco DIR``: their ``COCODataset`` + ``MosaicDetection`` + ``TrainTransform`` with
  the recipe of their ``Exp`` for yolox-nano (416) or yolox-s (640), built as their ``get_data_loader`` does;
  ``run n`` answers ``[seconds per sample]`` of ``n`` consecutive samples ``dataset[(True, index)]``; ``stats n``
  answers per sample the target rows with w + h > 0, those with min(w, h) > 1, and the pad-grey share.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sidebyside import serve  # stdlib only

LR_PER_IMG = 0.01 / 64


def train_step_task(a: argparse.Namespace) -> dict:
    from yolox.exp import get_exp
    from yolox.utils import ModelEMA

    exp = get_exp(None, a.model)
    model = exp.get_model()
    model.load_state_dict(torch.load(a.weights, map_location="cpu", weights_only=True)["model"], strict=True)
    model.train()
    batches = torch.load(a.batches, weights_only=True)
    optimizer = exp.get_optimizer(batches[0][0].shape[0])
    for g in optimizer.param_groups:
        g["lr"] = LR_PER_IMG * batches[0][0].shape[0]
    ema = ModelEMA(model, 0.9998)
    state = {"i": 0}

    def step() -> dict:
        images, targets = batches[state["i"] % len(batches)][:2]
        state["i"] += 1
        out = model(images, targets)
        optimizer.zero_grad()
        out["total_loss"].backward()
        optimizer.step()
        ema.update(model)
        return out

    def setup(_: dict) -> dict:
        out = step()
        for _ in range(a.warmup):
            step()
        return {"loss": {k: float(v) for k, v in out.items()}}

    def run(req: dict) -> dict:
        times = []
        for _ in range(req["n"]):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return {"times": times}

    def profile(req: dict) -> dict:
        head = model.head
        phases = dict.fromkeys(("forward+loss", "assign", "backward", "optimizer", "ema"), 0.0)
        original = head.get_assignments

        def timed_assign(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                phases["assign"] += time.perf_counter() - t0

        head.get_assignments = timed_assign
        try:
            for _ in range(req["n"]):
                images, targets = batches[state["i"] % len(batches)][:2]
                state["i"] += 1
                t0 = time.perf_counter()
                out = model(images, targets)
                t1 = time.perf_counter()
                optimizer.zero_grad()
                out["total_loss"].backward()
                t2 = time.perf_counter()
                optimizer.step()
                t3 = time.perf_counter()
                ema.update(model)
                t4 = time.perf_counter()
                for k, dt in zip(("forward+loss", "backward", "optimizer", "ema"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    phases[k] += dt
        finally:
            del head.get_assignments
        return {k: v / req["n"] for k, v in phases.items()}

    def figures(_: dict) -> dict:
        """One step from the weights as loaded, on batch 0: loss terms and update figures (step_parity.py)."""
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        out = step()
        return {"loss": {k: float(v) for k, v in out.items()},
                "update_l1": update_l1(before, dict(model.named_parameters()))}

    return {"setup": setup, "run": run, "profile": profile, "figures": figures}


def update_l1(before: dict, after: dict) -> dict:
    """Sum of |after - before| (float64) per group of parameters named by their first two name parts."""
    sums: dict[str, float] = {}
    for name, p in after.items():
        key = ".".join(name.split(".")[:2])
        sums[key] = sums.get(key, 0.0) + float((p.detach().double() - before[name].double()).abs().sum())
    return sums


def assign_task(a: argparse.Namespace) -> dict:
    from yolox.models import YOLOXHead

    x = torch.load(a.inputs, weights_only=True)
    pred, cls_logits, obj_logits = x["pred_boxes"], x["cls_logits"], x["obj_logits"]
    gt_boxes, gt_classes, counts = x["gt_boxes"], x["gt_classes"], x["counts"]
    grid, stride = x["grid"], x["stride"]
    head = YOLOXHead(cls_logits.shape[-1])
    expanded_strides, x_shifts, y_shifts = stride[None], grid[None, :, 0], grid[None, :, 1]
    obj_preds = obj_logits[..., None]

    def once() -> list:
        results = []
        for b in range(pred.shape[0]):       # their get_losses loop, minus the loss terms
            num_gt = int(counts[b])
            if num_gt == 0:
                results.append(None)
                continue
            results.append(head.get_assignments(b, num_gt, gt_boxes[b, :num_gt], gt_classes[b, :num_gt].float(),
                                                pred[b], expanded_strides, x_shifts, y_shifts, cls_logits,
                                                obj_preds))
        return results

    def setup(_: dict) -> dict:
        results = once()
        fg = torch.zeros(pred.shape[:2], dtype=torch.bool)
        matched = torch.zeros(pred.shape[:2], dtype=torch.long)
        for b, r in enumerate(results):
            if r is not None:
                _, fg_mask, _, matched_gt_inds, _ = r
                fg[b] = fg_mask
                matched[b, fg_mask] = matched_gt_inds
        if a.out:
            torch.save({"fg_mask": fg, "matched_gt": matched}, a.out)
        return {"num_fg": int(fg.sum())}

    def run(req: dict) -> dict:
        times = []
        for _ in range(req["n"]):
            t0 = time.perf_counter()
            once()
            times.append(time.perf_counter() - t0)
        return {"times": times}

    return {"setup": setup, "run": run}


def data_task(a: argparse.Namespace) -> dict:
    import cv2
    from yolox.exp import get_exp

    from yolox.data import COCODataset, MosaicDetection, TrainTransform

    cv2.setNumThreads(0)
    random.seed(a.seed)
    np.random.seed(a.seed)
    exp = get_exp(None, {"nano": "yolox-nano", "s": "yolox-s"}[a.recipe])
    base = COCODataset(data_dir=a.coco, json_file=a.ann, img_size=exp.input_size,
                       preproc=TrainTransform(max_labels=50, flip_prob=exp.flip_prob, hsv_prob=exp.hsv_prob),
                       cache=a.cache, cache_type="ram")
    ds = MosaicDetection(dataset=base, mosaic=True, img_size=exp.input_size,
                         preproc=TrainTransform(max_labels=120, flip_prob=exp.flip_prob, hsv_prob=exp.hsv_prob),
                         degrees=exp.degrees, translate=exp.translate, mosaic_scale=exp.mosaic_scale,
                         mixup_scale=exp.mixup_scale, shear=exp.shear, enable_mixup=exp.enable_mixup,
                         mosaic_prob=exp.mosaic_prob, mixup_prob=exp.mixup_prob)
    order = np.random.default_rng(a.seed).permutation(len(ds))
    state = {"i": 0}

    def sample():
        out = ds[(True, int(order[state["i"] % len(order)]))]
        state["i"] += 1
        return out

    def setup(req: dict) -> dict:
        for _ in range(req.get("warmup", 0)):
            sample()
        return {"images": len(ds), "size": list(exp.input_size), "mosaic_prob": exp.mosaic_prob,
                "mixup": bool(exp.enable_mixup), "mosaic_scale": list(exp.mosaic_scale)}

    def run(req: dict) -> dict:
        t0 = time.perf_counter()
        for _ in range(req["n"]):
            sample()
        return {"times": [(time.perf_counter() - t0) / req["n"]]}

    def stats(req: dict) -> dict:
        """Per sample: target rows with w + h > 0 (what their padded targets hold), rows with min(w, h) > 1
        (boxes with an area), and the share of pad-grey (114) pixels."""
        rows = []
        for _ in range(req["n"]):
            img, targets = sample()[:2]
            wh = np.asarray(targets)[:, 3:5]
            grey = (np.abs(np.asarray(img, np.float32) - 114).max(axis=0) < 1).mean()
            rows.append([int((wh.sum(1) > 0).sum()), int((wh.min(1) > 1).sum()), float(grey)])
        return {"rows": rows}

    return {"setup": setup, "run": run, "stats": stats}


def predict_task(a: argparse.Namespace) -> dict:
    import importlib.util

    import cv2
    from loguru import logger
    from yolox.data.datasets import COCO_CLASSES
    from yolox.exp import get_exp
    from yolox.utils import fuse_model, postprocess

    spec = importlib.util.spec_from_file_location("authors_demo", Path.cwd() / "tools" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    logger.remove()
    exp = get_exp(None, a.model)
    exp.test_conf, exp.nmsthre, exp.test_size = a.conf, a.nms, (a.size, a.size)
    model = exp.get_model()
    model.eval()
    model.load_state_dict(torch.load(a.weights, map_location="cpu", weights_only=True)["model"])
    if a.fuse:
        model = fuse_model(model)
    predictor = demo.Predictor(model, exp, COCO_CLASSES, None, None, "cpu", False, False)
    images = Path(a.images_file).read_text().split()

    def once(path: str) -> list:
        outputs, info = predictor.inference(path)
        out = outputs[0]
        if out is None:
            return []
        boxes = out[:, :4] / info["ratio"]
        return torch.cat([boxes, (out[:, 4] * out[:, 5])[:, None], out[:, 6:7]], 1).tolist()

    def setup(_: dict) -> dict:
        return {"dets": [once(p) for p in images]}

    def run(req: dict) -> dict:
        times = []
        for k in range(req["n"]):
            t0 = time.perf_counter()
            once(images[k % len(images)])
            times.append(time.perf_counter() - t0)
        return {"times": times}

    def profile(req: dict) -> dict:
        """Their inference's phases, in its order (read, ValTransform, the model, postprocess), ms per image."""
        phases = dict.fromkeys(("read", "letterbox", "model", "decode + NMS"), 0.0)
        for k in range(req["n"]):
            t0 = time.perf_counter()
            img = cv2.imread(images[k % len(images)])
            t1 = time.perf_counter()
            x = torch.from_numpy(predictor.preproc(img, None, exp.test_size)[0]).unsqueeze(0).float()
            t2 = time.perf_counter()
            with torch.no_grad():
                out = model(x)
                t3 = time.perf_counter()
                postprocess(out, exp.num_classes, exp.test_conf, exp.nmsthre, class_agnostic=True)
            t4 = time.perf_counter()
            for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[key] += dt * 1000 / req["n"]
        return phases

    return {"setup": setup, "run": run, "profile": profile}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("task", choices=("train_step", "assign", "data", "predict"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="yolox-nano")
    ap.add_argument("--weights")
    ap.add_argument("--batches")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--inputs")
    ap.add_argument("--out")
    ap.add_argument("--recipe", default="nano")
    ap.add_argument("--coco")
    ap.add_argument("--ann", default="instances_train2017.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images-file")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--nms", type=float, default=0.45)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--fuse", action="store_true")
    ap.add_argument("--cache", action="store_true", help="data: their COCODataset(cache=True, cache_type='ram')")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    tasks = {"train_step": train_step_task, "assign": assign_task, "data": data_task,
             "predict": predict_task}
    serve(tasks[a.task](a))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
