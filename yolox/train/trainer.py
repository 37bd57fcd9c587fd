"""The YOLOX training loop: read it top to bottom.

One call to :func:`train` runs the authors' recipe on a prepared dataset: build the model (optionally
from a checkpoint; class predictors re-initialised when the class count differs), SGD with the authors'
parameter groups, warm-up cosine lr set every iteration (constant at its floor for the last
``no_aug_epochs``), Mosaic/MixUp until the last ``no_aug_epochs`` (or ``close_mosaic_epochs``: the authors'
trainer closes it one epoch earlier) when the L1 loss switches on, EMA of the weights, CUDA AMP when on a GPU, DDP under torchrun, a
checkpoint every ``checkpoint_interval`` epochs (atomic), and an evaluation of the EMA model every
``eval_interval`` epochs.

Exact resume: everything random in an epoch is a pure function of (seed, rank, epoch): the shuffling
(the batch sampler reseeds it per epoch), the multi-scale sizes, and each sample's augmentation (a seed
per sample, carried by the batch sampler's keys: :mod:`yolox.data.dataset`). The lr is a function of
the iteration, the no-aug phase of the epoch, and the checkpoint restores weights, EMA (and its update
count), optimizer momentum and grad scaler. So a run killed at any point and continued with
``resume=True`` from its last checkpoint ends with the weights of an uninterrupted run.

Interrupted (SIGINT, Ctrl-C, or SIGTERM): the step in flight is finished, then a checkpoint is written that
also records the step within the epoch (``epoch_step``) and the epoch's running loss sums
(``epoch_sums``), and :class:`~yolox.errors.Interrupted` is raised (:mod:`yolox.train.interrupt` says why
finish rather than abandon the step). Resumed, the run skips the batches of that epoch it already trained
on (the batch sampler does not even make them: :meth:`~yolox.data.dataset.MultiScaleBatchSampler.set_epoch`)
and goes on from the next one: the same batches, lr and EMA updates as an uninterrupted run, so the same
final weights and per-epoch metrics.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolox.assets import resolve_weights
from yolox.config import PipelineParams
from yolox.console import progress as progress_bar
from yolox.data.dataset import build_train_loader, loader_seeds
from yolox.data.records import load_prepared
from yolox.errors import CheckpointError, ConfigError, Interrupted
from yolox.evaluate.coco_eval import evaluate
from yolox.files import write_text
from yolox.inference import TorchBackend
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights
from yolox.models.meta import ModelMeta
from yolox.train.checkpoint import (
    check_output_dir,
    load_checkpoint,
    read_run_info,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_run_info,
)
from yolox.train.distributed import DistContext, barrier, cleanup, init_distributed
from yolox.train.ema import ModelEMA, unwrap
from yolox.train.interrupt import StopRequest
from yolox.train.losses import LossOutput, yolox_loss
from yolox.train.optim import build_optimizer
from yolox.train.schedule import WarmupCosineSchedule

log = logging.getLogger("yolox.train")

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called on rank 0 after each epoch with (epoch number from 1, metrics: losses, lr, and AP when evaluated)."""


@dataclass
class TrainResult:
    """Where the run left its checkpoint, and what it measured per epoch.

    ``run_id`` is the MLflow run id given to :func:`train` or found in the resumed checkpoint;
    ``model`` is this process's raw (not EMA) model at the end, on its training device.
    """

    checkpoint: Path
    output_dir: Path
    model_name: str
    input_size: int
    names: list[str]
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    run_id: str | None = None
    model: torch.nn.Module | None = field(default=None, repr=False, compare=False)


def per_process_batch(batch_size: int, world_size: int) -> int:
    """``train.batch_size`` (all processes) split over ``world_size`` processes.

    Raises:
        ConfigError: not divisible.
    """
    if batch_size % world_size:
        raise ConfigError(f"train.batch_size={batch_size} must be divisible by the {world_size} processes")
    return batch_size // world_size


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Deterministic algorithms (an error for an op without a deterministic kernel) and no cuDNN
    autotuning when ``enabled``; cuDNN autotuning on CUDA otherwise."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS on CUDA >= 10.2
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled and torch.cuda.is_available()


def prepare_for_training(model: torch.nn.Module, device: torch.device,
                         channels_last: bool = True) -> torch.memory_format:
    """Move ``model`` to ``device`` for training; returns the memory format to give the inputs.

    - channels_last (NHWC) on CUDA (tensor cores, cuDNN NHWC kernels) and on CPU too: oneDNN's NHWC
      convolutions and BatchNorm measured 13-23 % faster per step here (yolox-s, yolox-nano;
      ``bench/train_step.py --contiguous`` for the other);
    - activations out of place: an in-place SiLU after a BatchNorm makes autograd save a copy of its
      input for the backward pass; out of place, the BatchNorm output it already keeps is reused
      (same numbers, one copy per block less).
    """
    for m in model.modules():
        if isinstance(m, (torch.nn.SiLU, torch.nn.ReLU, torch.nn.LeakyReLU)):
            m.inplace = False
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=fmt)
    return fmt


def train_step(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, num_targets: torch.Tensor,
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, strides: tuple[int, ...],
               use_l1: bool = False, use_amp: bool = False) -> LossOutput:
    """One optimizer step: forward (autocast when ``use_amp``), SimOTA + loss in float32, backward
    (scaled), step. ``images (B, 3, S, S)`` and ``targets (B, G, 5)`` already on the model's device."""
    with torch.autocast(device_type=images.device.type, enabled=use_amp):
        raw = model(images)
    loss = yolox_loss(raw, targets, num_targets, tuple(images.shape[2:]), strides, use_l1=use_l1)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss.total).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


def loss_values(loss: LossOutput) -> dict[str, float]:
    """The loss terms as floats (the keys of :meth:`LossOutput.as_dict`), read without autograd."""
    terms = torch.stack([loss.total, loss.iou, loss.obj, loss.cls, loss.l1]).detach().float().tolist()
    return {**dict(zip(("total_loss", "iou_loss", "obj_loss", "cls_loss", "l1_loss"), terms)),
            "num_fg": float(loss.num_fg)}


def train(params: PipelineParams, prepared_dir: str | Path, output_dir: str | Path | None = None,
          resume: bool = False, on_epoch_end: EpochCallback | None = None, progress: bool = True,
          deterministic: bool = False, run_id: str | None = None) -> TrainResult:
    """Train (or continue training) YOLOX on a prepared dataset.

    Args:
        params: all params (model, augment, train, eval are read).
        prepared_dir: output of ``yolox prepare`` (``annotations/train.json``, ``val.json``, ``images/``).
        output_dir: checkpoints go here (``last.pth``, ``history.csv``, ``run.json``); default
            ``params.train.output_dir``.
        resume: continue from ``<output_dir>/last.pth`` (weights, EMA, optimizer, scaler, epoch,
            iteration, RNG states); ``params.train.epochs`` may be larger than the original run's (the
            schedule is recomputed for the new total). Without a ``last.pth`` (a run killed in its
            first epoch) the run starts from epoch 0, which gives the same result.
        on_epoch_end: see :data:`EpochCallback`. On resume, epochs that were checkpointed but not yet
            reported to it (``run.json``'s ``reported_epoch``) are reported first.
        deterministic: deterministic algorithms (also on with ``params.train.deterministic``): the
            same seed gives the same weights on CPU. Restored to its previous setting on return.
        run_id: the MLflow run the caller logs to; stored in the checkpoint (``mlflow_run_id``) and in
            ``run.json`` (see :func:`yolox.train.checkpoint.read_run_id`). On resume, default: the
            stored one.

    Returns:
        :class:`TrainResult` (the last checkpoint; its ``"model"`` holds the EMA weights).

    Raises:
        ConfigError: bad device or params (a batch not divisible by the processes or larger than the
            training set, a freeze prefix matching nothing, an output folder that cannot be written).
        CheckpointError: weights or resume checkpoint do not fit; DiskFullError: no room for a checkpoint.
        DataError: the prepared dataset is missing or empty.
        Interrupted: SIGINT or SIGTERM during the epochs; a resumable checkpoint was written first
            (module docstring).
    """
    tp = params.train
    ctx: DistContext = init_distributed(tp.device, tp.distributed.backend)
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    try:
        set_deterministic(deterministic or tp.deterministic)
        return _train(params, ctx, Path(prepared_dir), Path(output_dir or tp.output_dir), resume, on_epoch_end,
                      progress, run_id)
    finally:   # the process-wide flags as they were
        torch.use_deterministic_algorithms(flags[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[1], flags[2]
        cleanup(ctx)


def _train(params: PipelineParams, ctx: DistContext, prepared_dir: Path, out: Path, resume: bool,
           on_epoch_end: EpochCallback | None, progress: bool, run_id: str | None) -> TrainResult:
    tp, mp = params.train, params.model
    start = time.time()
    ckpt_path = check_output_dir(out) / "last.pth"
    batch_per_proc = per_process_batch(tp.batch_size, ctx.world_size)

    train_set = load_prepared(prepared_dir, "train")
    val_set = load_prepared(prepared_dir, "val")
    names = train_set.names
    if tp.batch_size > len(train_set.records) > 0:
        raise ConfigError(f"train.batch_size={tp.batch_size} is larger than the {len(train_set.records)} training "
                          f"images of {prepared_dir}: lower train.batch_size (the lr is scaled by it)")

    # Model: fresh (same init on every rank), or from a checkpoint (class predictors re-initialised
    # when the class count differs).
    seed_everything(tp.seed)
    model = build_model(mp.name, train_set.num_classes)
    seed_everything(tp.seed + ctx.rank)
    continuing = resume
    if resume and not ckpt_path.is_file():
        if ctx.is_main:
            log.warning("resume: %s does not exist (killed before its first checkpoint?); starting at epoch 0",
                        ckpt_path)
        resume = False
    if mp.weights and not resume:
        load_weights(model, resolve_weights(mp.weights), names=list(names))   # logs what it loaded
    frozen = freeze_parameters(model, tp.freeze)
    if frozen and ctx.is_main:
        log.info("frozen: %d parameter tensors under %s", frozen, ", ".join(tp.freeze))
    fmt = prepare_for_training(model, ctx.device)
    use_amp = tp.amp and ctx.device.type == "cuda"

    loader = build_train_loader(train_set, params.augment, mp.name, mp.input_size, batch_per_proc, tp.workers,
                                tp.seed, ctx.rank, ctx.world_size, ctx.distributed,
                                multiscale=params.augment.multiscale_range > 0, cache_mb=tp.cache_ram_mb,
                                full_batches=tp.full_batches)
    del train_set   # the loader holds the records as flat arrays; the workers it forks share only those
    iters_per_epoch = len(loader) if tp.max_iters_per_epoch is None else min(len(loader), tp.max_iters_per_epoch)
    lr = tp.basic_lr_per_img * tp.batch_size
    optimizer = build_optimizer(model, lr, tp.momentum, tp.weight_decay)
    schedule = WarmupCosineSchedule(lr, tp.epochs * iters_per_epoch, tp.warmup_epochs * iters_per_epoch,
                                    tp.no_aug_epochs * iters_per_epoch, tp.min_lr_ratio, tp.warmup_lr)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ema = ModelEMA(model, tp.ema_decay) if tp.ema and ctx.is_main else None   # rank 0 evaluates and saves

    start_epoch, iteration = 0, 0
    skip, skipped_sums = 0, {}    # a run interrupted mid-epoch: the steps of that epoch done, their loss sums
    history: list[dict[str, float]] = []
    reported = int(read_run_info(out).get("reported_epoch", 0)) if continuing else 0   # epochs the callback had
    if resume:
        state = load_checkpoint(ckpt_path)
        _restore(state, ckpt_path, params, names, model, ema, optimizer, scaler)
        start_epoch, iteration = int(state["epoch"]), int(state["iteration"])
        skip, skipped_sums = int(state.get("epoch_step", 0)), dict(state.get("epoch_sums", {}))
        history = list(state.get("history", []))
        run_id = run_id or state.get("mlflow_run_id")
        if ctx.is_main:
            set_rng_state(state["rng"])
            reported = _report_missed_epochs(out, history, reported, on_epoch_end)
            log.info("resumed from %s at epoch %d (iteration %d)", ckpt_path, start_epoch, iteration)
            if skip:
                log.info("resumed mid-epoch: epoch %d goes on after its step %d/%d", start_epoch + 1, skip,
                         iters_per_epoch)
        if start_epoch + (1 if skip else 0) > tp.epochs:   # interrupted in epoch e + 1: it needs e + 1 epochs
            part = " and part of the next" if skip else ""
            raise ConfigError(f"{ckpt_path} already has {start_epoch} epochs{part}, more than train.epochs={tp.epochs}: "
                              "raise train.epochs to continue it")
    elif continuing:   # killed before its first checkpoint: the run id is in run.json, if anywhere
        run_id = run_id or read_run_info(out).get("mlflow_run_id")
    if ctx.is_main:
        write_run_info(out, mlflow_run_id=run_id, reported_epoch=reported)

    if ctx.distributed:
        ddp_kwargs: dict[str, Any] = {"device_ids": [ctx.device.index]} if ctx.device.type == "cuda" else {}
        model = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False, **ddp_kwargs)

    strides = unwrap(model).strides
    seeds = {"loader": loader_seeds(tp.seed, ctx.rank, tp.workers), "world_size": ctx.world_size}
    stop = StopRequest()

    def stop_here(epoch: int, done: int, no_aug: bool, sums: dict[str, float]) -> None:
        """If a stop signal came (on any rank), save a checkpoint of this step boundary and raise."""
        signum = stop.agreed(ctx)
        if signum is None:
            return
        where = f"epoch {epoch + 1}/{tp.epochs}, step {done}/{iters_per_epoch}"
        if ctx.is_main:
            state = _checkpoint_state(model, ema, optimizer, scaler, epoch, iteration, no_aug, params, names)
            save_checkpoint({**state, **seeds, "history": history, "mlflow_run_id": run_id, "epoch_step": done,
                             "epoch_sums": sums}, ckpt_path)
            log.warning("interrupted by %s at %s: saved %s; continue it with --resume",
                        signal.Signals(signum).name, where, ckpt_path)
        barrier(ctx)
        raise Interrupted(signum, ckpt_path, where)

    # transient: each epoch's bar goes when the epoch ends (its log line stays)
    with progress_bar(disable=not (progress and ctx.is_main), transient=True) as bar, stop, \
            _last_checkpoint_named(ckpt_path):
        for epoch in range(start_epoch, tp.epochs):
            no_aug = epoch >= tp.epochs - tp.mosaic_off_epochs   # the lr floor is the schedule's (no_aug_epochs)
            first = min(skip, iters_per_epoch) if epoch == start_epoch else 0   # steps done before a resume
            loader.dataset.set_mosaic(not no_aug)       # travels to the workers in the sampler's keys
            loader.batch_sampler.set_epoch(epoch, first)   # shuffling, sizes and augmentation seeds of this epoch
            model.train()
            sums: dict[str, float] = dict(skipped_sums) if first else {}
            done = first
            task = bar.add_task(f"epoch {epoch + 1}/{tp.epochs}", total=iters_per_epoch, completed=first)
            for images, targets, num_targets, _ids in itertools.islice(loader, iters_per_epoch - first):
                stop_here(epoch, done, no_aug, sums)
                for group in optimizer.param_groups:   # the authors' order: step k (from 0) at schedule(k)
                    group["lr"] = schedule(iteration)
                iteration += 1
                images = images.to(ctx.device, non_blocking=True).contiguous(memory_format=fmt)
                targets = targets.to(ctx.device, non_blocking=True)
                loss = train_step(model, images, targets, num_targets, optimizer, scaler, strides,
                                  use_l1=no_aug, use_amp=use_amp)
                if ema is not None:
                    ema.update(model)
                values = loss_values(loss)
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                done += 1
                # the loss only (the epoch's log line has every term): the bar fits 80 columns
                bar.update(task, advance=1,
                           description=f"epoch {epoch + 1}/{tp.epochs} loss {values['total_loss']:.3f}")
            stop_here(epoch, done, no_aug, sums)      # every step of the epoch done, its end (eval, checkpoint) not
            bar.remove_task(task)
            metrics = {f"train/{k}": v / max(done, 1) for k, v in sums.items()}
            metrics["train/lr"] = optimizer.param_groups[0]["lr"]
            last = epoch + 1 == tp.epochs
            if ctx.is_main:
                if (epoch + 1) % tp.eval_interval == 0 or last:
                    eval_model = ema.ema if ema is not None else unwrap(model)
                    metrics.update(_evaluate(eval_model, val_set, mp.input_size, params, ctx.device))
                history.append({"epoch": epoch + 1, **metrics})
                if (epoch + 1) % tp.checkpoint_interval == 0 or last:
                    state = _checkpoint_state(model, ema, optimizer, scaler, epoch + 1, iteration, no_aug, params,
                                              names)
                    save_checkpoint({**state, **seeds, "history": history, "mlflow_run_id": run_id}, ckpt_path)
                    write_history_csv(history, out / "history.csv")
                done_epochs = epoch + 1 - start_epoch
                eta = (time.time() - start) / done_epochs * (tp.epochs - epoch - 1)
                log.info("epoch %d/%d %s (%.0f s elapsed, ETA %.0f s)", epoch + 1, tp.epochs,
                         " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), time.time() - start, eta)
                if on_epoch_end is not None and epoch + 1 > reported:   # re-run epochs were reported before
                    on_epoch_end(epoch + 1, metrics)
                    write_run_info(out, reported_epoch=epoch + 1)
            barrier(ctx)   # the other ranks wait for rank 0's evaluation and checkpoint
    return TrainResult(ckpt_path, out, mp.name, mp.input_size, names, tp.epochs, history, time.time() - start,
                       run_id, unwrap(model))


@contextlib.contextmanager
def _last_checkpoint_named(path: Path) -> Iterator[None]:
    """An :class:`Interrupted` without a checkpoint (a second signal stopped the run at once, e.g. while it
    wrote one) names the last checkpoint written, when there is one: what a resume continues from."""
    try:
        yield
    except Interrupted as err:
        if err.checkpoint is None and path.is_file():
            raise Interrupted(err.signum, path, "the last one written: a second signal stopped the run at once"
                              ) from None
        raise


def _restore(state: dict[str, Any], path: Path, params: PipelineParams, names: list[str], model: torch.nn.Module,
             ema: ModelEMA | None, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """Load a resume checkpoint into the freshly built model, EMA, optimizer and scaler.

    Raises:
        CheckpointError: the checkpoint is of another model, class list or parameter grouping
            (e.g. ``train.freeze`` changed).
    """
    if state.get("model_name", params.model.name) != params.model.name:
        raise CheckpointError(f"{path} is a {state['model_name']} checkpoint, but model.name is "
                              f"{params.model.name}: use another train.output_dir or the same model")
    if list(state.get("names", names)) != list(names):
        raise CheckpointError(f"{path} was trained on other classes than this prepared dataset: "
                              "resume with the dataset it was trained on")
    try:
        model.load_state_dict(state["model_raw"])
        if ema is not None:
            ema.ema.load_state_dict(state["model"])
            ema.updates = int(state.get("ema_updates", 0))
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path} does not fit this run ({type(err).__name__}: {str(err)[:300]}); "
                              "did train.freeze or the model change?") from None
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    saved = state.get("params", {}).get("train", {})
    now = params.train.model_dump(mode="json")
    changed = {k: (saved[k], v) for k, v in now.items() if k in saved and saved[k] != v}
    if changed:
        log.warning("resume: train params changed since the checkpoint: %s",
                    ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items())))


def _report_missed_epochs(out: Path, history: list[dict[str, float]], reported: int,
                          on_epoch_end: EpochCallback | None) -> int:
    """Give the epoch callback the checkpointed epochs after ``reported`` that it has not seen (killed
    between the checkpoint and the callback), so the tracked metrics have every epoch once. Returns the
    last epoch reported: epochs up to it that are trained again (``checkpoint_interval`` > 1, or no
    checkpoint yet) are not reported twice."""
    if on_epoch_end is None:
        return reported
    for row in history:
        epoch = int(row["epoch"])
        if epoch > reported:
            on_epoch_end(epoch, {k: v for k, v in row.items() if k != "epoch"})
            reported = epoch
            write_run_info(out, reported_epoch=epoch)
    return reported


def freeze_parameters(model: torch.nn.Module, prefixes: list[str]) -> int:
    """Set ``requires_grad=False`` on parameters whose name starts with one of ``prefixes``; returns how many.

    BatchNorm running statistics under the prefixes are buffers, not parameters: they keep updating.

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
    """Write per-epoch metrics as CSV to ``path`` (one row per epoch; ``dvc plots`` reads it; missing values
    empty), atomically (:func:`yolox.files.write_text`: an interrupted write leaves the previous file intact)."""
    import csv
    import io

    columns = list(dict.fromkeys(k for row in history for k in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_text(path, text.getvalue())


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
        "meta": ModelMeta(params.model.name, params.model.input_size, tuple(names), unwrap(model).strides).to_dict(),
    }


def _evaluate(model: torch.nn.Module, val_set: Any, input_size: int, params: PipelineParams,
              device: torch.device) -> dict[str, float]:
    was_training = model.training
    result = evaluate(TorchBackend(model, device), val_set, params.eval.img_size or input_size, params.eval,
                      progress=False)
    model.train(was_training)
    return {f"val/{k}": v for k, v in result.metrics.items()}
