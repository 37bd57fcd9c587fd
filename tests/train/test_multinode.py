"""Multi-node training on one machine (issue 12 item 2): torchrun agents with a c10d rendezvous on
127.0.0.1, gloo, as ``yolox/train/launch.py`` starts them.

- the reference: the pipeline's train stage with 1 node x 2 processes (``launch_training``: one torchrun
  agent), its epochs logged into an MLflow run by the launched rank 0;
- two "nodes": two ``yolox train`` commands (each starts its own ``torchrun --nnodes 2`` agent with
  1 process), same seed: the final checkpoint has the reference's weights;
- elastic: two agents again, with ``--max-restarts 2``; the worker of rank 1 is SIGKILLed in the middle of
  epoch 2 (the agents stay up). The agents restart both workers, which resume from the epoch-1 checkpoint
  and end with the reference's weights; rank 0 logged every epoch once into the same MLflow run.

Tiny settings: yolox-nano at 128 px from scratch, 12 + 4 coco128 images, 2 epochs of 2 iterations,
batch 4 (2 per process), workers 0, one thread per process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers.ddp import nano_named_parameters
from helpers.train import checkpoint, tiny_params

from yolox.train.launch import result_from_checkpoint, write_launch_params
from yolox.train.torchrun import free_port, torchrun_command, worker_args

EXPERIMENT = "multinode-test"
PARK_AT_STEP = 3  # epoch 2 (2 iterations each), after the epoch-1 checkpoint

# A worker that parks rank 1 at PARK_AT_STEP (the first time) and says its pid, then is the real worker.
PARKING_WORKER = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path

    from yolox.train import trainer, worker

    park_at, marker = int(os.environ["PARK_AT_STEP"]), Path(os.environ["PARK_MARKER"])
    if not marker.exists() and os.environ["RANK"] == "1":
        real_step, calls = trainer.train_step, [0]

        def parked_step(*args, **kwargs):
            calls[0] += 1
            if calls[0] == park_at:
                marker.write_text(str(os.getpid()))
                time.sleep(3600)
            return real_step(*args, **kwargs)

        trainer.train_step = parked_step
    sys.exit(worker.main(sys.argv[1:]))
''')


def _params(**distributed):
    params = tiny_params(epochs=2, no_aug_epochs=1, max_iters_per_epoch=2, batch_size=4)
    params.train.distributed = params.train.distributed.model_validate(distributed)
    params.tracking.experiment = EXPERIMENT
    return params


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                    "MASTER_", "TORCHELASTIC"))}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "PYTHONUNBUFFERED": "1"})
    return env


def _assert_weights_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    names = {n for n, _ in nano_named_parameters()}
    assert names <= a.keys() and names <= b.keys()
    for name in names:
        assert torch.equal(a[name], b[name]), f"{name} differs"


@pytest.fixture(scope="module")
def reference(prepared_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """1 node x 2 processes through the pipeline's train stage (``yolox.train.stage.train`` ->
    ``launch_training``), logging into an MLflow run: the weights the other runs must end with."""
    from mlflow.tracking import MlflowClient

    from yolox.tracking.run import MlflowRun
    from yolox.train.stage import train as train_stage

    root = tmp_path_factory.mktemp("one-node")
    out, uri = root / "out", f"sqlite:///{root / 'mlflow.db'}"
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    train_log = logging.getLogger("yolox.train")
    level = train_log.level
    train_log.addHandler(handler)
    train_log.setLevel(logging.INFO)
    old = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MLFLOW_TRACKING_URI")}
    os.environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": uri})
    cwd = Path.cwd()
    os.chdir(root)                                          # the experiment's artifacts go to ./mlartifacts
    try:
        run_id = MlflowRun(EXPERIMENT, run_name="one-node").run_id
        trained = train_stage(_params(launcher="torchrun", nproc_per_node=2), prepared_subset, out,
                              run_id=run_id)
    finally:
        os.chdir(cwd)
        train_log.removeHandler(handler)
        train_log.setLevel(level)
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert trained.epochs == 2 and trained.checkpoint == out / "last.pth" and trained.run_id == run_id
    assert any(line.startswith("[default1]:") for line in lines), "rank 1's output was not streamed"
    assert "val/AP50_95" in trained.history[-1]
    steps = [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, "train/total_loss")]
    assert sorted(steps) == [1, 2]                          # logged by the launched rank 0, once each
    state = checkpoint(out / "last.pth")
    assert state["world_size"] == 2 and state["iteration"] == 4
    result = result_from_checkpoint(out / "last.pth")
    _assert_weights_equal(result.model.state_dict(), state["model_raw"])
    return state


def test_two_torchrun_nodes_end_with_the_one_node_weights(prepared_subset: Path, reference: dict,
                                                          tmp_path: Path) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(_params().model_dump(mode="json")))
    endpoint = f"127.0.0.1:{free_port()}"
    yolox_cli = str(Path(sys.executable).with_name("yolox"))
    out = tmp_path / "out"
    nodes = []
    for node in (0, 1):
        cmd = [yolox_cli, "train", "--params", str(params_file), "--prepared", str(prepared_subset), "--out",
               str(out),
               "--set", "train.distributed.launcher=torchrun", "--set", "train.distributed.nodes=2",
               "--set", "train.distributed.nproc_per_node=1", "--set", f"train.distributed.rdzv_endpoint={endpoint}",
               "--set", "train.distributed.local_addr=127.0.0.1", "--set", "train.distributed.rdzv_id=two-nodes"]
        log = open(tmp_path / f"node{node}.log", "w")  # noqa: SIM115 - closed by the loop below
        nodes.append((subprocess.Popen(cmd, cwd=tmp_path, env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT),
                      log))
    for proc, log in nodes:
        proc.wait(timeout=300)
        log.close()
    logs = [(tmp_path / f"node{n}.log").read_text() for n in (0, 1)]
    for node, ((proc, _), text) in enumerate(zip(nodes, logs)):
        assert proc.returncode == 0, f"node {node}:\n{text[-4000:]}"
    assert "2 node(s) x 1 process(es)" in logs[0]
    state = checkpoint(out / "last.pth")
    assert state["world_size"] == 2 and state["epoch"] == 2 and state["iteration"] == 4
    _assert_weights_equal(state["model_raw"], reference["model_raw"])
    _assert_weights_equal(state["model"], reference["model"])  # the EMA too


def test_a_killed_worker_is_restarted_and_resumes_to_the_same_weights(prepared_subset: Path, reference: dict,
                                                                       tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from yolox.tracking.run import MlflowRun

    env = _env(tmp_path)
    marker = tmp_path / "parked"
    env.update({"PARK_AT_STEP": str(PARK_AT_STEP), "PARK_MARKER": str(marker)})
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    try:
        run_id = MlflowRun(EXPERIMENT, run_name="elastic").run_id
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    # 2 restarts: on a loaded machine the first restarted worker can give up connecting (gloo) before the
    # other node has restarted its own; the agents then restart once more
    params = _params(launcher="torchrun", nodes=2, nproc_per_node=1, max_restarts=2, local_addr="127.0.0.1",
                     rdzv_endpoint=f"127.0.0.1:{free_port()}")
    out = tmp_path / "out"
    params_file = write_launch_params(params, out)
    driver = tmp_path / "parking_worker.py"
    driver.write_text(PARKING_WORKER)
    nodes = []
    for node in (0, 1):
        cmd = torchrun_command(params.train.distributed,
                               [str(driver), *worker_args(params_file, prepared_subset, out, run_id)],
                               rdzv_endpoint=params.train.distributed.rdzv_endpoint, rdzv_id="elastic",
                               nproc_per_node=1, log_dir=tmp_path / f"logs{node}", node_rank=node)
        log = open(tmp_path / f"node{node}.log", "w")  # noqa: SIM115 - closed by the loop below
        nodes.append((subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True), log))
    try:
        _kill_and_wait(nodes, marker, out)
    finally:
        _stop(nodes)
    logs = [(tmp_path / f"node{n}.log").read_text() for n in (0, 1)]
    for node, ((proc, _), text) in enumerate(zip(nodes, logs)):
        assert proc.returncode == 0, f"node {node}:\n{text[-4000:]}"
    both = "\n".join(logs)
    assert "failed (exitcode: -9)" in both                 # the agent saw its worker killed
    assert "resumed from" in both and "at epoch 1" in both

    state = checkpoint(out / "last.pth")
    assert state["epoch"] == 2 and state["iteration"] == 4 and state["mlflow_run_id"] == run_id
    _assert_weights_equal(state["model_raw"], reference["model_raw"])
    _assert_weights_equal(state["model"], reference["model"])
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    steps = [m.step for m in client.get_metric_history(run_id, "train/total_loss")]
    assert sorted(steps) == [1, 2], steps                  # every epoch once, in the same run
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert len(client.search_runs([exp.experiment_id])) == 1


def _kill_and_wait(nodes: list, marker: Path, out: Path) -> None:
    """SIGKILL the parked worker of rank 1 once it says its pid; wait for both agents to end."""
    deadline = time.monotonic() + 240
    while not marker.is_file() and time.monotonic() < deadline and all(p.poll() is None for p, _ in nodes):
        time.sleep(0.2)
    assert marker.is_file(), "rank 1 never reached its parking step"
    time.sleep(0.2)
    victim = int(marker.read_text())
    assert victim not in {p.pid for p, _ in nodes}        # a worker, not an agent
    assert checkpoint(out / "last.pth")["epoch"] == 1     # killed mid-epoch 2
    os.kill(victim, signal.SIGKILL)
    for proc, log in nodes:
        proc.wait(timeout=300)


def _stop(nodes: list) -> None:
    for proc, log in nodes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
