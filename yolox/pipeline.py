"""The one composition of the stages.

Data flows one way: raw dataset -> :class:`~yolox.data.stage.PreparedData` -> :class:`~yolox.train.stage.TrainedModel`
-> :class:`~yolox.evaluate.stage.Evaluation` -> :class:`~yolox.export.stage.ExportedModel` ->
:class:`~yolox.registry.stage.RegisteredModel` -> :class:`~yolox.registry.rules.Decision` (champion alias). Each
arrow is one function in its stage package, taking validated params and paths and returning a typed result:

=============  ==========================================================  ======================
stage          what it does (where)                                         called by
=============  ==========================================================  ======================
``prepare``    validate and split the raw data, write it; its DVC hash       ``yolox prepare``
               (:func:`yolox.data.stage.prepare`)
``train``      train or fine-tune; epoch lines in the log, metrics to the    ``yolox train``
               run while it trains (:func:`yolox.train.stage.train`)
``evaluate``   COCO AP (pycocotools) of a .pth or .onnx on a dataset split   ``yolox eval``
               (:func:`yolox.evaluate.stage.evaluate`)
``export``     ONNX + check against PyTorch (+ INT8, + TensorRT on a GPU)    ``yolox export``
               (:func:`yolox.export.stage.export`)
``register``   the ONNX pyfunc as a new registered version (``challenger``)  the pipeline
               (:func:`yolox.registry.stage.register`)
``gate``       candidate vs champion (and best-ever, and base weights)      ``yolox gate``
               (:func:`yolox.registry.stage.gate`)
=============  ==========================================================  ======================

:func:`run_pipeline` chains them in one MLflow run, in the run's own folder (:func:`new_run_dir`); ``yolox
pipeline`` calls it directly, the Prefect flow ``train-yolox`` (``flows/train_yolox.py``) calls it with a runner
that makes each stage a task (retries, caching, the UI), and ``dvc.yaml``'s stages run the CLI commands above.
Nothing else composes stages or chooses a size, threshold or tag name: the input size comes from
:func:`yolox.models.meta.input_size`, thresholds from :mod:`yolox.config`, tag names from :data:`RUN_TAGS`.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolox.config import PipelineParams
from yolox.data.stage import PreparedData, own_data, prepare
from yolox.errors import ConfigError, StageError
from yolox.evaluate.stage import Evaluation, evaluate
from yolox.export.stage import ExportedModel, export
from yolox.lineage import code_version, params_digest
from yolox.registry.stage import RegisteredModel, gate, register
from yolox.registry.versions import alias_version
from yolox.registry.warm_start import warm_start, with_start_weights
from yolox.tracking.journal import JOURNAL_NAME, record_run_end
from yolox.tracking.run import MlflowRun, default_run_name, git_commit
from yolox.tracking.store import ensure_experiment, preflight, redact, server_lost
from yolox.train.stage import TrainedModel, train

log = logging.getLogger("yolox.pipeline")

RUN_TAGS = ("model", "input_size", "data_version", "data_source", "git_commit", "registered_model", "params_digest",
            "code_version")
"""Tags every pipeline MLflow run carries (plus ``prefect_flow_run`` under Prefect, ``registered_version``
after registration, ``warm_start``, ``export_check``, ``gate.decision``/``gate.outcome``, ``failed_stage`` on failure,
``skipped`` on a night with nothing new). ``data_version``, ``params_digest`` and ``code_version`` are also tags of
the registered version: what the skip rule compares (:func:`changes_since`)."""

LINEAGE_TAGS = ("data_version", "params_digest", "code_version")
"""What a model was trained from (version tags): a night whose three equal a recent version's has nothing new."""


# --- what a run returns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineResult:
    """What one pipeline run made, with the gate's decision record (``decision["promoted"]``)."""

    run_id: str
    prepared: PreparedData
    trained: TrainedModel
    evaluation: Evaluation
    exported: ExportedModel
    registered: RegisteredModel
    decision: dict[str, Any]
    run_dir: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall seconds of each stage as :func:`run_pipeline` ran it (``prepare`` ... ``gate``) and ``total`` (the
    whole call, the stores' preflight included)."""

    skipped = False

    @property
    def promoted(self) -> bool:
        return bool(self.decision.get("promoted"))

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (what ``yolox pipeline`` prints)."""
        champion = self.decision["gate"]["champion_alias"] if self.promoted else self.decision["gate"][
            "challenger_alias"]
        return {"mlflow_run_id": self.run_id, "run_dir": str(self.run_dir) if self.run_dir else None,
                "data_version": self.prepared.data_version, "AP50_95": self.evaluation.metrics["AP50_95"], "AP50": self.evaluation.metrics["AP50"],
                "onnx": str(self.exported.onnx), "onnx_max_abs_diff": self.exported.max_abs_diff,
                **({"int8_AP50_95": self.exported.int8.int8_ap} if self.exported.int8 else {}),
                **({"tensorrt": {"engine": str(e.path), "precision": e.precision, "AP50_95": e.ap,
                                 "onnx_AP50_95": e.onnx_ap, "val_set": e.val_set, "gpu": e.config.get("gpu")}}
                   if (e := self.exported.engine_eval) else {}),
                "registered_model": self.registered.name, "version": self.registered.version, "alias": champion,
                "promoted": self.promoted, "skipped": False, "gate": self.decision, "seconds": self.seconds}


@dataclass(frozen=True)
class SkippedRun:
    """A pipeline run that ended early: nothing changed since a registered version (:func:`changes_since`)."""

    run_id: str
    prepared: PreparedData
    reason: str
    promoted: bool = False
    skipped: bool = True

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (what ``yolox pipeline`` prints)."""
        return {"mlflow_run_id": self.run_id, "data_version": self.prepared.data_version, "skipped": True,
                "reason": self.reason, "promoted": False}


# --- the stages ----------------------------------------------------------------------------------------


def lineage_of(params: PipelineParams, prepared: PreparedData) -> dict[str, str]:
    """What a model trained now would be trained from (:data:`LINEAGE_TAGS`): the prepared data's version, the
    params' digest (``model.weights`` as written: ``champion`` stays ``champion``) and the training code's
    version (:mod:`yolox.lineage`)."""
    return dict(zip(LINEAGE_TAGS, (prepared.data_version, params_digest(params), code_version()), strict=True))


def changes_since(params: PipelineParams, prepared: PreparedData) -> str | None:
    """Why this run has nothing new to learn, or None: the version holding the champion alias (or, failing that,
    the challenger alias: a rejected candidate would be trained again, identically) was trained from the same
    data version, params digest and code version (:func:`lineage_of`). Returns e.g. ``"data unchanged since
    version 4 (champion)"``.

    Raises:
        TrackingError: the registry cannot be read.
    """
    now, name, gp = lineage_of(params, prepared), params.tracking.registered_model, params.gate
    for alias in (gp.champion_alias, gp.challenger_alias):
        mv = alias_version(name, alias)
        if mv is not None and all((mv.tags or {}).get(k) == v for k, v in now.items()):
            return f"data unchanged since version {mv.version} ({alias}): same data, params and code"
    return None


def skip_run(params: PipelineParams, run_id: str, prepared: PreparedData, reason: str) -> SkippedRun:
    """End run ``run_id`` as a skipped night: tags ``skipped`` (the reason), a note, status FINISHED."""
    run = MlflowRun.attach(run_id)
    run.set_tags({"skipped": reason})
    run.set_note(f"## Skipped\n\n{reason}: nothing new to train on, so nothing was trained, registered or "
                 "promoted. Run again with `--force` (flow parameter `force`) to train anyway.\n")
    run.end("FINISHED")
    log.info("skipped: %s", reason)
    return SkippedRun(run_id, prepared, reason)


# --- models from files: the one place that reads weights and their facts -----------------------------


# --- the run's own folder ------------------------------------------------------------------------------


def new_run_dir(params: PipelineParams) -> Path:
    """A new, empty folder for one pipeline run: ``<tracking.runs_dir>/<UTC YYYYmmdd-HHMMSS>-<8 hex>`` (sorted by
    start time; created exclusively, so two runs started in the same second still get two folders).

    Raises:
        ConfigError: ``tracking.runs_dir`` cannot be created or written.
    """
    import secrets

    root = Path(params.tracking.runs_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        while True:
            run_dir = root / f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:
                continue
    except OSError as err:
        raise ConfigError(f"tracking.runs_dir {root}: cannot create a run folder there ({err.strerror or err})"
                          ) from None


def in_run_dir(params: PipelineParams, run_dir: Path) -> PipelineParams:
    """``params`` with every output path of the stages inside ``run_dir``: ``train/`` (checkpoints, journal, curves,
    the warm-start download), ``metrics.json`` and ``per_class.json``, ``export/<onnx name>`` (and the INT8 model and
    engine beside it). What a run makes is then its own: two runs in one project never write the same file."""
    ep = params.export
    return params.model_copy(update={
        "train": params.train.model_copy(update={"output_dir": str(run_dir / "train")}),
        "eval": params.eval.model_copy(update={"metrics_path": str(run_dir / Path(params.eval.metrics_path).name),
                                               "per_class_path": str(run_dir / Path(params.eval.per_class_path).name)}),
        "export": ep.model_copy(update={"onnx_path": str(run_dir / "export" / Path(ep.onnx_path).name)}),
    })


# --- tracking ------------------------------------------------------------------------------------------


def start_run(params: PipelineParams, prepared: PreparedData, extra_tags: dict[str, str] | None = None) -> str:
    """Start the pipeline's MLflow run: named ``tracking.run_name``, else ``<model> <data version[:8]> <UTC
    MMDD-HHMMSS>`` (:func:`yolox.tracking.run.default_run_name`), tagged :data:`RUN_TAGS`, with the flattened
    params and, as params too, the data counts (``data/train_images`` ...: facts of the run, not curves), and the
    prepare report. Returns the run id.

    Raises:
        TrackingError: the tracking store cannot be reached.
    """
    version = prepared.data_version
    name = params.tracking.run_name or default_run_name(params.model.name, version)
    values = {"model": params.model.name, "input_size": str(params.model.input_size), "data_version": version,
              "data_source": params.data.source, "git_commit": git_commit(),
              "registered_model": params.tracking.registered_model, **lineage_of(params, prepared)}
    run = MlflowRun(params.tracking.experiment, name, {**{k: values[k] for k in RUN_TAGS}, **(extra_tags or {})})
    run.log_params({**params.flat(), **prepared.counts()})
    run.log_artifact(prepared.report, "data")
    return run.run_id


# --- the composition -----------------------------------------------------------------------------------

Runner = Callable[..., Any]
"""``runner(stage_name, function, *args, **kwargs)`` runs one stage and returns its result: :func:`direct`
here; the Prefect flow passes one that runs the stage as a task."""


def direct(stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The plain runner: call the stage in this process, timing it."""
    t0 = time.perf_counter()
    log.info("stage %s ...", stage)
    result = fn(*args, **kwargs)
    log.info("stage %s done in %.1f s", stage, time.perf_counter() - t0)
    return result


def _tracking_lost(params: PipelineParams, err: BaseException, stage: str, run_dir: Path, run_id: str | None,
                   force: bool, version: str | None = None) -> StageError:
    """:func:`run_pipeline`'s failure handling when the tracking server or registry stopped answering in ``stage``
    (``err``: the MLflow call that ran out of its bounded attempts). Ends MLflow run ``run_id`` FAILED with tags
    ``failed_stage`` and ``failure`` through the training journal of ``run_dir`` (after the epoch metrics still
    pending there: :func:`yolox.tracking.journal.record_run_end`, one attempt of ``tracking.request_timeout_s``),
    and returns the one line to raise: what happened, what ``run_dir`` keeps, and the commands that finish the job
    when the server answers again (``yolox tracking flush``; then ``yolox gate`` of ``version`` when it was
    registered, else the same ``yolox pipeline`` command, with ``--force`` when ``force``)."""
    untouched = "the champion alias was not touched"
    lost = server_lost(err, during=f"stage {stage!r}", remedy=lambda var: untouched)
    train_dir = Path(in_run_dir(params, run_dir).train.output_dir)
    pending = 0
    if run_id is not None:
        tags = {"failed_stage": stage, "failure": redact(str(lost))}
        pending = record_run_end(train_dir, run_id, "FAILED", tags, params.tracking.request_timeout_s)
    kept = [f"{f.relative_to(run_dir)}{what}" for f, what in (
        (train_dir / "last.pth", " (the trained checkpoint)"),
        (Path(in_run_dir(params, run_dir).export.onnx_path), " (the exported model)")) if f.is_file()]
    if pending:
        kept.append(f"{(train_dir / JOURNAL_NAME).relative_to(run_dir)} ({pending} entries MLflow has not got: "
                    f"{'the epoch metrics and ' if pending > 1 else ''}the run's end)")
    if version is not None:
        then = (f"yolox gate --candidate-version {version} --prepared {run_dir / 'data'} with the same --params "
                f"(version {version} is registered as challenger)")
    else:
        then = (f"the same yolox pipeline command{' with --force' if force else ''} (a new run: it trains again"
                + ("; if it ends skipped, the version was registered: run yolox gate with the same --params)"
                   if stage == "register" else ")"))

    def remedy(var: str) -> str:
        where = f"; kept in {run_dir}: {', '.join(kept)}" if kept else ""
        if pending:
            return (f"{untouched}{where}; when it answers again (start it, or point {var} at a running one): "
                    f"yolox tracking flush --out {train_dir}, then {then}")
        done = f"; MLflow has run {run_id}'s metrics and its end (FAILED)" if run_id is not None else ""
        return f"{untouched}{where}{done}; when it answers again: {then}"

    return StageError(f"pipeline: {server_lost(err, during=f'stage {stage!r}', remedy=remedy)}")


def run_pipeline(params: PipelineParams, runner: Runner = direct, extra_tags: dict[str, str] | None = None,
                 progress: bool = True, force: bool = False) -> PipelineResult | SkippedRun:
    """prepare -> (skip?) -> warm start -> train -> evaluate -> export -> register -> gate, in one MLflow run.

    After prepare, unless ``force``, a run with nothing new (the same data version, params and code as the
    champion's, or the challenger's: :func:`changes_since`) ends early as a :class:`SkippedRun` (its MLflow run
    FINISHED with the tag ``skipped``). Training starts from ``model.weights`` resolved by :func:`warm_start`
    (``champion``: the production model's training checkpoint).

    The tracking store (and the model registry, when elsewhere) is checked before any work
    (:func:`yolox.tracking.store.check_stores`: seconds, one line). A failing stage ends the MLflow run ``FAILED`` with tags
    ``failed_stage`` and ``failure`` and raises :class:`~yolox.errors.StageError` naming the stage; the
    champion alias is never touched by a failed run. A rejected candidate is not a failure: the run finishes
    and the version stays ``challenger``. An interrupt (Ctrl-C, SIGTERM: an exception that is not an
    ``Exception``) ends the run ``KILLED`` with the same tags and goes on unchanged (the train stage saved a
    resumable checkpoint first: :class:`~yolox.errors.Interrupted`).

    A tracking server (or registry) that stops answering mid-run fails the stage's next MLflow call within its
    bound (:func:`yolox.tracking.store.bound_requests`); the run then ends at once (:func:`_tracking_lost`): its
    end is journaled after the epoch metrics the journal kept and tried once, briefly, and the StageError is one
    line saying what is kept in the run folder and the commands that finish the job when the server is back.

    Raises:
        StageError: a stage failed (its cause chained). PreflightError: a store is unusable at the start.
        TrackingError: the experiment cannot be created. Interrupted, KeyboardInterrupt: see above.
    """
    started, seconds = time.perf_counter(), {}

    def timed(stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return runner(stage, fn, *args, **kwargs)
        finally:
            seconds[stage] = round(time.perf_counter() - t0, 2)

    preflight(params)    # names checked, every MLflow call bounded, the stores checked: seconds, before any work
    ensure_experiment(params.tracking.experiment)
    run_dir = new_run_dir(params)
    log.info("run folder %s", run_dir)
    stage, run_id = "prepare", None
    try:
        prepared = own_data(params, timed("prepare", prepare, params), run_dir / "data")
        stage = "start-run"
        run_id = timed("start-run", start_run, params, prepared, {**(extra_tags or {}), "run_dir": str(run_dir)})
        lineage = lineage_of(params, prepared)
        if not force:
            stage = "check-changes"
            reason = timed("check-changes", changes_since, params, prepared)
            if reason:
                skipped = skip_run(params, run_id, prepared, reason)
                shutil.rmtree(run_dir, ignore_errors=True)   # nothing was made: only the data snapshot was there
                return skipped
        stage = "warm-start"
        params = in_run_dir(params, run_dir)     # from here on, every output is in the run's own folder
        start = timed("warm-start", warm_start, params, run_id)
        params = with_start_weights(params, start)
        stage = "train"
        trained = timed("train", train, params, prepared.path, resume="auto", run_id=run_id, progress=progress)
        stage = "evaluate"
        evaluation = timed("evaluate", evaluate, params, trained.checkpoint, prepared.path, run_id=run_id,
                           history=trained.history, progress=progress)
        stage = "export"
        exported = timed("export", export, params, trained.checkpoint, check_images=prepared.path / "images",
                         run_id=run_id, prepared_dir=prepared.path)
        stage = "register"
        registered = timed("register", register, params, exported, evaluation, run_id, prepared.data_version,
                           {**lineage, **start.tags()})
        stage = "gate"
        decision = timed("gate", gate, params, registered.version, prepared.path, prepared.data_version, run_id)
    except BaseException as err:
        interrupted = not isinstance(err, Exception)   # Ctrl-C, SIGTERM (Interrupted, Prefect's TerminationSignal)
        if not interrupted and server_lost(err) is not None:   # the server is gone: no second wait for it
            version = registered.version if stage == "gate" else None
            raise _tracking_lost(params, err, stage, run_dir, run_id, force, version) from err
        reason = redact(f"{type(err).__name__}: {err}")      # MLflow's messages carry the URL, with any password
        status = "KILLED" if interrupted else "FAILED"
        log.error("stage %r %s: %s. The champion alias was not touched.", stage,
                  "interrupted" if interrupted else "failed", reason)
        if run_id is not None:
            tags = {"failed_stage": stage, "failure": reason[:5000]}
            try:
                run = MlflowRun.attach(run_id)
                run.set_tags(tags)
                run.end(status)
            except Exception as tracking_err:  # noqa: BLE001 - the tracking server may be the failure
                log.warning("could not mark MLflow run %s %s: %s", run_id, status, redact(str(tracking_err)))
                if server_lost(tracking_err) is not None:      # journaled: the flush ends the run later
                    folder = in_run_dir(params, run_dir).train.output_dir
                    if record_run_end(folder, run_id, status, tags, params.tracking.request_timeout_s):
                        log.warning("its end is kept in %s: send it with: yolox tracking flush --out %s",
                                    Path(folder) / JOURNAL_NAME, folder)
        if isinstance(err, Exception) and not isinstance(err, StageError):
            raise StageError(f"pipeline: stage {stage!r} failed: {reason}") from err
        raise
    seconds["total"] = round(time.perf_counter() - started, 2)
    run = MlflowRun.attach(run_id)
    # "wall/" sorts after the epoch curves (train/, val/) in the MLflow metrics tab, which orders sections by name
    run.log_metrics({f"wall/{name}_s": s for name, s in seconds.items()})
    run.set_note(decision.markdown())
    run.end("FINISHED")
    log.info("pipeline done: %s v%s %s (%s)", registered.name, registered.version, decision.decision,
             decision.outcome)
    return PipelineResult(run_id, prepared, trained, evaluation, exported, registered, decision.to_json(), run_dir,
                          seconds)
