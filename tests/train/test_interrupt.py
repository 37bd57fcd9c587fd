"""Interrupting real training processes (issue 11): SIGINT or SIGTERM from outside, as a terminal, a
supervisor or a scheduler sends them, to ``yolox train``, ``yolox pipeline``, the Prefect flow and a
torchrun-launched job.

Each process is parked inside one optimizer step (a patched ``train_step``) so that the signal lands
mid-epoch every time without racing the clock; the parked step goes on once the signal has reached the
trainer (its handler recorded it), which is the case the trainer is built for: the step in flight
finishes, then the checkpoint is written. ``yolox train`` and ``yolox pipeline`` run as themselves
(``yolox.cli.run``) in a small driver that only installs the park; the torchrun workers get it from a
``sitecustomize`` module on their PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.cli_runner import yolox_stderr
from helpers.project_files import REPO as ROOT
from helpers.train import assert_same_run, checkpoint, make_yolo_subset, signal_at_step, tiny_params

pytestmark = pytest.mark.slow

YOLOX = str(Path(sys.executable).with_name("yolox"))

PARK = textwrap.dedent('''
    import os, signal, time
    from pathlib import Path

    from yolox.train import trainer

    _park_at, _marker = int(os.environ["PARK_AT_STEP"]), Path(os.environ["PARK_MARKER"])
    _real_step, _calls = trainer.train_step, [0]

    def _stop_requested():
        """The signal the trainer's handler recorded (yolox.train.interrupt.StopRequest), if any."""
        handler = signal.getsignal(signal.SIGTERM)
        return getattr(getattr(handler, "__self__", None), "signum", None)

    def _parked_step(*args, **kwargs):
        _calls[0] += 1
        if _calls[0] == _park_at:
            _marker.write_text(str(os.getpid()))
            deadline = time.time() + 300
            while _stop_requested() is None and time.time() < deadline:
                time.sleep(0.05)
        return _real_step(*args, **kwargs)

    trainer.train_step = _parked_step
''')

CLI_DRIVER = PARK + textwrap.dedent('''
    import sys

    from yolox.cli import run

    sys.argv = ["yolox", *sys.argv[1:]]
    run()
''')

FLOW_DRIVER = PARK + textwrap.dedent('''
    import runpy, sys

    sys.argv = ["flows.train_yolox", *sys.argv[1:]]
    runpy.run_module("flows.train_yolox", run_name="__main__", alter_sys=True)
''')

SITECUSTOMIZE = textwrap.dedent('''
    import os

    if os.environ.get("PARK_AT_STEP") and os.environ.get("RANK") == os.environ.get("PARK_RANK"):
        exec(compile(open(os.environ["PARK_CODE"]).read(), os.environ["PARK_CODE"], "exec"))
''')


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "TORCHELASTIC"))}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "PREFECT_HOME": str(tmp / ".prefect"),
                "COLUMNS": "200", "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
                    os.pathsep), **extra})
    return env


SIGINT_DEFAULT = [sys.executable, "-c", ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.argv[1], sys.argv[1:])")]
"""Prefix of a command whose SIGINT is handled as in a terminal's foreground job. A test run started in the
background of a non-interactive shell (``cmd &``, some CI runners) inherits SIGINT ignored, Python keeps an
ignored SIGINT ignored, and Ctrl-C could not be simulated (``preexec_fn`` is unsafe with threads)."""


def _wait_for(marker: Path, proc: subprocess.Popen[Any], log: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not marker.exists():
        assert proc.poll() is None, log.read_text()[-4000:]
        assert time.time() < deadline, f"never reached the parked step:\n{log.read_text()[-4000:]}"
        time.sleep(0.2)


def _finish(proc: subprocess.Popen[Any], log: Path, timeout: float = 300) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"did not stop:\n{log.read_text()[-4000:]}") from None


def _signal_when_parked(cmd: list[str], cwd: Path, env: dict[str, str], marker: Path, log: Path, signum: int,
                        to_group: bool = False, park_timeout: float = 300) -> int:
    """``cmd`` started in its own session, its output in ``log``; once it is parked (``marker`` written),
    ``signum`` to it (to its whole process group with ``to_group``: what Ctrl-C in a terminal does); its exit
    code. Whatever is left of its session is SIGKILLed (a process that died by a signal leaves its children
    behind: Prefect's ephemeral API server outlived the flow's process)."""
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            _wait_for(marker, proc, log, timeout=park_timeout)
            (os.killpg if to_group else os.kill)(proc.pid, signum)
            return _finish(proc, log)
        finally:
            with contextlib.suppress(ProcessLookupError):     # the group is gone once its last member is
                os.killpg(proc.pid, signal.SIGKILL)


def _last_lines(log: Path, n: int = 2) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.strip()][-n:]


def test_ctrl_c_mid_epoch_then_yolox_train_resume_gives_the_uninterrupted_weights(prepared_subset: Path,
                                                                                  tmp_path: Path) -> None:
    """SIGINT to the process group of ``yolox train`` (what Ctrl-C in a terminal does: the training
    process and its data-loader worker) in the middle of epoch 2: exit 130 with the checkpoint and the
    resume command; that command, run as printed, ends with the weights, EMA, momentum and per-epoch losses
    of an uninterrupted ``yolox train``."""
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(tiny_params(workers=1).model_dump(mode="json")))   # 3 epochs x 3 steps
    (tmp_path / "driver.py").write_text(CLI_DRIVER)
    ref_out, out, marker = tmp_path / "uninterrupted", tmp_path / "interrupted", tmp_path / "parked"
    args = ["train", "--params", str(params_file), "--prepared", str(prepared_subset)]
    env = _env(tmp_path)
    ref_log, log = tmp_path / "ref.log", tmp_path / "interrupted.log"
    with open(ref_log, "w") as ref_file:
        reference = subprocess.Popen([YOLOX, *args, "--out", str(ref_out)], cwd=tmp_path, env=env, stdout=ref_file,
                                     stderr=subprocess.STDOUT)
    victim = [*SIGINT_DEFAULT, sys.executable, "driver.py", *args, "--out", str(out)]
    code = _signal_when_parked(victim, tmp_path, {**env, "PARK_AT_STEP": "5", "PARK_MARKER": str(marker)}, marker,
                               log, signal.SIGINT, to_group=True)
    assert code == 130, log.read_text()[-4000:]
    text = log.read_text()
    assert "SIGINT: finishing the current step, then saving a checkpoint" in text and "Traceback" not in text
    interrupted, resume = _last_lines(log)
    assert interrupted == f"interrupted by SIGINT: resumable checkpoint {out / 'last.pth'} (epoch 2/3, step 2/3)"
    assert resume == f"resume with: yolox {shlex.join(args)} --out {out} --resume"
    state = checkpoint(out / "last.pth")
    assert (state["epoch"], state["epoch_step"], state["iteration"]) == (1, 2, 5)   # the parked step finished
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "last.pth", "run.json"]

    command = shlex.split(resume.removeprefix("resume with: "))
    resumed = subprocess.run([YOLOX, *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed mid-epoch: epoch 2 goes on after its step 2/3" in resumed.stderr
    assert reference.wait(timeout=300) == 0, ref_log.read_text()[-4000:]

    want, got = checkpoint(ref_out / "last.pth"), checkpoint(out / "last.pth")
    assert (got["epoch"], got["iteration"], got["ema_updates"]) == (3, 9, 9)
    assert_same_run(want, got)


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, created once (its schema migrations take seconds); tests copy it."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def _pipeline_project(coco128_dir: Path, tmp: Path, mlflow_db: Path) -> Path:
    """A project folder: a 16-image YOLO dataset, tiny pipeline params (2 epochs x 3 steps), an MLflow store."""
    shutil.copy(mlflow_db, tmp / "mlflow.db")
    make_yolo_subset(coco128_dir, tmp / "raw", n=16)
    params = tiny_params(epochs=2, no_aug_epochs=1).model_dump(mode="json")
    params["data"] = {"source": str(tmp / "raw"), "val_fraction": 0.25}
    params["tracking"] = {"experiment": "interrupt", "registered_model": "yolox-interrupt"}
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp / "params.yaml"


def _mlflow_runs(tmp: Path) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("interrupt")
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_sigterm_to_yolox_pipeline_during_training(coco128_dir: Path, mlflow_db: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM to ``yolox pipeline`` (here: this process, from inside its second training step) while it
    trains: the step finishes, the checkpoint is saved, the MLflow run ends KILLED tagged with the stage,
    and the command exits 143 saying how to finish the training."""
    _pipeline_project(coco128_dir, tmp_path, mlflow_db)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    signal_at_step(monkeypatch, signal.SIGTERM, 2)
    handler = signal.getsignal(signal.SIGTERM)
    code, stderr = yolox_stderr(["pipeline", "--params", "params.yaml"], capsys, monkeypatch)
    assert code == 143, stderr[-4000:]
    (run,) = _mlflow_runs(tmp_path)
    run_dir = run.data.tags["run_dir"]            # the run's own folder: runs/pipeline/<time>-<hex>
    assert Path(run_dir).parent == Path("runs/pipeline")
    assert stderr.splitlines()[-2:] == [
        f"interrupted by SIGTERM: resumable checkpoint {run_dir}/train/last.pth (epoch 1/2, step 2/3)",
        f"resume with: yolox train --params params.yaml --prepared {run_dir}/data --out {run_dir}/train --resume"]
    assert run.info.status == "KILLED" and run.data.tags["failed_stage"] == "train"
    assert run.data.tags["failure"] == ("Interrupted: interrupted by SIGTERM: resumable checkpoint "
                                        f"{run_dir}/train/last.pth (epoch 1/2, step 2/3)")
    state = checkpoint(tmp_path / run_dir / "train" / "last.pth")
    assert (state["epoch"], state["epoch_step"], state["mlflow_run_id"]) == (0, 2, run.info.run_id)
    assert signal.getsignal(signal.SIGTERM) == handler                        # the CLI gave it back


def test_sigterm_to_the_prefect_flow_run_during_training(coco128_dir: Path, mlflow_db: Path, tmp_path: Path) -> None:
    """SIGTERM to the process running the flow train-yolox (no cancellation requested through the API):
    the trainer saves its checkpoint, the MLflow run ends KILLED, the task and flow runs end Crashed, the
    flow's log says how to resume, and the process ends by SIGTERM as Prefect's own handler has it."""
    _pipeline_project(coco128_dir, tmp_path, mlflow_db)
    (tmp_path / "driver.py").write_text(FLOW_DRIVER)
    marker, log = tmp_path / "parked", tmp_path / "flow.log"
    env = _env(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    code = _signal_when_parked([sys.executable, "driver.py", "params.yaml"], tmp_path,
                               {**env, "PARK_AT_STEP": "2", "PARK_MARKER": str(marker)}, marker, log,
                               signal.SIGTERM, park_timeout=400)
    assert code in (-signal.SIGTERM, 128 + signal.SIGTERM), log.read_text()[-4000:]
    (run,) = _mlflow_runs(tmp_path)
    state = checkpoint(tmp_path / run.data.tags["run_dir"] / "train" / "last.pth")
    assert (state["epoch"], state["epoch_step"]) == (0, 2)
    assert run.info.status == "KILLED" and run.data.tags["failed_stage"] == "train"

    with sqlite3.connect(tmp_path / ".prefect" / "prefect.db") as db:
        flows = db.execute("SELECT state_type FROM flow_run").fetchall()
        tasks = dict(db.execute("SELECT name, state_type FROM task_run").fetchall())
        messages = [m for (m,) in db.execute("SELECT message FROM log").fetchall()]
    assert flows == [("CRASHED",)]
    assert {name.split("-")[0]: s for name, s in tasks.items() if name.startswith("train")} == {"train": "CRASHED"}
    run_dir = run.data.tags["run_dir"]
    assert any(f"Resume the training with: yolox train --params params.yaml --prepared {run_dir}/data --out "
               f"{run_dir}/train --resume" in m for m in messages), messages


def test_ctrl_c_to_yolox_train_with_torchrun_stops_every_rank_at_the_same_step(prepared_subset: Path,
                                                                               tmp_path: Path) -> None:
    """``yolox train`` launching 2 torchrun workers (gloo, each with a data-loader worker) gets SIGINT: it
    stops the job with SIGTERM (``yolox.train.launch``), the agent passes it to the workers (and to their
    loader workers, which ignore it); rank 0, parked in step 3, finishes it with rank 1, both agree to stop
    there and rank 0 alone writes the checkpoint; the workers exit 143, ``yolox train`` 130 with the resume
    command."""
    params = tiny_params(epochs=2, no_aug_epochs=1, max_iters_per_epoch=2, batch_size=4, workers=1)
    raw = params.model_dump(mode="json")
    raw["train"]["distributed"] = {"launcher": "torchrun", "nproc_per_node": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "park.py").write_text(PARK)
    marker, log, out = tmp_path / "parked", tmp_path / "train.log", tmp_path / "out"
    env = _env(tmp_path, PARK_AT_STEP="3", PARK_RANK="0", PARK_MARKER=str(marker), PARK_CODE=str(tmp_path / "park.py"))
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    cmd = [*SIGINT_DEFAULT, YOLOX, "train", "--params", "params.yaml", "--prepared", str(prepared_subset),
           "--out", "out"]
    code = _signal_when_parked(cmd, tmp_path, env, marker, log, signal.SIGINT)
    assert code == 130, log.read_text()[-6000:]
    assert _last_lines(log) == [
        "interrupted by SIGINT: resumable checkpoint out/last.pth (the launched job's last checkpoint)",
        f"resume with: yolox train --params params.yaml --prepared {prepared_subset} --out out --resume"]
    state = checkpoint(out / "last.pth")
    assert (state["epoch"], state["epoch_step"], state["iteration"], state["world_size"]) == (1, 1, 3, 2)
    worker_logs = "\n".join(p.read_text() for p in (out / "logs").rglob("*.log"))
    for rank in (0, 1):
        assert f"rank {rank}: interrupted by SIGTERM: resumable checkpoint out/last.pth (epoch 2/2, step 1/2)" \
            in worker_logs, worker_logs[-6000:]
    assert "interrupted by SIGTERM at epoch 2/2, step 1/2: saved out/last.pth" in worker_logs   # rank 0 only
    assert worker_logs.count(": saved out/last.pth") == 1
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
