"""A real ``mlflow server`` (the installed MLflow, SQLite backend, a free loopback port) SIGKILLed while
``yolox pipeline`` trains, and left dead (issue 24, row 1): the command ends within 90 s of the kill, exit 1, its
last stderr line one complete line naming what the run folder keeps and the commands that finish the job; the
checkpoint and the journal are on disk; once the server is started again on the same database,
``yolox tracking flush`` sends what the journal kept: every epoch's metrics reach the run once, and the run ends
FAILED with the stage and the reason.

The pipeline is the real CLI in a subprocess on coco128 (by name, from the asset mirror): yolox-nano at 128 px
from scratch, 12 epochs of 1 iteration of batch 2, evaluation at the last epoch only, one torch thread, with the
default tracking bounds (``tracking.flush_timeout_s`` 30 s, ``tracking.http_timeout_s`` 10 s, 2 retries). The
server is killed once an epoch has reached it, so the later epochs are journaled while it is gone.

Faster, in this process: a run's end journaled and sent through MLflow's client (SQLite store); against a closed
port, one attempt of at most the request timeout and no warning; ``ensure_experiment`` on a dead server raises
the one complete line of ``server_lost``, not MLflow's message cut mid-string.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.mlflow_server import MlflowServer

from yolox.train.torchrun import free_port

BIN = Path(sys.executable).parent
EPOCHS = 12
PARAMS = {
    "data": {"source": "coco128", "val_fraction": 0.2},
    "model": {"name": "yolox-nano", "input_size": 128, "weights": None},
    "augment": {"multiscale_range": 0},
    "train": {"epochs": EPOCHS, "batch_size": 2, "warmup_epochs": 1, "no_aug_epochs": 1, "max_iters_per_epoch": 1,
              "eval_interval": 100, "workers": 0, "device": "cpu", "seed": 0},
    "eval": {"batch_size": 8},
    "tracking": {"experiment": "outage", "registered_model": "yolox-outage"},
}


def _journal_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


@pytest.fixture
def no_mlflow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No MLFLOW_* variable of the outer environment (those a test sets are undone after it); the working
    directory is ``tmp_path``."""
    for var in [v for v in os.environ if v.startswith(("MLFLOW_TRACKING", "MLFLOW_REGISTRY"))]:
        monkeypatch.delenv(var)
    for var in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
                "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER", "YOLOX_MLFLOW_HTTP_DEFAULTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_run_end_through_the_journal(tmp_path: Path, no_mlflow_env: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """SQLite store: the end goes after the pending metrics, in order, and the run ends FAILED with its tags."""
    import logging

    from mlflow import MlflowClient

    from yolox.tracking.journal import JOURNAL_NAME, MetricBuffer, record_run_end

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    no_mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("journal-end")).info.run_id
    buffer = MetricBuffer(tmp_path / "train", run_id, 5.0)
    buffer.log_metrics({"train/total_loss": 3.0}, 1)
    assert buffer.close(10) == 0
    tags = {"failed_stage": "evaluate", "failure": "MLflow at x stopped answering"}
    assert record_run_end(tmp_path / "train", run_id, "FAILED", tags, 5.0) == 0
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and {k: run.data.tags[k] for k in tags} == tags
    assert [m.step for m in client.get_metric_history(run_id, "train/total_loss")] == [1]
    rows = [json.loads(line) for line in (tmp_path / "train" / JOURNAL_NAME).read_text().splitlines()]
    assert rows[2] == {"seq": 2, "store": uri, "run_id": run_id, "metrics": [], "tags": tags, "status": "FAILED",
                       "end_time": rows[2]["end_time"]} and rows[3] == {"ack": 2}
    assert run.info.end_time == rows[2]["end_time"]

    # against a closed port: one attempt, pending left in the journal, nothing of ours logged above debug (MLflow's
    # own INFO lines, e.g. creating an earlier test's store tables, are not this function's)
    no_mlflow_env.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, "yolox"):
        assert record_run_end(tmp_path / "dead", run_id, "KILLED", {"failed_stage": "train"}, 5.0) == 1
    assert time.monotonic() - t0 < 3 and [r for r in caplog.records if r.name.startswith("yolox")] == []


def test_ensure_experiment_on_a_dead_server_says_it_in_one_line(no_mlflow_env: pytest.MonkeyPatch) -> None:
    """MLflow's own message (its URL cut at 300 characters before "Is the server up?") is not what the user
    reads."""
    from yolox.errors import TrackingError
    from yolox.tracking.store import bound_requests, ensure_experiment

    uri = f"http://127.0.0.1:{free_port()}"
    no_mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
    bound_requests(1)
    with pytest.raises(TrackingError) as err:
        ensure_experiment("anything")
    assert str(err.value) == (f"MLflow at {uri} (MLFLOW_TRACKING_URI) stopped answering during the command: "
                              "connection refused (3 attempts, at most about 6 s); start the server or point "
                              "MLFLOW_TRACKING_URI at a running one, then run the command again")


@pytest.mark.slow
def test_server_killed_mid_training_ends_the_pipeline_in_seconds_and_loses_nothing(tmp_path: Path,
                                                                                   coco128_dir: Path) -> None:
    from mlflow import MlflowClient

    server = MlflowServer(tmp_path / "server")
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "YOLOX_MLFLOW"))},
           "MLFLOW_TRACKING_URI": server.uri, "MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "80",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "YOLOX_CACHE_DIR": str(tmp_path / "cache")}
    server.launch()
    pipeline = None
    try:
        server.wait_healthy()
        log = (tmp_path / "pipeline.err").open("w")
        pipeline = subprocess.Popen([str(BIN / "yolox"), "pipeline", "--params", "params.yaml"], cwd=project,
                                    env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        journals = project / "runs" / "pipeline"
        deadline = time.monotonic() + 300
        while not any("ack" in r for j in journals.glob("*/train/tracking-journal.jsonl")
                      for r in _journal_rows(j)):
            assert pipeline.poll() is None, (tmp_path / "pipeline.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "no epoch reached MLflow in 300 s"
            time.sleep(0.1)
        server.kill()                                                      # an epoch is in MLflow: the server dies
        killed = time.monotonic()
        stdout, _ = pipeline.communicate(timeout=240)
        seconds = time.monotonic() - killed
    finally:
        if pipeline is not None and pipeline.poll() is None:
            pipeline.kill()
        server.kill()

    stderr = (tmp_path / "pipeline.err").read_text()
    (run_dir,) = [p.relative_to(project) for p in journals.iterdir()]
    train = run_dir / "train"
    rows = _journal_rows(project / train / "tracking-journal.jsonl")
    entries = [r for r in rows if "seq" in r]
    acked = {r["ack"] for r in rows if "ack" in r}
    pending = [r for r in entries if r["seq"] not in acked]
    run_id = entries[0]["run_id"]
    print(f"\npipeline ended {seconds:.1f} s after the server was killed; {len(pending)} of {len(entries)} "
          f"journal entries pending; last stderr line:\n{stderr.splitlines()[-1]}")
    assert pipeline.returncode == 1 and stdout == ""
    assert seconds < 90, f"took {seconds:.1f} s after the kill"
    untouched = "the champion alias was not touched"
    what = (f"MLflow at {server.uri} (MLFLOW_TRACKING_URI) stopped answering during stage 'train': connection "
            f"refused (3 attempts, at most about 32 s); {untouched}")
    assert stderr.splitlines()[-1] == (
        f"error: pipeline: {what}; kept in {run_dir}: train/last.pth (the trained checkpoint), "
        f"train/tracking-journal.jsonl ({len(pending)} entries MLflow has not got: the epoch metrics and the "
        "run's end); when it answers again (start it, or point MLFLOW_TRACKING_URI at a running one): "
        f"yolox tracking flush --out {train}, then the same yolox pipeline command (a new run: it trains again)")
    assert "Retrying (" not in stderr and "Traceback" not in stderr
    # on disk: the checkpoint of the last epoch, every epoch's metrics in the journal, then the run's end
    assert (project / train / "last.pth").is_file()
    assert [r["metrics"][0]["step"] for r in entries[:-1]] == list(range(1, EPOCHS + 1))
    assert entries[-1]["metrics"] == [] and entries[-1]["status"] == "FAILED"
    assert entries[-1]["tags"] == {"failed_stage": "train", "failure": what}
    assert len(pending) >= 2 and pending[-1] is entries[-1]

    # the server back on the same database: the flush sends what was kept, and ends the run
    server.launch()
    try:
        server.wait_healthy()
        flush = subprocess.run([str(BIN / "yolox"), "tracking", "flush", "--out", str(train)], cwd=project,
                               env=env, capture_output=True, text=True, timeout=120, check=False)
        assert flush.returncode == 0, flush.stderr
        last = flush.stderr.strip().splitlines()[-1]
        print(f"yolox tracking flush, the server back: {last}")
        assert last.startswith(f"{train / 'tracking-journal.jsonl'}: sent {len(pending)} entries (")
        assert last.endswith(f"already in MLflow) to {server.uri}; run {run_id} ended FAILED; nothing pending")
        client = MlflowClient(tracking_uri=server.uri)
        run = client.get_run(run_id)
        for key in ("train/total_loss", "train/iou_loss", "train/lr"):
            assert [m.step for m in client.get_metric_history(run_id, key)] == list(range(1, EPOCHS + 1)), key
        assert [m.step for m in client.get_metric_history(run_id, "val/AP50_95")] == [EPOCHS]
        assert run.info.status == "FAILED" and run.info.end_time is not None
        assert run.data.tags["failed_stage"] == "train" and run.data.tags["failure"] == what
        assert run.data.tags["run_dir"] == str(run_dir)
    finally:
        server.kill()
