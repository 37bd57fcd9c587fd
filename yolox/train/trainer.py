"""The YOLOX training loop: read it top to bottom.

One call to :func:`train` runs the authors' recipe on a prepared dataset: build the model (optionally
from a checkpoint; class predictors re-initialised when the class count differs), SGD with the authors'
parameter groups, warm-up cosine lr set every iteration, Mosaic/MixUp until the last ``no_aug_epochs``
(then the L1 loss switches on), EMA of the weights, CUDA AMP when on a GPU, DDP under torchrun, a
checkpoint every epoch (atomic), and an evaluation of the EMA model every ``eval_interval`` epochs.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from yolox.assets import resolve_weights
from yolox.config import PipelineParams
from yolox.data.records import load_prepared
from yolox.errors import CheckpointError, ConfigError
from yolox.losses import yolox_loss
from yolox.models import build_model, load_weights
from yolox.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from yolox.train.distributed import DistContext, barrier, cleanup, init_distributed
from yolox.train.ema import ModelEMA, unwrap
from yolox.train.optim import build_optimizer
from yolox.train.schedule import WarmupCosineSchedule

log = logging.getLogger("yolox.train")

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called on rank 0 after each epoch with (epoch number from 1, metrics: losses, lr, and AP when evaluated)."""


@dataclass
class TrainResult:
    """Where the run left its checkpoint, and what it measured per epoch."""

    checkpoint: Path
    output_dir: Path
    model_name: str
    input_size: int
    names: list[str]
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _num_classes_of(path: Path) -> int | None:
    from yolox.models.checkpoint import read_state_dict

    w = read_state_dict(path).get("head.cls_preds.0.weight")
    return None if w is None else int(w.shape[0])


def train(params: PipelineParams, prepared_dir: str | Path, output_dir: str | Path | None = None,
          resume: bool = False, on_epoch_end: EpochCallback | None = None, progress: bool = True,
          deterministic: bool = False) -> TrainResult:
    """Train (or continue training) YOLOX on a prepared dataset.

    Args:
        params: all params (model, augment, train, eval are read).
        prepared_dir: output of ``yolox prepare`` (``annotations/train.json``, ``val.json``, ``images/``).
        output_dir: checkpoints go here (``last.pth`` every epoch); default ``params.train.output_dir``.
        resume: continue from ``<output_dir>/last.pth`` (model, EMA, optimizer, scaler, epoch, RNG
            states); ``params.train.epochs`` may be larger than the original run's.
        on_epoch_end: see :data:`EpochCallback`.
        deterministic: ``torch.use_deterministic_algorithms(True)`` (same weights for the same seed on CPU).

    Returns:
        :class:`TrainResult` (the last checkpoint; its ``"model"`` holds the EMA weights).

    Raises:
        ConfigError: bad device or params. CheckpointError: weights or resume checkpoint do not fit.
        DataError: the prepared dataset is missing or empty.
    """
    from yolox.data.dataset import build_train_loader

    tp, mp = params.train, params.model
    ctx: DistContext = init_distributed(tp.device)
    out = Path(output_dir or tp.output_dir)
    if deterministic:
        torch.use_deterministic_algorithms(True)
    seed_everything(tp.seed + ctx.rank)
    start = time.time()

    train_set = load_prepared(prepared_dir, "train")
    val_set = load_prepared(prepared_dir, "val")
    names = train_set.names

    # Model: fresh, or from a checkpoint (class predictors re-initialised when the class count differs).
    model = build_model(mp.name, train_set.num_classes)
    if mp.weights and not resume:
        path = resolve_weights(mp.weights)
        load_report = load_weights(model, path)
        if ctx.is_main:
            log.info("%s", load_report)
    frozen = freeze_parameters(model, tp.freeze)
    if frozen and ctx.is_main:
        log.info("frozen: %d parameter tensors under %s", frozen, ", ".join(tp.freeze))
    model.to(ctx.device)
    use_amp = tp.amp and ctx.device.type == "cuda"
    if ctx.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    if tp.batch_size % ctx.world_size:
        raise ConfigError(f"train.batch_size={tp.batch_size} must be divisible by the {ctx.world_size} processes")
    batch_per_proc = tp.batch_size // ctx.world_size
    loader = build_train_loader(train_set, params.augment, mp.name, mp.input_size, batch_per_proc, tp.workers,
                                tp.seed, ctx.rank, ctx.world_size, ctx.distributed,
                                multiscale=params.augment.multiscale_range > 0)
    iters_per_epoch = len(loader) if tp.max_iters_per_epoch is None else min(len(loader), tp.max_iters_per_epoch)
    lr = tp.basic_lr_per_img * tp.batch_size
    optimizer = build_optimizer(model, lr, tp.momentum, tp.weight_decay)
    schedule = WarmupCosineSchedule(lr, tp.epochs * iters_per_epoch, tp.warmup_epochs * iters_per_epoch,
                                    tp.no_aug_epochs * iters_per_epoch, tp.min_lr_ratio, tp.warmup_lr)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ema = ModelEMA(model, tp.ema_decay) if tp.ema else None

    start_epoch, iteration = 0, 0
    history: list[dict[str, float]] = []
    if resume:
        state = load_checkpoint(out / "last.pth")
        unwrap(model).load_state_dict(state["model_raw"])
        if ema is not None:
            ema.ema.load_state_dict(state["model"])
            ema.updates = int(state.get("ema_updates", 0))
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, iteration = int(state["epoch"]), int(state["iteration"])
        history = list(state.get("history", []))
        if "rng" in state and ctx.rank == 0:
            set_rng_state(state["rng"])
        if start_epoch >= tp.epochs:
            raise ConfigError(f"{out / 'last.pth'} already has {start_epoch} epochs; raise train.epochs to continue")
        if ctx.is_main:
            log.info("resumed from %s at epoch %d (iteration %d)", out / "last.pth", start_epoch, iteration)

    if ctx.distributed:
        ddp_kwargs: dict[str, Any] = {"device_ids": [ctx.device.index]} if ctx.device.type == "cuda" else {}
        model = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False, **ddp_kwargs)

    strides = unwrap(model).strides
    columns = [TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not (progress and ctx.is_main)) as bar:
        for epoch in range(start_epoch, tp.epochs):
            no_aug = epoch >= tp.epochs - tp.no_aug_epochs
            loader.dataset.set_mosaic(not no_aug)
            loader.batch_sampler.set_epoch(epoch)
            if hasattr(loader.batch_sampler.sampler, "generator") and loader.batch_sampler.sampler.generator is not None:
                loader.batch_sampler.sampler.generator.manual_seed(tp.seed * 100003 + epoch)
            model.train()
            sums: dict[str, float] = {}
            task = bar.add_task("train", total=iters_per_epoch, epoch=epoch + 1, epochs=tp.epochs, losses="")
            for i, (images, targets, num_targets, _ids) in enumerate(loader):
                if i >= iters_per_epoch:
                    break
                iteration += 1
                for group in optimizer.param_groups:
                    group["lr"] = schedule(iteration)
                images = images.to(ctx.device, non_blocking=True)
                if ctx.device.type == "cuda":
                    images = images.to(memory_format=torch.channels_last)
                targets = targets.to(ctx.device, non_blocking=True)
                with torch.autocast(device_type=ctx.device.type, enabled=use_amp):
                    raw = model(images)
                loss = yolox_loss(raw, targets, num_targets, tuple(images.shape[2:]), strides, use_l1=no_aug)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss.total).backward()
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(model)
                for k, v in loss.as_dict().items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(task, advance=1, losses=f"loss {float(loss.total):.3f} iou {float(loss.iou):.3f} "
                           f"obj {float(loss.obj):.3f} cls {float(loss.cls):.3f} size {images.shape[-1]}")
            bar.remove_task(task)
            n = max(min(iters_per_epoch, i + 1), 1)
            metrics = {f"train/{k}": v / n for k, v in sums.items()}
            metrics["train/lr"] = optimizer.param_groups[0]["lr"]
            eval_model = ema.ema if ema is not None else unwrap(model)
            if ctx.is_main and ((epoch + 1) % tp.eval_interval == 0 or epoch + 1 == tp.epochs):
                metrics.update(_evaluate(eval_model, val_set, mp.input_size, params, ctx.device))
            if ctx.is_main:
                history.append({"epoch": epoch + 1, **metrics})
                state = _checkpoint_state(model, ema, optimizer, scaler, epoch + 1, iteration, no_aug, params, names)
                save_checkpoint({**state, "history": history}, out / "last.pth")
                write_history_csv(history, out / "history.csv")
                log.info("epoch %d/%d %s", epoch + 1, tp.epochs,
                         " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, metrics)
            barrier(ctx)
    cleanup(ctx)
    return TrainResult(out / "last.pth", out, mp.name, mp.input_size, names, tp.epochs, history, time.time() - start)


def freeze_parameters(model: torch.nn.Module, prefixes: list[str]) -> int:
    """Set ``requires_grad=False`` on parameters whose name starts with one of ``prefixes``; returns how many.

    Raises:
        ConfigError: a prefix matches no parameter (names the prefix).
    """
    count = 0
    for prefix in prefixes:
        matched = [p for n, p in model.named_parameters() if n.startswith(prefix)]
        if not matched:
            raise ConfigError(f"train.freeze: {prefix!r} matches no parameter of the model")
        for p in matched:
            p.requires_grad_(False)
        count += len(matched)
    return count


def write_history_csv(history: list[dict[str, float]], path: Path) -> None:
    """Per-epoch metrics as CSV (one row per epoch; ``dvc plots`` reads it). Missing values are empty."""
    import csv

    columns = list(dict.fromkeys(k for row in history for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def _checkpoint_state(model: torch.nn.Module, ema: ModelEMA | None, optimizer: torch.optim.Optimizer,
                      scaler: torch.amp.GradScaler, epoch: int, iteration: int, no_aug: bool,
                      params: PipelineParams, names: list[str]) -> dict[str, Any]:
    raw = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    evaluated = {k: v.detach().cpu() for k, v in ema.ema.state_dict().items()} if ema is not None else raw
    return {
        "model": evaluated, "model_raw": raw, "ema_updates": ema.updates if ema is not None else 0,
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
        "iteration": iteration, "phase": {"mosaic": not no_aug, "l1": no_aug}, "rng": rng_state(),
        "params": params.model_dump(mode="json"), "names": list(names),
        "model_name": params.model.name, "input_size": params.model.input_size,
    }


def _evaluate(model: torch.nn.Module, val_set: Any, input_size: int, params: PipelineParams,
              device: torch.device) -> dict[str, float]:
    from yolox.evaluate.coco_eval import evaluate
    from yolox.inference import TorchBackend

    was_training = model.training
    result = evaluate(TorchBackend(model, device), val_set, params.eval.img_size or input_size, params.eval,
                      progress=False)
    model.train(was_training)
    return {f"val/{k}": v for k, v in result.metrics.items()}


def load_trained(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A model built and loaded from a checkpoint written by :func:`train` (its ``"model"`` weights),
    and the checkpoint's metadata (model_name, input_size, names, params).

    Raises:
        CheckpointError: not a checkpoint of this project.
    """
    state = torch.load(Path(path), map_location="cpu", weights_only=True) if Path(path).is_file() else None
    if state is None or "model_name" not in state:
        raise CheckpointError(f"{path}: not a training checkpoint of this project (no model_name)")
    model = build_model(state["model_name"], len(state["names"]))
    model.load_state_dict(state["model"])
    return model.eval(), {k: state[k] for k in ("model_name", "input_size", "names", "params", "epoch")}
