"""The pipeline's stages and their one composition.

Data flows one way: raw dataset -> :class:`PreparedData` -> :class:`TrainedModel` -> :class:`Evaluation` ->
:class:`ExportedModel` -> :class:`RegisteredModel` -> :class:`~yolox.tracking.gate.Decision` (champion alias).
Each arrow is one function here, taking validated params and paths and returning a typed result:

=============  ==========================================================  ======================
stage          what it does                                                 called by
=============  ==========================================================  ======================
``prepare``    validate and split the raw data, write it; its DVC hash       ``yolox prepare``
``train``      train or fine-tune; epoch lines in the log, metrics to the    ``yolox train``
               run while it trains
``evaluate``   COCO AP (pycocotools) of a .pth or .onnx on a dataset split   ``yolox eval``
``export``     ONNX + check against PyTorch (+ TensorRT on a GPU)            ``yolox export``
``register``   the ONNX pyfunc as a new registered version (``challenger``)  the pipeline
``gate``       candidate vs champion (and best-ever, and base weights)      ``yolox gate``
=============  ==========================================================  ======================

:func:`run_pipeline` chains them; ``yolox pipeline`` calls it directly, the Prefect flow ``train-yolox``
(``flows/train_yolox.py``) calls it with a runner that makes each stage a task (retries, caching, the UI),
and ``dvc.yaml``'s stages run the CLI commands above. Nothing else composes stages or chooses a size,
threshold or tag name: the input size comes from :func:`yolox.models.meta.input_size`, thresholds from
:mod:`yolox.config`, tag names from :data:`RUN_TAGS`.
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolox.config import PipelineParams, registry_reference
from yolox.errors import ConfigError, DataError, Interrupted, StageError
from yolox.models.meta import ModelMeta

if TYPE_CHECKING:
    from yolox.train.warm_start import StartWeights

log = logging.getLogger("yolox.pipeline")

RUN_TAGS = ("model", "input_size", "data_version", "data_source", "git_commit", "registered_model", "params_digest",
            "code_version")
"""Tags every pipeline MLflow run carries (plus ``prefect_flow_run`` under Prefect, ``registered_version``
after registration, ``warm_start``, ``export_check``, ``gate.decision``/``gate.outcome``, ``failed_stage`` on failure,
``skipped`` on a night with nothing new). ``data_version``, ``params_digest`` and ``code_version`` are also tags of
the registered version: what the skip rule compares (:func:`changes_since`)."""

LINEAGE_TAGS = ("data_version", "params_digest", "code_version")
"""What a model was trained from (version tags): a night whose three equal a recent version's has nothing new."""


# --- typed results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedData:
    """A prepared dataset on disk and its version (the DVC directory hash of the folder)."""

    path: Path
    data_version: str
    report: Path
    names: tuple[str, ...]
    train_images: int
    val_images: int
    train_boxes: int
    val_boxes: int
    skipped_images: int
    skipped_boxes: int

    def counts(self) -> dict[str, int]:
        return {"data/train_images": self.train_images, "data/val_images": self.val_images,
                "data/train_boxes": self.train_boxes, "data/val_boxes": self.val_boxes,
                "data/skipped_images": self.skipped_images, "data/skipped_boxes": self.skipped_boxes}


@dataclass(frozen=True)
class TrainedModel:
    """A training checkpoint (``last.pth``: EMA weights under ``"model"``) and what made it."""

    checkpoint: Path
    meta: ModelMeta
    epochs: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    run_id: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """COCO AP of a model on one dataset split (fractions), and the files written."""

    metrics: dict[str, float]
    per_class: dict[str, float]
    metrics_path: Path
    per_class_path: Path
    img_size: int
    num_images: int
    weights: str

    @property
    def ap(self) -> float:
        return float(self.metrics["AP50_95"])


@dataclass(frozen=True)
class Int8Model:
    """The INT8 model of an export and its AP50:95 beside the FP32 model's, both on the same val set."""

    onnx: Path
    fp32_ap: float
    int8_ap: float
    num_images: int
    calibration_images: int

    @property
    def drop(self) -> float:
        return self.fp32_ap - self.int8_ap


@dataclass(frozen=True)
class EngineModel:
    """A TensorRT engine, its build config (:func:`yolox.export.tensorrt.read_build_config`) and its AP50:95
    beside its ONNX model's, both measured on the val set ``val_set`` (:func:`yolox.tracking.gate.val_set_id`)."""

    path: Path
    config: dict[str, Any]
    ap: float
    onnx_ap: float
    val_set: str
    num_images: int

    @property
    def precision(self) -> str:
        return str(self.config["precision"])


@dataclass(frozen=True)
class ExportedModel:
    """An exported ONNX model and its check against PyTorch (``check``: passed, failed or skipped); its INT8 model
    (``export.int8``) and TensorRT engine (``export.tensorrt``; ``tensorrt`` says built or "skipped: why")."""

    onnx: Path
    meta: ModelMeta
    check: str
    max_abs_diff: float | None
    num_check_images: int
    sample_image: Path | None
    engine: Path | None = None
    int8: Int8Model | None = None
    tensorrt: str | None = None
    serving: Path | None = None
    """The end2end graph the registered model serves from (``export.serve_end2end``), or None."""
    engine_eval: EngineModel | None = None
    """The TensorRT engine's AP beside its ONNX model's on the val split (a GPU and TensorRT present), or None."""

    @property
    def variant(self) -> str:
        return self.meta.variant

    @property
    def passed(self) -> bool:
        return self.check == "passed"


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model version (``version`` as MLflow's string) and its URI."""

    name: str
    version: str
    uri: str


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
                "promoted": self.promoted, "skipped": False, "gate": self.decision}


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


def prepare(params: PipelineParams, out_dir: str | Path | None = None, snapshot: str | Path | None = None
            ) -> PreparedData:
    """Validate and write ``params.data.source`` as a prepared dataset (``out_dir``, default
    ``params.data.prepared_dir``) and compute its data version.

    Two prepares of one folder never overlap: the lock file ``<out_dir>.lock`` beside it serialises them (a
    second one waits, saying for whom). With ``snapshot`` (a run's own folder), the prepared dataset is also
    hard-linked there while the lock is held (:func:`yolox.data.prepare.snapshot_prepared`) and the result
    describes the snapshot: the run reads its own data, whatever a later prepare swaps into ``out_dir``.

    Raises:
        AssetError, DataError, ConfigError: see :func:`yolox.data.prepare.prepare_dataset`.
    """
    from yolox.data.prepare import prepare_dataset, snapshot_prepared
    from yolox.files import project_lock
    from yolox.lineage import data_version

    out = Path(out_dir or params.data.prepared_dir)
    with project_lock(out.with_name(out.name + ".lock"), f"prepared dataset {out}",
                      on_wait=lambda who: log.info("waiting for %s, which is preparing %s", who, out)):
        r = prepare_dataset(params.data, out)
        path, report = r.out_dir, r.report_path
        if snapshot is not None:
            path = snapshot_prepared(r.out_dir, Path(snapshot))
            report = path / r.report_path.relative_to(r.out_dir)
    return PreparedData(path, data_version(path), report, tuple(r.names), r.num_train_images,
                        r.num_val_images, r.num_train_boxes, r.num_val_boxes, r.num_skipped_images,
                        r.num_skipped_boxes)


def train(params: PipelineParams, prepared_dir: str | Path | None = None, out_dir: str | Path | None = None,
          resume: bool | str = False, run_id: str | None = None, progress: bool = True) -> TrainedModel:
    """Train on a prepared dataset (default ``params.data.prepared_dir``) into ``out_dir`` (default
    ``params.train.output_dir``). With ``run_id``, every epoch's metrics go to that MLflow run as the epoch
    ends, through the journal ``<out>/tracking-journal.jsonl`` (:mod:`yolox.tracking.buffer`: a dead or slow
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
    from yolox.train.checkpoint import check_output_dir, read_run_id
    from yolox.train.launch import launch_training, processes_per_node
    from yolox.train.trainer import per_process_batch

    prepared_dir = Path(prepared_dir or params.data.prepared_dir)
    out = Path(out_dir or params.train.output_dir)
    if registry_reference(params.model.weights) is not None:    # a registry version: its training checkpoint
        params = with_start_weights(params, warm_start(params, out_dir=out))
    dp = params.train.distributed
    if dp.launcher == "torchrun":   # checked here: the launched workers would fail one by one, after restarts
        check_output_dir(out)
        per_process_batch(params.train.batch_size, dp.nodes * processes_per_node(dp))
    if resume == "auto":
        resume = bool(run_id) and (out / "last.pth").is_file() and read_run_id(out) == run_id
        if resume:
            log.info("continuing %s: it belongs to this run (%s)", out / "last.pth", run_id)
    in_process = params.train.distributed.launcher == "none"   # else the launched rank 0 logs the epochs
    journal = None
    if run_id and in_process:
        from yolox.tracking.buffer import MetricBuffer

        journal = MetricBuffer(out, run_id, params.tracking.request_timeout_s)
    try:
        result = launch_training(params, prepared_dir, out, resume=bool(resume), on_epoch_end=journal,
                                 progress=progress, run_id=run_id)
    except BaseException as err:
        if journal is not None:
            journal.close(0)      # what is pending stays in the journal (a retry or `yolox tracking flush` sends it)
        if not isinstance(err, (KeyboardInterrupt, Interrupted)) or in_process or \
                (isinstance(err, Interrupted) and err.checkpoint):
            raise
        # this process was interrupted while a launched job trained: the launcher stopped the job with
        # SIGTERM, and its rank 0 saved a checkpoint (unless stopped before its first step)
        checkpoint = out / "last.pth"
        raise Interrupted(getattr(err, "signum", signal.SIGINT), checkpoint if checkpoint.is_file() else None,
                          "the launched job's last checkpoint") from err
    if journal is not None:
        journal.close(params.tracking.flush_timeout_s)
    if result.history:
        from yolox.evaluate.plots import save_figures, training_curves

        save_figures({"training_curves.png": training_curves(result.history)}, out)
    run = _attach(params, run_id)
    if run is not None:
        if result.run_id not in (None, run_id):   # never log another run's checkpoint as this run's
            raise StageError(f"train: {result.checkpoint} belongs to MLflow run {result.run_id}, not to this run "
                             f"({run_id}): another run wrote into {out}; give each run its own train.output_dir")
        run.log_metrics({"train/seconds": round(result.seconds, 1)})
        run.log_artifact(result.checkpoint, "checkpoint")
    meta = ModelMeta(result.model_name, result.input_size, tuple(result.names))
    return TrainedModel(result.checkpoint, meta, result.epochs, result.seconds, result.history, result.run_id)


def evaluate(params: PipelineParams, weights: str | Path | None = None, data: str | Path | None = None,
             split: str = "val", images: str | None = None, img_size: int | None = None,
             model_name: str | None = None, out: str | Path | None = None, run_id: str | None = None,
             history: list[dict[str, float]] | None = None, progress: bool = True,
             plots_dir: str | Path | None = None) -> Evaluation:
    """COCO AP50:95 etc. of ``weights`` (a .pth of this project or the authors', or an .onnx; default
    ``<train.output_dir>/last.pth``) on ``split`` of ``data`` (a prepared folder, YOLO ``dataset.yaml`` or
    folder, COCO json, or dataset name; default ``data.prepared_dir``), at the model's own input size unless
    ``img_size`` / ``eval.img_size`` says otherwise. Writes ``eval.metrics_path`` (headline metrics) and
    ``eval.per_class_path`` (AP per class); with ``run_id``, logs to that run the headline APs as metrics
    (``eval/AP50_95`` ...), AP per class as a table (:data:`yolox.tracking.run.PER_CLASS_TABLE`), both files and
    the plots; with ``plots_dir``, writes the plots there as PNG files too (what ``dvc plots show`` displays offline).

    Raises:
        AssetError, DataError, CheckpointError, ConfigError: unknown or unreadable weights or data.
    """
    from yolox.data.prepare import load_dataset
    from yolox.evaluate.coco_eval import evaluate as coco_evaluate

    weights = str(weights or Path(params.train.output_dir) / "last.pth")
    backend, meta = load_model(weights, model_name)
    size = model_input_size(meta, img_size or params.eval.img_size)
    if hasattr(backend, "check_size"):  # an ONNX model exported for one input size: before reading the data
        backend.check_size(size)
    dataset = load_dataset(str(data or params.data.prepared_dir), split, images)
    if not dataset.records:
        raise DataError(f"{data or params.data.prepared_dir}: the {split!r} split has no images: nothing to evaluate")
    result = coco_evaluate(backend, dataset, size, params.eval, progress=progress)
    metrics_path, per_class_path = result.write(out or params.eval.metrics_path,
                                                None if out else params.eval.per_class_path)
    run = _attach(params, run_id)
    if run is not None or plots_dir:
        from yolox.evaluate.plots import evaluation_figures, save_figures, training_curves

        figures, confusion = evaluation_figures(result, dataset, params.serve.conf_thresh)
        if history:
            figures["plots/training_curves.png"] = training_curves(history)
        if plots_dir:
            save_figures(figures, plots_dir)
        if run is not None:
            from collections import Counter

            from yolox.tracking.run import PER_CLASS_TABLE

            # the headline, as metrics.json has it (6 decimals): what runs are sorted and compared by
            run.log_metrics({f"eval/{k}": round(v, 6) for k, v in result.metrics.items()})
            boxes = Counter(dataset.names[label] for rec in dataset.records for label in rec.labels.tolist())
            if result.per_class:     # a table, not 80 one-point metrics (the plot per_class_ap.png draws it)
                run.log_table([{**row, "boxes": boxes[row["class"]]} for row in result.per_class_rows()],
                              PER_CLASS_TABLE)
            run.log_artifact(metrics_path, "metrics")
            run.log_artifact(per_class_path, "metrics")
            run.log_figures(figures)
            run.log_dict(confusion, "plots/confusion_matrix.json")
    return Evaluation(dict(result.metrics), dict(result.per_class), metrics_path, per_class_path, size,
                      result.num_images, weights)


def baked_thresholds(params: PipelineParams, conf_thresh: float | None = None, nms_thresh: float | None = None,
                     max_det: int | None = None) -> tuple[float, float, int]:
    """The thresholds an end2end export bakes in: those of the section ``export.thresholds`` names (``serve`` or
    ``eval``), each overridden when given (``yolox export --conf/--nms/--max-det``)."""
    section = params.serve if params.export.thresholds == "serve" else params.eval
    return (section.conf_thresh if conf_thresh is None else float(conf_thresh),
            section.nms_thresh if nms_thresh is None else float(nms_thresh),
            section.max_det if max_det is None else int(max_det))


def export(params: PipelineParams, weights: str | Path | None = None, out: str | Path | None = None,
           img_size: int | None = None, model_name: str | None = None, check_images: str | Path | None = None,
           check: bool = True, run_id: str | None = None, variant: str | None = None,
           conf_thresh: float | None = None, nms_thresh: float | None = None, max_det: int | None = None,
           prepared_dir: str | Path | None = None) -> ExportedModel:
    """Export ``weights`` (default ``<train.output_dir>/last.pth``) to ONNX (``out``, default
    ``export.onnx_path``) as ``variant`` (default ``export.variant``; an end2end graph bakes in
    :func:`baked_thresholds`) at the model's own input size unless ``img_size`` says otherwise, and compare it with
    PyTorch with ONNX Runtime on real images: ``check_images`` (a folder), else the prepared dataset's images
    when there is one; with neither, or ``check=False``, the check is skipped (``check="skipped"``, logged).

    With ``export.int8``: an INT8 model beside it (``<stem>.int8.onnx``) calibrated on the prepared dataset's
    (``prepared_dir``, default ``data.prepared_dir``) train images, its AP50:95 and the FP32 model's measured on
    its val split (:class:`Int8Model`). With ``export.tensorrt``: a TensorRT engine when a CUDA GPU and TensorRT
    are present, else ``tensorrt="skipped: <reason>"`` and the stage goes on.

    Raises:
        ConfigError: ``check_images`` given but not a folder of images; INT8 without a prepared dataset.
        ExportError: the export or the quantization failed.
    """
    from yolox.export.onnx_export import check_onnx, export_onnx
    from yolox.predict import list_images

    ep = params.export
    variant = variant or ep.variant
    weights = str(weights or Path(params.train.output_dir) / "last.pth")
    net, meta = load_torch_model(weights, model_name)
    size = model_input_size(meta, img_size)
    folder = Path(check_images) if check_images else Path(params.data.prepared_dir) / "images"
    if check_images and not folder.is_dir():   # before the export: fail in seconds
        raise ConfigError(f"--check-images {folder}: not a folder of images")
    baked = baked_thresholds(params, conf_thresh, nms_thresh, max_det) if variant == "end2end" else (None,) * 3
    path = export_onnx(net, Path(out or ep.onnx_path), size, meta.names, meta.name, ep.opset, ep.dynamic_batch,
                       ep.simplify, variant, *baked, dynamic_hw=ep.dynamic_hw and variant != "raw")
    serving = None
    if ep.serve_end2end and variant != "end2end":  # the graph serving answers from: serve.* baked in
        sp = params.serve
        serving = export_onnx(net, path.with_suffix(".end2end.onnx"), size, meta.names, meta.name, ep.opset,
                              ep.dynamic_batch, ep.simplify, "end2end", sp.conf_thresh, sp.nms_thresh, sp.max_det,
                              dynamic_hw=ep.dynamic_hw)
    from yolox.inference import OnnxBackend

    # the exported model's facts, as its metadata says (the size exported at, the variant)
    meta = OnnxBackend(path).meta or replace(meta, input_size=size)
    images = list_images(folder)[: ep.check_images] if check and folder.is_dir() else []
    if not images:
        why = "check disabled" if not check else f"no images at {folder} (pass --check-images DIR)"
        log.warning("ONNX check against PyTorch skipped: %s", why)
        result = ExportedModel(path, meta, "skipped", None, 0, None, serving=serving)
    else:
        checks = [check_onnx(net, p, images, size, ep.max_abs_diff, max_score_diff=ep.max_score_diff,
                             max_box_diff=ep.max_box_diff) for p in (path, serving) if p is not None]
        c = checks[0]
        result = ExportedModel(path, meta, "passed" if all(x.passed for x in checks) else "failed", c.max_abs_diff,
                               c.num_check_images, images[0], serving=serving)
    prepared = Path(prepared_dir or params.data.prepared_dir)
    if ep.int8:
        result = replace(result, int8=export_int8(params, path, size, prepared))
    if ep.tensorrt:
        from yolox.export.tensorrt import build_engine, profile_needs, tensorrt_unavailable_reason

        reason = tensorrt_unavailable_reason()
        if reason:
            log.warning("TensorRT engine skipped: %s", reason)
            result = replace(result, tensorrt=f"skipped: {reason}")
        else:
            calib = _train_images(prepared, ep.int8_calibration_images) if ep.tensorrt_precision == "int8" else []
            engine = build_engine(path, path.with_suffix(".engine"), size, precision=ep.tensorrt_precision,
                                  calibration_images=calib, sizes=ep.tensorrt_sizes,
                                  timing_cache=ep.tensorrt_timing_cache, needs=profile_needs(params),
                                  keep_float=ep.int8_keep_float)
            result = replace(result, engine=engine, tensorrt="built",
                             engine_eval=evaluate_engine(params, engine, path, size, prepared))
    run = _attach(params, run_id)
    if run is not None:
        if result.max_abs_diff is not None:
            run.log_metrics({"export/max_abs_diff": result.max_abs_diff})
        from yolox.files import sha256_file

        run.set_tags({"export_check": result.check, "export_variant": variant, "onnx_sha256": sha256_file(path),
                      **({"tensorrt": result.tensorrt} if result.tensorrt else {})})
        run.log_artifact(path, "onnx")
        if serving is not None:
            run.log_artifact(serving, "onnx")
        if result.engine is not None:     # an engine runs only where it was built: its config goes with it
            from yolox.export.tensorrt import build_config_path, build_config_tags, read_build_config

            run.set_tags(build_config_tags(read_build_config(result.engine)))
            run.log_artifact(result.engine, "tensorrt")
            run.log_artifact(build_config_path(result.engine), "tensorrt")
        if (e := result.engine_eval) is not None:
            run.log_metrics({"export/tensorrt_AP50_95": e.ap, "export/tensorrt_onnx_AP50_95": e.onnx_ap})
            run.set_tags({"tensorrt_val_set": e.val_set})
        if result.int8 is not None:
            run.log_metrics({"export/int8_AP50_95": result.int8.int8_ap, "export/fp32_AP50_95": result.int8.fp32_ap,
                             "export/int8_ap_drop": result.int8.drop})
            run.log_artifact(result.int8.onnx, "onnx")
    return result


def _train_images(prepared: Path, n: int) -> list[Path]:
    """The first ``n`` train images of a prepared dataset (calibration). Raises ConfigError without one."""
    from yolox.data.records import load_prepared

    try:
        records = load_prepared(prepared, "train").records
    except Exception as err:  # noqa: BLE001 - DataError or a missing file: say what to do
        raise ConfigError(f"INT8/TensorRT calibration needs a prepared dataset at {prepared} ({err}): run "
                          "yolox prepare first, or set export.int8: false") from None
    return [r.path for r in records[:n]]


def evaluate_engine(params: PipelineParams, engine: Path, onnx_path: Path, size: int, prepared: Path
                    ) -> EngineModel | None:
    """AP50:95 of a TensorRT engine and of its ONNX model on the prepared val split (``eval.*``, the one
    evaluator), or None (logged) without a prepared val split.

    Raises:
        ExportError: the engine cannot run here (another GPU or TensorRT version: its build config says).
    """
    from yolox.data.records import load_prepared, val_set_id
    from yolox.evaluate.coco_eval import evaluate as coco_evaluate
    from yolox.export.tensorrt import TensorRTBackend
    from yolox.inference import OnnxBackend

    try:
        val = load_prepared(prepared, "val")
    except (DataError, OSError) as err:
        log.warning("TensorRT engine not evaluated: no prepared val split at %s (%s)", prepared, err)
        return None
    backend = TensorRTBackend(engine, onnx_path)
    ap = coco_evaluate(backend, val, size, params.eval, progress=False).metrics["AP50_95"]
    onnx_ap = coco_evaluate(OnnxBackend(onnx_path), val, size, params.eval, progress=False).metrics["AP50_95"]
    log.info("TensorRT %s engine %s: AP50:95 %.4f (its ONNX model %.4f) on %d val images", backend.build["precision"],
             engine.name, ap, onnx_ap, len(val.records))
    return EngineModel(engine, dict(backend.build), ap, onnx_ap, val_set_id(val), len(val.records))


def export_int8(params: PipelineParams, onnx_path: Path, size: int, prepared: Path) -> Int8Model:
    """Quantize ``onnx_path`` to INT8 (:func:`yolox.export.quantize.quantize_int8`, ``export.int8_*`` params)
    calibrated on the prepared train images, and measure the AP50:95 of both models on the prepared val split
    (``eval.*`` protocol; an end2end graph's detections are its baked ones).

    Raises:
        ConfigError: no prepared dataset. ExportError: the quantization failed.
    """
    from yolox.data.records import load_prepared
    from yolox.evaluate.coco_eval import evaluate as coco_evaluate
    from yolox.export.quantize import quantize_int8
    from yolox.inference import OnnxBackend

    ep = params.export
    calib = _train_images(prepared, ep.int8_calibration_images)
    int8_path = quantize_int8(onnx_path, onnx_path.with_suffix(".int8.onnx"), calib, size,
                              ep.int8_calibration_method, keep_float=ep.int8_keep_float)
    val = load_prepared(prepared, "val")
    fp32 = coco_evaluate(OnnxBackend(onnx_path), val, size, params.eval, progress=False)
    int8 = coco_evaluate(OnnxBackend(int8_path), val, size, params.eval, progress=False)
    result = Int8Model(int8_path, fp32.metrics["AP50_95"], int8.metrics["AP50_95"], int8.num_images, len(calib))
    log.info("INT8 %s: AP50:95 %.4f (FP32 %.4f, drop %.4f) on %d val images", int8_path.name, result.int8_ap,
             result.fp32_ap, result.drop, result.num_images)
    return result


def register(params: PipelineParams, exported: ExportedModel, evaluation: Evaluation, run_id: str,
             data_version: str, lineage: dict[str, str] | None = None) -> RegisteredModel:
    """Register ``exported`` (its ONNX pyfunc, with the serving thresholds of ``params.serve``) as a new
    version of ``tracking.registered_model`` with the ``gate.challenger_alias``, logged to run ``run_id``, tagged
    with ``lineage`` (:func:`lineage_of`: what the skip rule compares) and the ``warm_start`` it trained from. With
    an end2end serving graph (``export.serve_end2end``) the pyfunc carries both and serves from the end2end one
    (:class:`yolox.tracking.pyfunc.YoloxOnnxModel`); the version's tag ``serving_variant`` says which graph serves.

    Raises:
        TrackingError: the registry refused.
    """
    from yolox.tracking.pyfunc import BUDGETS
    from yolox.tracking.registry import log_and_register
    from yolox.tracking.run import MlflowRun

    if exported.sample_image is None:
        raise StageError("register: the export check was skipped, so there is no sample image for the signature")
    sp = params.serve
    int8 = {"int8_AP50_95": f"{exported.int8.int8_ap:.6f}", "int8_fp32_AP50_95": f"{exported.int8.fp32_ap:.6f}"} \
        if exported.int8 is not None else {}
    serving = {"serving_variant": "end2end"} if exported.serving is not None or exported.variant == "end2end" \
        else {"serving_variant": exported.variant}
    engine: dict[str, str] = {}
    if (e := exported.engine_eval) is not None:     # the engine beside the ONNX: where it runs, what it scores
        from yolox.export.tensorrt import build_config_tags

        engine = {**build_config_tags(e.config), "tensorrt_engine": f"tensorrt/{e.path.name}",
                  "tensorrt_AP50_95": f"{e.ap:.6f}", "tensorrt_onnx_AP50_95": f"{e.onnx_ap:.6f}",
                  "tensorrt_val_set": e.val_set}
    mv = log_and_register(run_id, exported.onnx, params.tracking.registered_model, exported.sample_image,
                          {"data_version": data_version, "AP50_95": f"{evaluation.ap:.4f}",
                           "model": exported.meta.name, "input_size": str(exported.meta.input_size),
                           "export_check": exported.check, "export_max_abs_diff": f"{exported.max_abs_diff or 0:.3g}",
                           "export_variant": exported.variant, **serving, **int8, **engine, **(lineage or {})},
                          sp.conf_thresh, sp.nms_thresh, sp.max_det, alias=params.gate.challenger_alias,
                          budgets={k: getattr(sp, k) for k in BUDGETS},
                          end2end_path=exported.serving)
    MlflowRun.attach(run_id).set_tags({"registered_version": mv.version})
    return RegisteredModel(mv.name, mv.version, mv.model_uri)


def gate(params: PipelineParams, candidate_version: str | None = None, prepared_dir: str | Path | None = None,
         data_version: str | None = None, run_id: str | None = None, dry_run: bool = False) -> Any:
    """Gate the candidate (default: the challenger) against the champion on the prepared val set and move the
    champion alias when it passes (:func:`yolox.tracking.gate.run_gate`). Returns the
    :class:`~yolox.tracking.gate.Decision` (``.promoted``: the alias moved)."""
    from yolox.tracking.gate import run_gate

    artifact = "gate/decision.json" if run_id else None
    return run_gate(params, candidate_version, prepared_dir, dry_run, data_version, run_id, artifact)


def lineage_of(params: PipelineParams, prepared: PreparedData) -> dict[str, str]:
    """What a model trained now would be trained from (:data:`LINEAGE_TAGS`): the prepared data's version, the
    params' digest (``model.weights`` as written: ``champion`` stays ``champion``) and the training code's
    version (:mod:`yolox.lineage`)."""
    from yolox.lineage import code_version, params_digest

    return dict(zip(LINEAGE_TAGS, (prepared.data_version, params_digest(params), code_version()), strict=True))


def changes_since(params: PipelineParams, prepared: PreparedData) -> str | None:
    """Why this run has nothing new to learn, or None: the version holding the champion alias (or, failing that,
    the challenger alias: a rejected candidate would be trained again, identically) was trained from the same
    data version, params digest and code version (:func:`lineage_of`). Returns e.g. ``"data unchanged since
    version 4 (champion)"``.

    Raises:
        TrackingError: the registry cannot be read.
    """
    from yolox.tracking.registry import alias_version

    now, name, gp = lineage_of(params, prepared), params.tracking.registered_model, params.gate
    for alias in (gp.champion_alias, gp.challenger_alias):
        mv = alias_version(name, alias)
        if mv is not None and all((mv.tags or {}).get(k) == v for k, v in now.items()):
            return f"data unchanged since version {mv.version} ({alias}): same data, params and code"
    return None


def warm_start(params: PipelineParams, run_id: str | None = None, out_dir: str | Path | None = None
               ) -> StartWeights:
    """Resolve ``model.weights`` (:func:`yolox.train.warm_start.resolve_start_weights`: a registered version's
    training checkpoint, downloaded into ``<out_dir>/warm-start``, default ``train.output_dir``) and tag the run
    with where training starts.

    Raises:
        ConfigError: an alias no version holds, without ``model.fallback_weights``. TrackingError: see there.
    """
    from yolox.train.warm_start import resolve_start_weights

    start = resolve_start_weights(params, Path(out_dir or params.train.output_dir) / "warm-start")
    run = _attach(params, run_id)
    if run is not None:
        run.set_tags(start.tags())
    return start


def with_start_weights(params: PipelineParams, start: StartWeights) -> PipelineParams:
    """``params`` with ``model.weights`` replaced by the resolved start (a file path), for the stages after."""
    return params.model_copy(update={"model": params.model.model_copy(update={"weights": start.weights})})


def skip_run(params: PipelineParams, run_id: str, prepared: PreparedData, reason: str) -> SkippedRun:
    """End run ``run_id`` as a skipped night: tags ``skipped`` (the reason), a note, status FINISHED."""
    from yolox.tracking.run import MlflowRun

    run = MlflowRun.attach(run_id)
    run.set_tags({"skipped": reason})
    run.set_note(f"## Skipped\n\n{reason}: nothing new to train on, so nothing was trained, registered or "
                 "promoted. Run again with `--force` (flow parameter `force`) to train anyway.\n")
    run.end("FINISHED")
    log.info("skipped: %s", reason)
    return SkippedRun(run_id, prepared, reason)


# --- models from files: the one place that reads weights and their facts -----------------------------


def load_torch_model(weights: str | Path, model_name: str | None = None) -> tuple[Any, ModelMeta]:
    """A YOLOX model in eval mode and its :class:`ModelMeta`, from a checkpoint of this project (its meta and
    EMA weights) or of the authors (``model_name`` required; class count from the class predictor).

    Raises:
        AssetError: not found. CheckpointError: unreadable or not fitting. ConfigError: no model name.
    """
    from yolox.assets import resolve_weights
    from yolox.models import build_model, load_weights
    from yolox.models.checkpoint import torch_load
    from yolox.models.meta import meta_of_checkpoint

    path = resolve_weights(str(weights))
    state = torch_load(path)
    meta = meta_of_checkpoint(state if isinstance(state, dict) else {}, model_name, source=str(path))
    if model_name and model_name != meta.name:
        raise ConfigError(f"{path} is a {meta.name} checkpoint, not {model_name}: drop --model or fix it")
    model = build_model(meta.name, meta.num_classes)
    load_weights(model, path)
    return model.eval(), meta


def load_model(weights: str | Path, model_name: str | None = None) -> tuple[Any, ModelMeta]:
    """An inference backend (ONNX Runtime for ``.onnx``, PyTorch for ``.pth``) and the model's meta (for an
    ONNX without one, e.g. the authors' release: the variant table's, with ``model_name`` or yolox-nano)."""
    if str(weights).endswith(".onnx"):
        from yolox.assets import resolve_weights
        from yolox.inference import OnnxBackend
        from yolox.models.meta import default_names, meta_for

        backend = OnnxBackend(resolve_weights(str(weights)))
        meta = backend.meta or meta_for(model_name or "yolox-nano", default_names(backend.num_classes),
                                        _onnx_fixed_size(backend))
        return backend, meta
    from yolox.inference import TorchBackend

    net, meta = load_torch_model(weights, model_name)
    return TorchBackend(net, fuse=True), meta


def _onnx_fixed_size(backend: Any) -> int | None:
    shape = backend.session.get_inputs()[0].shape
    return int(shape[2]) if isinstance(shape[2], int) else None


def model_input_size(meta: ModelMeta, override: int | None = None) -> int:
    """:func:`yolox.models.meta.input_size` (the one size rule)."""
    from yolox.models.meta import input_size

    return input_size(meta, override)


# --- the run's own folder ------------------------------------------------------------------------------


def own_data(params: PipelineParams, prepared: PreparedData, snapshot: Path) -> PreparedData:
    """``prepared`` (the shared ``data.prepared_dir``, or a cached prepare's result) as the run's own snapshot at
    ``snapshot`` (hard links, taken under the prepared folder's lock: :func:`prepare`), checked to hold the same
    data version. When another run re-prepared other data in between (or the cached folder is gone), the data is
    prepared again with the snapshot taken under the same lock, and that result is the run's.

    Raises:
        DataError: see :func:`prepare`.
    """
    from yolox.data.prepare import snapshot_prepared
    from yolox.files import project_lock
    from yolox.lineage import data_version

    out = Path(prepared.path)
    with project_lock(out.with_name(out.name + ".lock"), f"prepared dataset {out}"):
        if out.is_dir():
            snapshot_prepared(out, snapshot)
    if snapshot.is_dir() and data_version(snapshot) == prepared.data_version:
        return replace(prepared, path=snapshot, report=snapshot / Path(prepared.report).relative_to(out))
    log.warning("%s changed since it was prepared for this run (another run prepared other data): preparing again",
                out)
    shutil.rmtree(snapshot, ignore_errors=True)
    return prepare(params, out, snapshot=snapshot)


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


def _attach(params: PipelineParams, run_id: str | None) -> Any:
    if not run_id:
        return None
    from yolox.tracking.run import MlflowRun

    return MlflowRun(params.tracking.experiment, run_id=run_id)


def start_run(params: PipelineParams, prepared: PreparedData, extra_tags: dict[str, str] | None = None) -> str:
    """Start the pipeline's MLflow run: named ``tracking.run_name``, else ``<model> <data version[:8]> <UTC
    MMDD-HHMMSS>`` (:func:`yolox.tracking.run.default_run_name`), tagged :data:`RUN_TAGS`, with the flattened
    params and, as params too, the data counts (``data/train_images`` ...: facts of the run, not curves), and the
    prepare report. Returns the run id.

    Raises:
        TrackingError: the tracking store cannot be reached.
    """
    from yolox.tracking.run import MlflowRun, default_run_name, git_commit

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
    pending there: :func:`yolox.tracking.buffer.record_run_end`, one attempt of ``tracking.request_timeout_s``),
    and returns the one line to raise: what happened, what ``run_dir`` keeps, and the commands that finish the job
    when the server answers again (``yolox tracking flush``; then ``yolox gate`` of ``version`` when it was
    registered, else the same ``yolox pipeline`` command, with ``--force`` when ``force``)."""
    from yolox.tracking.buffer import JOURNAL_NAME, record_run_end
    from yolox.tracking.store import redact, server_lost

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
    from yolox.tracking.buffer import JOURNAL_NAME, record_run_end
    from yolox.tracking.run import MlflowRun
    from yolox.tracking.store import ensure_experiment, preflight, redact, server_lost

    preflight(params)    # names checked, every MLflow call bounded, the stores checked: seconds, before any work
    ensure_experiment(params.tracking.experiment)
    run_dir = new_run_dir(params)
    log.info("run folder %s", run_dir)
    stage, run_id = "prepare", None
    try:
        prepared = own_data(params, runner("prepare", prepare, params), run_dir / "data")
        stage = "start-run"
        run_id = runner("start-run", start_run, params, prepared, {**(extra_tags or {}), "run_dir": str(run_dir)})
        lineage = lineage_of(params, prepared)
        if not force:
            stage = "check-changes"
            reason = runner("check-changes", changes_since, params, prepared)
            if reason:
                skipped = skip_run(params, run_id, prepared, reason)
                shutil.rmtree(run_dir, ignore_errors=True)   # nothing was made: only the data snapshot was there
                return skipped
        stage = "warm-start"
        params = in_run_dir(params, run_dir)     # from here on, every output is in the run's own folder
        start = runner("warm-start", warm_start, params, run_id)
        params = with_start_weights(params, start)
        stage = "train"
        trained = runner("train", train, params, prepared.path, resume="auto", run_id=run_id, progress=progress)
        stage = "evaluate"
        evaluation = runner("evaluate", evaluate, params, trained.checkpoint, prepared.path, run_id=run_id,
                            history=trained.history, progress=progress)
        stage = "export"
        exported = runner("export", export, params, trained.checkpoint, check_images=prepared.path / "images",
                          run_id=run_id, prepared_dir=prepared.path)
        stage = "register"
        registered = runner("register", register, params, exported, evaluation, run_id, prepared.data_version,
                            {**lineage, **start.tags()})
        stage = "gate"
        decision = runner("gate", gate, params, registered.version, prepared.path, prepared.data_version, run_id)
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
    run = MlflowRun.attach(run_id)
    run.set_note(decision.markdown())
    run.end("FINISHED")
    log.info("pipeline done: %s v%s %s (%s)", registered.name, registered.version, decision.decision,
             decision.outcome)
    return PipelineResult(run_id, prepared, trained, evaluation, exported, registered, decision.to_json(), run_dir)
