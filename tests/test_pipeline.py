"""End to end: `yolox pipeline` (the Prefect flow train-yolox) on coco128 with tiny params, then what a
person finds in MLflow: the run with params, per-epoch and AP metrics, artifacts, tags, and a registered
model version with the `challenger` alias."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

TINY = {
    "data": {"source": "coco128", "val_fraction": 0.2},
    "model": {"name": "yolox-nano", "input_size": 416, "weights": "yolox_nano.pth"},
    "augment": {"multiscale_range": 0},
    "train": {"epochs": 2, "batch_size": 4, "warmup_epochs": 1, "no_aug_epochs": 1, "max_iters_per_epoch": 3,
              "eval_interval": 1, "workers": 0, "basic_lr_per_img": 1.5625e-5, "freeze": ["backbone.backbone.stem"]},
    "export": {"check_images": 2},
    "tracking": {"experiment": "e2e", "registered_model": "yolox-e2e"},
}


def test_pipeline_end_to_end(tmp_path: Path, coco128_dir: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / ".prefect"), "MLFLOW_TRACKING_URI": "",
           "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI")
    proc = subprocess.run([str(Path(sys.executable).parent / "yolox"), "pipeline", "--params", "params.yaml"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Completed" in proc.stdout + proc.stderr

    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.name"] == "yolox-nano"
    assert run.data.tags["data_version"].endswith(".dir") and run.data.tags["git_commit"]
    assert run.data.tags["model"] == "yolox-nano"
    assert 0.0 <= run.data.metrics["eval/AP50_95"] <= 1.0
    history = client.get_metric_history(run.info.run_id, "train/total_loss")
    assert [m.step for m in history] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoint", "onnx", "metrics", "data"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "data")] == ["data/report.json"]
    version = client.get_model_version_by_alias("yolox-e2e", "challenger")
    assert version.run_id == run.info.run_id
    assert version.tags["data_version"] == run.data.tags["data_version"]
    # the registered pyfunc answers with detections in original-image pixels
    import pandas as pd

    from yolox.tracking.pyfunc import encode_image

    model = mlflow.pyfunc.load_model("models:/yolox-e2e@challenger")
    image = sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[0]
    out = model.predict(pd.DataFrame({"image": [encode_image(image)]}))
    assert list(out.columns)[:6] == ["image", "x0", "y0", "x1", "y1", "score"]
    assert len(out) > 0 and (out["image"] == 0).all()
