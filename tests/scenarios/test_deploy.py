"""The production path on loopback: `prefect server start` (SQLite), a process work pool,
`prefect deploy --all` from prefect.yaml, a worker started through flows/launch_worker.py, then
`prefect deployment run train-yolox/nightly` with tiny params, watched to Completed; behind it an MLflow
run and a registered version. Every process is started in its own session and stopped (SIGTERM, then
SIGINT, then SIGKILL) however the test ends."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.background import Background, wait_http
from helpers.project_files import copy_project

from yolox.train.torchrun import free_port

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent

TINY = {
    "data": {"source": "coco128", "val_fraction": 0.2},
    "model": {"name": "yolox-nano", "input_size": 416, "weights": "yolox_nano.pth"},
    "augment": {"multiscale_range": 0},
    "train": {"epochs": 1, "batch_size": 4, "warmup_epochs": 0, "no_aug_epochs": 0, "max_iters_per_epoch": 2,
              "eval_interval": 1, "workers": 0, "basic_lr_per_img": 1.5625e-5,
              "freeze": ["backbone.backbone.stem"]},
    "export": {"check_images": 2},
    "tracking": {"experiment": "deploy-test", "registered_model": "yolox-deploy-test"},
}



def test_deployment_run_on_loopback(tmp_path: Path, coco128_dir: Path) -> None:
    import httpx

    project, logs = tmp_path / "project", tmp_path / "logs"
    project.mkdir()
    logs.mkdir()
    copy_project(project)
    (project / "params" / "ci-tiny.yaml").write_text(yaml.safe_dump(TINY))
    config = yaml.safe_load((project / "prefect.yaml").read_text())
    pool = config["deployments"][0]["work_pool"]["name"]

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    mlflow_db = tmp_path / "mlflow.db"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / ".prefect"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200",
           "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_db}", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DVC_NO_ANALYTICS": "1"}
    env.pop("YOLOX_PROJECT_DIR", None)  # the launcher sets it to its own checkout: the copy

    def prefect(*args: str, timeout: float = 120) -> str:
        proc = subprocess.run([str(BIN / "prefect"), *args], cwd=project, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        assert proc.returncode == 0, f"prefect {args}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        return proc.stdout + proc.stderr

    started: list[Background] = []
    try:
        server = Background("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                       "--port", str(port)], project, env, logs)
        started.append(server)
        print(f"server healthy in {wait_http(f'{api}/health', server, timeout=90):.1f} s")

        prefect("work-pool", "create", pool, "--type", "process")
        out = prefect("--no-prompt", "deploy", "--all", timeout=180)
        assert "train-yolox/nightly" in out and "train-yolox/coco128-smoke" in out, out

        # the deployments as the server holds them: nightly cron in UTC, and a pull step that is not a path
        nightly = httpx.get(f"{api}/deployments/name/train-yolox/nightly", timeout=10).json()
        assert [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in nightly["schedules"]] == [
            ("0 2 * * *", "UTC")]
        assert nightly["parameters"] == {"params_file": "params/default.yaml", "overrides": []}
        assert nightly["work_pool_name"] == pool
        assert nightly["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {
            "directory": "{{ $YOLOX_PROJECT_DIR }}"}}], nightly["pull_steps"]
        # keep the 02:00 UTC schedule from firing into this test
        for s in nightly["schedules"]:
            httpx.patch(f"{api}/deployments/{nightly['id']}/schedules/{s['id']}", json={"active": False},
                        timeout=10).raise_for_status()

        worker = Background("worker", [sys.executable, str(project / "flows" / "launch_worker.py")],
                            project, env, logs)
        started.append(worker)

        run = subprocess.run(
            [str(BIN / "prefect"), "deployment", "run", "train-yolox/nightly",
             "--param", "params_file=params/ci-tiny.yaml", "--watch", "--watch-timeout", "600"],
            cwd=project, env=env, capture_output=True, text=True, timeout=660, check=False)
        out = run.stdout + run.stderr
        print(out[-2000:])
        assert run.returncode == 0, f"{out[-4000:]}\nworker:\n{worker.output()[-6000:]}"
        assert "Completed" in out, out[-3000:]
        flow_run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)

        state = httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=10).json()
        assert state["state_type"] == "COMPLETED"
        # the run's logs (what the Prefect UI shows) have one line per training epoch, from the train task
        logs_api = httpx.post(f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}},
                                                          "sort": "TIMESTAMP_ASC", "limit": 200}, timeout=10).json()
        epochs = [entry["message"] for entry in logs_api if entry["message"].startswith("epoch ")]
        assert len(epochs) == TINY["train"]["epochs"] and all(e["task_run_id"] for e in logs_api
                                                              if e["message"].startswith("epoch ")), epochs
        assert "ETA" in epochs[0] and not any("Accumulating evaluation" in e["message"] for e in logs_api)
        assert state["parameters"]["params_file"] == "params/ci-tiny.yaml"
        wlog = worker.output()
        assert "pipeline done" in wlog, wlog[-4000:]
        # the pull step ran the flow in the checkout the worker was started from (the run's own folder in it)
        assert (project / "data" / "prepared").is_dir()
        (run_dir,) = (project / "runs" / "pipeline").iterdir()
        assert (run_dir / "export" / "model.onnx").is_file() and (run_dir / "train" / "last.pth").is_file()

        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{mlflow_db}", registry_uri=f"sqlite:///{mlflow_db}")
        exp = client.get_experiment_by_name(TINY["tracking"]["experiment"])
        runs = client.search_runs([exp.experiment_id])
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        assert runs[0].data.tags["prefect_flow_run"] == flow_run_id
        assert runs[0].data.tags["data_version"].endswith(".dir")
        name = TINY["tracking"]["registered_model"]
        versions = client.search_model_versions(f"name = '{name}'")
        assert [v.run_id for v in versions] == [runs[0].info.run_id]
        aliases = client.get_registered_model(name).aliases  # {alias: version}
        # challenger, or champion when the gate promoted it
        assert str(versions[0].version) in {str(v) for v in aliases.values()}, aliases
        print(json.dumps({"flow_run": flow_run_id, "mlflow_run": runs[0].info.run_id,
                          "registered": f"{name}/{versions[0].version}", "aliases": aliases}))
    finally:
        for b in reversed(started):
            b.stop()
            print(f"{b.name} stopped by {b.stopped_by}")
    # the launcher's point: SIGTERM alone stops the worker (and the server), nothing had to be killed
    assert worker.stopped_by.startswith("SIGTERM"), f"worker: {worker.stopped_by}\n{worker.output()[-2000:]}"
    assert server.stopped_by.startswith("SIGTERM"), f"server: {server.stopped_by}\n{server.output()[-2000:]}"
