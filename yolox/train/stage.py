"""The train stage: train or fine-tune on a prepared dataset (in this process, under torchrun, or on Kubernetes:
:func:`yolox.train.launch.launch_training`) and return the checkpoint (:class:`TrainedModel`)."""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

from yolox.config import PipelineParams, registry_reference
from yolox.errors import ConfigError, Interrupted, StageError
from yolox.evaluate.plots import save_figures, training_curves
from yolox.models.meta import ModelMeta
from yolox.tracking.journal import epoch_journal
from yolox.tracking.run import attach
from yolox.train.checkpoint import check_output_dir, read_run_id
from yolox.train.launch import launch_training
from yolox.train.torchrun import processes_per_node
from yolox.train.trainer import per_process_batch

log = logging.getLogger("yolox.train")


@dataclass(frozen=True)
class TrainedModel:
    """A training checkpoint (``last.pth``: EMA weights under ``"model"``) and what made it."""

    checkpoint: Path
    meta: ModelMeta
    epochs: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    run_id: str | None = None


def train(params: PipelineParams, prepared_dir: str | Path | None = None, out_dir: str | Path | None = None,
          resume: bool | str = False, run_id: str | None = None, progress: bool = True) -> TrainedModel:
    """Train on a prepared dataset (default ``params.data.prepared_dir``) into ``out_dir`` (default
    ``params.train.output_dir``). With ``run_id``, every epoch's metrics go to that MLflow run as the epoch
    ends, through the journal ``<out>/tracking-journal.jsonl`` (:mod:`yolox.tracking.journal`: a dead or slow
    tracking server never holds training up; the end of training waits up to ``tracking.flush_timeout_s`` for
    it, then leaves the rest for ``yolox tracking flush``), and the checkpoint is logged as an artifact at the end.

    ``model.weights`` naming a registered version (``champion``, ``@alias``, ``version N``) starts from that
    version's training checkpoint (:func:`warm_start`).

    ``resume``: True continues ``<out_dir>/last.pth``; ``"auto"`` continues it only when it belongs to
    ``run_id`` (a retried pipeline task), else starts afresh; False starts afresh.

    ``train.distributed.launcher`` says where it trains (:func:`yolox.train.launch.launch_training`): in this
    process, on this machine's torchrun agent (its workers' lines in the log; rank 0 logs the epochs to the
    run), or as a Kubeflow PyTorchJob on Kubernetes (its pods' lines in the log).

    Interrupted (SIGINT, SIGTERM): the trainer, or the launched job's rank 0, saves a resumable checkpoint
    first; :class:`~yolox.errors.Interrupted` names it.

    Raises:
        ConfigError, CheckpointError, DataError: see :func:`yolox.train.trainer.train`.
        LaunchError: a launched job failed (``yolox.train.launch``).
        Interrupted: see above.
    """
    prepared_dir = Path(prepared_dir or params.data.prepared_dir)
    out = Path(out_dir or params.train.output_dir)
    if registry_reference(params.model.weights) is not None:
        raise ConfigError(f"model.weights {params.model.weights!r} names a registered version: resolve it to its "
                          "training checkpoint first (yolox.registry.warm_start.start_weights; `yolox train` does)")
    dp = params.train.distributed
    if dp.launcher == "torchrun":   # checked here: the launched workers would fail one by one, after restarts
        check_output_dir(out)
        per_process_batch(params.train.batch_size, dp.nodes * processes_per_node(dp))
    if resume == "auto":
        resume = bool(run_id) and (out / "last.pth").is_file() and read_run_id(out) == run_id
        if resume:
            log.info("continuing %s: it belongs to this run (%s)", out / "last.pth", run_id)
    in_process = params.train.distributed.launcher == "none"   # else the launched rank 0 logs the epochs
    tp = params.tracking
    try:
        with epoch_journal(out, run_id if in_process else None, tp.request_timeout_s, tp.flush_timeout_s) as journal:
            result = launch_training(params, prepared_dir, out, resume=bool(resume), on_epoch_end=journal,
                                     progress=progress, run_id=run_id)
    except BaseException as err:
        if not isinstance(err, (KeyboardInterrupt, Interrupted)) or in_process or \
                (isinstance(err, Interrupted) and err.checkpoint):
            raise
        # this process was interrupted while a launched job trained: the launcher stopped the job with
        # SIGTERM, and its rank 0 saved a checkpoint (unless stopped before its first step)
        checkpoint = out / "last.pth"
        raise Interrupted(getattr(err, "signum", signal.SIGINT), checkpoint if checkpoint.is_file() else None,
                          "the launched job's last checkpoint") from err
    if result.history:
        save_figures({"training_curves.png": training_curves(result.history)}, out)
    run = attach(params, run_id)
    if run is not None:
        if result.run_id not in (None, run_id):   # never log another run's checkpoint as this run's
            raise StageError(f"train: {result.checkpoint} belongs to MLflow run {result.run_id}, not to this run "
                             f"({run_id}): another run wrote into {out}; give each run its own train.output_dir")
        run.log_metrics({"train/seconds": round(result.seconds, 1)})
        run.log_artifact(result.checkpoint, "checkpoint")
    meta = ModelMeta(result.model_name, result.input_size, tuple(result.names))
    return TrainedModel(result.checkpoint, meta, result.epochs, result.seconds, result.history, result.run_id)
