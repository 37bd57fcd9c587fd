"""The ``train-yolox`` flow: prepare -> train -> evaluate -> export -> register -> gate, one MLflow run.

After registration (alias ``challenger``), the gate evaluates the registered candidate and the current
champion (both registered ONNX pyfuncs, on this run's prepared val set), decides with
:func:`yolox.evaluate.gate.decide`, records the decision (run artifact ``gate/decision.json``, version
tags ``gate.*``, a Prefect markdown artifact) and moves ``champion`` when the candidate passes. A
rejected candidate is not a failure: the flow completes and the model stays ``challenger``.

Runs locally with Prefect's ephemeral API (no server) by default; deployments run it on a work pool.
Each task calls one function in ``yolox/``; MLflow is reached through ``yolox.tracking``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from datetime import timedelta

from prefect import flow, get_run_logger, task

from flows.resilience import prepare_cache_key, prepared_intact, retries
from yolox.config import PipelineParams, load_params


@task(name="prepare", **retries(2), cache_key_fn=prepare_cache_key, cache_expiration=timedelta(days=30),
      persist_result=True)
def prepare_task(params: PipelineParams) -> dict[str, Any]:
    from flows.data_version import dvc_dir_hash
    from yolox.data.prepare import prepare_dataset

    result = prepare_dataset(params.data)
    return {"prepared_dir": str(result.out_dir), "report": str(result.report_path),
            "data_version": dvc_dir_hash(result.out_dir), "train_images": result.num_train_images,
            "val_images": result.num_val_images, "skipped_images": result.num_skipped_images,
            "skipped_boxes": result.num_skipped_boxes}


@task(name="start-run", **retries())
def start_run_task(params: PipelineParams, data: dict[str, Any], flow_run: str) -> str:
    from yolox.tracking.run import MlflowRun, git_commit

    version = data["data_version"]
    name = params.tracking.run_name or f"{params.model.name}-{version[:8]}-{time.strftime('%Y%m%d-%H%M%S')}"
    tags = {"model": params.model.name, "input_size": str(params.model.input_size), "data_version": version,
            "data_source": params.data.source, "git_commit": git_commit(), "prefect_flow_run": flow_run,
            "registered_model": params.tracking.registered_model}
    run = MlflowRun(params.tracking.experiment, name, tags)
    run.log_params(params.flat())
    run.log_metrics({"data/train_images": data["train_images"], "data/val_images": data["val_images"],
                     "data/skipped_images": data["skipped_images"], "data/skipped_boxes": data["skipped_boxes"]})
    run.log_artifact(data["report"], "data")
    return run.run_id


@task(name="train", **retries(2, first_delay_s=30))
def train_task(params: PipelineParams, prepared_dir: str, run_id: str) -> dict[str, Any]:
    from prefect.runtime import task_run

    from yolox.tracking.run import MlflowRun
    from yolox.train.trainer import train

    run = MlflowRun(params.tracking.experiment, run_id=run_id)
    # a retry continues from the last checkpoint (and re-reports the epochs MLflow missed)
    result = train(params, prepared_dir, resume=task_run.run_count > 1, run_id=run_id,
                   on_epoch_end=lambda epoch, m: run.log_metrics(m, step=epoch))
    run.log_artifact(result.checkpoint, "checkpoint")
    return {"checkpoint": str(result.checkpoint), "seconds": result.seconds, "history": result.history}


@task(name="evaluate", **retries(2))
def evaluate_task(params: PipelineParams, checkpoint: str, prepared_dir: str, run_id: str,
                  history: list[dict[str, float]] | None = None) -> dict[str, float]:
    from yolox.data.records import load_prepared
    from yolox.evaluate.coco_eval import evaluate
    from yolox.evaluate.plots import evaluation_figures, training_curves
    from yolox.inference import TorchBackend
    from yolox.tracking.run import MlflowRun
    from yolox.train.trainer import load_trained

    model, meta = load_trained(checkpoint)
    val = load_prepared(prepared_dir, "val")
    result = evaluate(TorchBackend(model), val, params.eval.img_size or meta["input_size"], params.eval)
    path = result.write(params.eval.metrics_path)
    run = MlflowRun(params.tracking.experiment, run_id=run_id)
    run.log_metrics({f"eval/{k}": v for k, v in result.metrics.items()})
    run.log_metrics({f"eval_class/{k.replace(' ', '_')}": v for k, v in result.per_class.items()})
    run.log_artifact(path, "metrics")
    figures, confusion = evaluation_figures(result, val)
    if history:
        figures["plots/training_curves.png"] = training_curves(history)
    run.log_figures(figures)
    run.log_dict(confusion, "plots/confusion_matrix.json")
    return result.metrics


@task(name="export", **retries(2))
def export_task(params: PipelineParams, checkpoint: str, prepared_dir: str, run_id: str) -> dict[str, Any]:
    """Export and check; a failed check is recorded (tag ``export_check=failed``), registered, and
    rejected by the gate's ``export_check`` rule rather than failing the flow."""
    from yolox.export.onnx_export import check_onnx, export_onnx
    from yolox.predict import list_images
    from yolox.tracking.run import MlflowRun
    from yolox.train.trainer import load_trained

    model, meta = load_trained(checkpoint)
    path = export_onnx(model, params.export.onnx_path, meta["input_size"], meta["names"], meta["model_name"],
                       params.export.opset, params.export.dynamic_batch, params.export.simplify)
    images = list_images(Path(prepared_dir) / "images")[: params.export.check_images]
    check = check_onnx(model, path, images, meta["input_size"], params.export.max_abs_diff)
    run = MlflowRun(params.tracking.experiment, run_id=run_id)
    run.log_metrics({"export/max_abs_diff": check.max_abs_diff})
    run.set_tags({"export_check": "passed" if check.passed else "failed"})
    run.log_artifact(path, "onnx")
    if not check.passed:
        get_run_logger().warning("%s: ONNX differs from PyTorch by %.3g > %.3g: the gate will reject it", path,
                                 check.max_abs_diff, params.export.max_abs_diff)
    return {"onnx": str(path), "max_abs_diff": check.max_abs_diff, "passed": check.passed,
            "sample_image": str(images[0])}


@task(name="register")  # no task retry: a retry after a partial success would register a second version
def register_task(params: PipelineParams, exported: dict[str, Any], metrics: dict[str, float], run_id: str,
                  data_version: str) -> dict[str, str]:
    from yolox.tracking.registry import log_and_register
    from yolox.tracking.run import MlflowRun

    mv = log_and_register(run_id, exported["onnx"], params.tracking.registered_model, exported["sample_image"],
                          {"data_version": data_version, "AP50_95": f"{metrics['AP50_95']:.4f}",
                           "model": params.model.name, "input_size": str(params.model.input_size),
                           "export_check": "passed" if exported["passed"] else "failed",
                           "export_max_abs_diff": f"{exported['max_abs_diff']:.3g}"},
                          alias=params.gate.challenger_alias)
    MlflowRun.attach(run_id).set_tags({"registered_version": mv.version})
    return {"name": mv.name, "version": mv.version, "uri": mv.model_uri}


@task(name="evaluate-registered", **retries())
def evaluate_registered_task(params: PipelineParams, alias_or_version: str, prepared_dir: str,
                             data_version: str) -> dict[str, Any] | None:
    """Evaluate a registered version (or the holder of an alias; None when nobody holds it) through its
    registered ONNX pyfunc on this run's prepared val set."""
    from yolox.data.records import load_prepared
    from yolox.errors import CheckpointError, DataError
    from yolox.evaluate.gate import evaluate_registered
    from yolox.tracking.registry import alias_version

    name = params.tracking.registered_model
    version = alias_or_version
    if not alias_or_version.isdigit():
        mv = alias_version(name, alias_or_version)
        if mv is None:
            get_run_logger().info("%s has no %r yet: the candidate is the first model", name, alias_or_version)
            return None
        version = str(mv.version)
    try:
        ev, _ = evaluate_registered(name, version, load_prepared(prepared_dir, "val"), params.eval,
                                    data_version=data_version)
    except (DataError, CheckpointError) as err:  # e.g. a champion trained on other classes
        if alias_or_version.isdigit():
            raise
        get_run_logger().warning("%s %s (version %s) cannot be evaluated here: %s", name, alias_or_version,
                                 version, err)
        return {"version": version, "error": str(err)}
    return ev.to_json()


@task(name="gate")  # no task retry: a retry after the alias moved would see the candidate as champion
def gate_task(params: PipelineParams, candidate: dict[str, Any], champion: dict[str, Any] | None,
              export_passed: bool, run_id: str) -> dict[str, Any]:
    """Decide, promote when the candidate passes (only if the champion is still the one evaluated), and
    record the decision on the run and the candidate version."""
    from yolox.evaluate.gate import ModelEval, apply_decision, decide, record_decision
    from yolox.tracking.run import MlflowRun

    error = f"version {champion['version']}: {champion['error']}" if champion and "error" in champion else None
    champ = ModelEval.from_json(champion) if champion and not error else None
    decision = decide(params.tracking.registered_model, ModelEval.from_json(candidate), champ, export_passed,
                      params.gate, error)
    decision.mlflow_run_id = run_id
    apply_decision(decision, params.gate)
    record_decision(decision)
    MlflowRun.attach(run_id).set_note(decision.markdown())
    return decision.to_json()


@flow(name="train-yolox", log_prints=True)
def train_yolox(params_file: str = "params/default.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """Prepare, train, evaluate, export, register and gate one model; returns a summary (run id, AP,
    version, its alias after the gate, and the gate's decision record)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.runtime import flow_run

    from yolox.errors import StageError
    from yolox.evaluate.gate import Decision
    from yolox.tracking.run import MlflowRun

    logger = get_run_logger()
    params = load_params(params_file, overrides)
    stage, run_id = "prepare", None
    try:
        data = prepare_task(params)
        if not prepared_intact(data):  # a cached result whose folder was deleted or changed since
            data = prepare_task.with_options(refresh_cache=True)(params)
        stage = "start-run"
        run_id = start_run_task(params, data, str(flow_run.id or "local"))
        stage = "train"
        trained = train_task(params, data["prepared_dir"], run_id)
        stage = "evaluate"
        metrics = evaluate_task(params, trained["checkpoint"], data["prepared_dir"], run_id, trained["history"])
        stage = "export"
        exported = export_task(params, trained["checkpoint"], data["prepared_dir"], run_id)
        stage = "register"
        version = register_task(params, exported, metrics, run_id, data["data_version"])
        stage = "gate"
        champion = evaluate_registered_task(params, params.gate.champion_alias, data["prepared_dir"],
                                            data["data_version"])
        candidate = evaluate_registered_task(params, version["version"], data["prepared_dir"],
                                             data["data_version"])
        decision = gate_task(params, candidate, champion, exported["passed"], run_id)
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}"
        logger.error("stage %r failed: %s. The champion alias was not touched.", stage, reason)
        if run_id is not None:
            try:
                run = MlflowRun.attach(run_id)
                run.set_tags({"failed_stage": stage, "failure": reason[:5000]})
                run.end("FAILED")
            except Exception as tracking_err:  # noqa: BLE001 - the tracking server may be the failure
                logger.warning("could not mark MLflow run %s FAILED: %s", run_id, tracking_err)
        if isinstance(err, Exception) and not isinstance(err, StageError):
            raise StageError(f"train-yolox: stage {stage!r} failed: {reason}") from err
        raise
    MlflowRun(params.tracking.experiment, run_id=run_id).end("FINISHED")
    create_markdown_artifact(markdown=Decision.from_json(decision).markdown(), key="gate-decision",
                             description=f"{version['name']} v{version['version']}: {decision['decision']}")
    promoted = decision["decision"] == "promote" and decision["outcome"].startswith("promoted")
    summary = {"mlflow_run_id": run_id, "data_version": data["data_version"], "AP50_95": metrics["AP50_95"],
               "AP50": metrics["AP50"], "onnx": exported["onnx"], "onnx_max_abs_diff": exported["max_abs_diff"],
               "registered_model": version["name"], "version": version["version"],
               "alias": params.gate.champion_alias if promoted else params.gate.challenger_alias,
               "gate": decision}
    logger.info("pipeline done: %s v%s %s (%s)", version["name"], version["version"], decision["decision"],
                decision["outcome"])
    return summary


if __name__ == "__main__":
    import sys

    print(train_yolox(*(sys.argv[1:2] or [])))
