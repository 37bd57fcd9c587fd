"""Two pipelines at once in one project folder and one (new) tracking store, as a nightly run and a manual one
would: each run writes into its own folder, registers only what it produced, and neither dies in the store's
first use (MLflow creates a new SQLite store's schema on first use: serialised by a lock beside the database).

What is checked, for each of the two runs, from what a user would look at afterwards: the MLflow run FINISHED
with its own `run_dir`; its registered version's ONNX bytes (read back from the registry) hash to the ONNX file
in that run's folder and to the run's `onnx_sha256` tag; the checkpoint logged in the run is byte-identical to
the one in its folder and records that run's id; the two runs (different seeds) made different models."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow

TINY = {
    "data": {"source": "coco128", "val_fraction": 0.2},
    "model": {"name": "yolox-nano", "input_size": 320, "weights": "yolox_nano.pth"},
    "augment": {"multiscale_range": 0},
    "train": {"epochs": 1, "batch_size": 4, "warmup_epochs": 1, "no_aug_epochs": 0, "max_iters_per_epoch": 2,
              "eval_interval": 1, "workers": 0, "basic_lr_per_img": 1.5625e-5},
    "eval": {"batch_size": 8},
    "export": {"check_images": 1},
    "tracking": {"experiment": "two", "registered_model": "yolox-two"},
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_pipelines_at_once_keep_their_own_artifacts(tmp_path: Path) -> None:
    import mlflow

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONUNBUFFERED="1", MLFLOW_DISABLE_TELEMETRY="true")
    yolox = str(Path(sys.executable).parent / "yolox")
    procs = [subprocess.Popen([yolox, "pipeline", "--params", "params.yaml", "--set", f"train.seed={seed}",
                               "--set", "gate.min_ap=0"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-2000:] + err[-4000:]

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name='yolox-two'")
    assert len(versions) == 2
    seen_models = set()
    for mv in versions:
        run = client.get_run(mv.run_id)
        assert run.info.status == "FINISHED"
        run_dir = tmp_path / run.data.tags["run_dir"]
        assert run_dir.parent == tmp_path / "runs" / "pipeline"
        onnx = run_dir / "export" / "model.onnx"
        # the registered bytes are this run's export, and the run's own tag says so
        local = Path(mlflow.artifacts.download_artifacts(f"models:/yolox-two/{mv.version}", dst_path=str(
            tmp_path / f"v{mv.version}")))
        registered = local / "artifacts" / "model.onnx"
        assert _sha(registered) == _sha(onnx) == run.data.tags["onnx_sha256"] == mv.tags["onnx_sha256"]
        seen_models.add(_sha(onnx))
        # the checkpoint logged in the run is the one in its folder, written by this run
        logged = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="checkpoint/last.pth",
                                                          dst_path=str(tmp_path / f"ckpt{mv.version}")))
        assert _sha(logged) == _sha(run_dir / "train" / "last.pth")
        assert torch.load(logged, map_location="cpu", weights_only=True)["mlflow_run_id"] == mv.run_id
        assert run.data.params["train.seed"] in ("0", "1")
    assert len(seen_models) == 2, "two seeds, one model: a run registered the other's export"
    assert len({client.get_run(mv.run_id).data.tags["run_dir"] for mv in versions}) == 2
    # the shared prepared folder is whole (the two prepares took turns), and no temp folder was left behind
    assert (tmp_path / "data" / "prepared" / "annotations" / "train.json").is_file()
    assert not [p for p in (tmp_path / "data").iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def _prepare_params(tmp_path: Path):
    from yolox.config import parse_params

    return parse_params({"data": {"source": "coco128", "val_fraction": 0.2,
                                  "prepared_dir": str(tmp_path / "data" / "prepared")}})


def test_a_second_prepare_waits_for_the_first_and_says_for_whom(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """While another holder has the prepared folder's lock, prepare waits (and logs who holds it), then runs."""
    import threading
    import time

    from yolox.data.stage import prepare
    from yolox.files import project_lock

    params = _prepare_params(tmp_path)
    lock = tmp_path / "data" / "prepared.lock"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with project_lock(lock, "test"):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    threading.Timer(1.5, release.set).start()
    t0 = time.monotonic()
    with caplog.at_level("INFO", logger="yolox.data"):
        result = prepare(params, snapshot=tmp_path / "run" / "data")
    waited = time.monotonic() - t0
    holder.join()
    assert waited >= 1.4
    assert any(f"waiting for pid {os.getpid()} since" in r.getMessage() for r in caplog.records), caplog.text
    assert result.path == tmp_path / "run" / "data" and (result.path / "annotations" / "val.json").is_file()
    # the snapshot is hard links to the prepared files, and has the same data version
    from yolox.lineage import data_version

    assert data_version(result.path) == data_version(tmp_path / "data" / "prepared") == result.data_version
    some = next((result.path / "images").iterdir())
    assert some.stat().st_ino == (tmp_path / "data" / "prepared" / "images" / some.name).stat().st_ino


def test_a_lock_whose_holder_was_killed_is_free_at_once(tmp_path: Path) -> None:
    """A process killed (SIGKILL: no cleanup) while holding the prepared folder's lock does not block the next
    prepare: the kernel dropped the lock with the process (the holder file it left names it, nothing waits)."""
    import signal
    import time

    from yolox.data.stage import prepare

    lock = tmp_path / "data" / "prepared.lock"
    code = ("import sys, time; from yolox.files import project_lock\n"
            f"with project_lock({str(lock)!r}, 'test'):\n    print('held', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert (lock.parent / "prepared.lock.holder").is_file()     # left behind by the killed holder
    t0 = time.monotonic()
    result = prepare(_prepare_params(tmp_path))
    assert time.monotonic() - t0 < 30 and result.train_images + result.val_images == 128
