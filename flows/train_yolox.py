"""The ``train-yolox`` flow: prepare -> train -> evaluate -> export -> register, one MLflow run.

Runs locally with Prefect's ephemeral API (no server) by default; deployments run it on a work pool.
Each task calls one function in ``yolox/``; MLflow is reached through ``yolox.tracking``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task  # noqa: E402

from yolox.config import PipelineParams, load_params  # noqa: E402


@task(name="prepare")
def prepare_task(params: PipelineParams) -> dict[str, Any]:
    from yolox.data.prepare import prepare_dataset

    from flows.data_version import dvc_dir_hash

    result = prepare_dataset(params.data)
    return {"prepared_dir": str(result.out_dir), "report": str(result.report_path),
            "data_version": dvc_dir_hash(result.out_dir), "train_images": result.num_train_images,
            "val_images": result.num_val_images, "skipped_images": result.num_skipped_images,
            "skipped_boxes": result.num_skipped_boxes}


@task(name="start-run")
def start_run_task(params: PipelineParams, data: dict[str, Any], flow_run: str) -> str:
    from yolox.tracking.run import MlflowRun, git_commit

    version = data["data_version"]
    name = params.tracking.run_name or f"{params.model.name}-{version[:8]}-{time.strftime('%Y%m%d-%H%M%S')}"
    tags = {"model": params.model.name, "data_version": version, "data_source": params.data.source,
            "git_commit": git_commit(), "prefect_flow_run": flow_run}
    run = MlflowRun(params.tracking.experiment, name, tags)
    run.log_params(params.flat())
    run.log_metrics({"data/train_images": data["train_images"], "data/val_images": data["val_images"],
                     "data/skipped_images": data["skipped_images"], "data/skipped_boxes": data["skipped_boxes"]})
    run.log_artifact(data["report"], "data")
    return run.run_id


@task(name="train")
def train_task(params: PipelineParams, prepared_dir: str, run_id: str) -> dict[str, Any]:
    from yolox.train.trainer import train
    from yolox.tracking.run import MlflowRun

    run = MlflowRun(params.tracking.experiment, run_id=run_id)
    result = train(params, prepared_dir, on_epoch_end=lambda epoch, m: run.log_metrics(m, step=epoch))
    run.log_artifact(result.checkpoint, "checkpoint")
    return {"checkpoint": str(result.checkpoint), "seconds": result.seconds}


@task(name="evaluate")
def evaluate_task(params: PipelineParams, checkpoint: str, prepared_dir: str, run_id: str) -> dict[str, float]:
    from yolox.data.records import load_prepared
    from yolox.evaluate.coco_eval import evaluate
    from yolox.inference import TorchBackend
    from yolox.train.trainer import load_trained
    from yolox.tracking.run import MlflowRun

    model, meta = load_trained(checkpoint)
    result = evaluate(TorchBackend(model), load_prepared(prepared_dir, "val"),
                      params.eval.img_size or meta["input_size"], params.eval)
    path = result.write(params.eval.metrics_path)
    run = MlflowRun(params.tracking.experiment, run_id=run_id)
    run.log_metrics({f"eval/{k}": v for k, v in result.metrics.items()})
    run.log_metrics({f"eval_class/{k.replace(' ', '_')}": v for k, v in result.per_class.items()})
    run.log_artifact(path, "metrics")
    return result.metrics


@task(name="export")
def export_task(params: PipelineParams, checkpoint: str, prepared_dir: str, run_id: str) -> dict[str, Any]:
    from yolox.errors import ExportError
    from yolox.export.onnx_export import check_onnx, export_onnx
    from yolox.predict import list_images
    from yolox.train.trainer import load_trained
    from yolox.tracking.run import MlflowRun

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
        raise ExportError(f"{path}: ONNX differs from PyTorch by {check.max_abs_diff:.3g}")
    return {"onnx": str(path), "max_abs_diff": check.max_abs_diff, "sample_image": str(images[0])}


@task(name="register")
def register_task(params: PipelineParams, exported: dict[str, Any], metrics: dict[str, float], run_id: str,
                  data_version: str) -> dict[str, str]:
    from yolox.tracking.registry import log_and_register

    mv = log_and_register(run_id, exported["onnx"], params.tracking.registered_model, exported["sample_image"],
                          {"data_version": data_version, "AP50_95": f"{metrics['AP50_95']:.4f}",
                           "model": params.model.name})
    return {"name": mv.name, "version": mv.version, "uri": mv.model_uri}


@flow(name="train-yolox", log_prints=True)
def train_yolox(params_file: str = "params/default.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """Prepare, train, evaluate, export and register one model; returns a summary (run id, AP, version)."""
    from prefect.runtime import flow_run

    from yolox.tracking.run import MlflowRun

    logger = get_run_logger()
    params = load_params(params_file, overrides)
    data = prepare_task(params)
    run_id = start_run_task(params, data, str(flow_run.id or "local"))
    try:
        trained = train_task(params, data["prepared_dir"], run_id)
        metrics = evaluate_task(params, trained["checkpoint"], data["prepared_dir"], run_id)
        exported = export_task(params, trained["checkpoint"], data["prepared_dir"], run_id)
        version = register_task(params, exported, metrics, run_id, data["data_version"])
    except BaseException:
        MlflowRun(params.tracking.experiment, run_id=run_id).end("FAILED")
        raise
    MlflowRun(params.tracking.experiment, run_id=run_id).end("FINISHED")
    summary = {"mlflow_run_id": run_id, "data_version": data["data_version"], "AP50_95": metrics["AP50_95"],
               "AP50": metrics["AP50"], "onnx": exported["onnx"], "onnx_max_abs_diff": exported["max_abs_diff"],
               "registered_model": version["name"], "version": version["version"], "alias": "challenger"}
    logger.info("pipeline done: %s", summary)
    return summary


if __name__ == "__main__":
    import sys

    print(train_yolox(*(sys.argv[1:2] or [])))
