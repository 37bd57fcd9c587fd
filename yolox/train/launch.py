"""Launch training on several processes and machines, and return what :func:`~yolox.train.trainer.train`
returns.

``train.distributed.launcher`` chooses how (``yolox/config.py``, ``DistributedParams``):

- ``none``: :func:`~yolox.train.trainer.train` in this process (it joins the torchrun job it was started
  in, if any: ``torchrun ... -m yolox.cli train``).
- ``torchrun``: this machine runs one torchrun elastic agent (``python -m yolox.train.agent``, torchrun itself) with a
  c10d rendezvous, ``nproc_per_node`` workers (:mod:`yolox.train.worker`) and ``--max-restarts``. With
  ``nodes`` > 1 the same call (``yolox train --params F``) runs on every machine: the agents meet at
  ``rdzv_endpoint``; which node gets rank 0 is the rendezvous' choice. The workers' output is streamed
  line by line (``[rank]:`` prefixed) to ``on_output`` (default: this module's logger) and kept in
  ``<out>/logs/``. The output folder must be the same shared folder on every node (rank 0 writes it).
- ``kubernetes``: a Kubeflow ``PyTorchJob`` (:mod:`yolox.train.k8s`) of ``nodes`` pods, submitted and
  watched until it ends.

Elastic: a worker that dies (killed, out of memory, a lost node) makes the agents restart every worker,
up to ``max_restarts`` times; the restarted workers resume from ``<out>/last.pth`` (the trainer's exact
resume) and go on logging into the same MLflow run (``run_id``). The returned :class:`TrainResult` is read
from the final checkpoint: its history, run id, and the raw (not EMA) weights as ``model`` on the CPU.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from yolox.config import PipelineParams
from yolox.errors import CheckpointError, ConfigError, LaunchError
from yolox.files import write_text
from yolox.models.build import build_model
from yolox.train.checkpoint import load_checkpoint
from yolox.train.k8s import run_pytorchjob
from yolox.train.torchrun import (
    WORKER,
    clear_run_state,
    free_port,
    processes_per_node,
    rendezvous_id,
    torchrun_command,
    worker_args,
)
from yolox.train.trainer import EpochCallback, TrainResult, train

log = logging.getLogger("yolox.train")


OutputCallback = Callable[[str], None]
"""Called with each line (without its newline) the agent and its workers print."""


def launch_training(params: PipelineParams, prepared_dir: str | Path, output_dir: str | Path | None = None, *,
                    resume: bool = False, run_id: str | None = None, on_epoch_end: EpochCallback | None = None,
                    on_output: OutputCallback | None = None, progress: bool = True,
                    env: dict[str, str] | None = None) -> TrainResult:
    """Train as ``params.train.distributed`` says (module docstring) and return the trainer's result.

    Args:
        params: all params; ``train.distributed`` chooses the launcher.
        prepared_dir: the prepared dataset (every node must see it at this path).
        output_dir: checkpoints (default ``params.train.output_dir``), shared by the nodes.
        resume: continue from ``<output_dir>/last.pth`` (a retried pipeline task).
        run_id: the MLflow run the epochs are logged into (by rank 0 of a launched job; the caller
            gives ``on_epoch_end`` for in-process training only: launched workers log themselves).
        on_epoch_end: launcher ``none`` only (see :func:`~yolox.train.trainer.train`).
        on_output: each line the torchrun agent and its workers print (default: logged at INFO).
        progress: the in-process trainer's progress bar (launched workers log one line per epoch).
        env: extra environment of the agent and its workers.

    Returns:
        :class:`TrainResult`; for a launched job, read from ``<output_dir>/last.pth`` (``model``: the raw
        weights on the CPU; ``seconds``: wall time of the launch).

    Raises:
        LaunchError: the job failed (exit status and where the logs are) or could not start.
        ConfigError, CheckpointError, DataError: as :func:`~yolox.train.trainer.train`.
    """
    dp = params.train.distributed
    out = Path(output_dir or params.train.output_dir)
    if dp.launcher == "none":
        return train(params, prepared_dir, out, resume=resume, on_epoch_end=on_epoch_end, progress=progress,
                     run_id=run_id)
    if on_epoch_end is not None:
        raise ConfigError(f"train.distributed.launcher={dp.launcher!r}: the workers log their epochs to the MLflow "
                          "run themselves (give run_id), on_epoch_end is for in-process training only")
    start = time.time()
    if dp.launcher == "kubernetes":
        run_pytorchjob(params, prepared_dir, out, resume=resume, run_id=run_id, on_output=on_output)
    else:
        run_torchrun(params, prepared_dir, out, resume=resume, run_id=run_id, on_output=on_output, env=env)
    return result_from_checkpoint(out / "last.pth", time.time() - start)


def write_launch_params(params: PipelineParams, output_dir: Path) -> Path:
    """Write the params every worker reads, as one YAML file ``<output_dir>/launch/params.yaml``, atomically
    (:func:`yolox.files.write_text`); returns its path."""
    path = output_dir / "launch" / "params.yaml"
    return write_text(path, yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))


def run_torchrun(params: PipelineParams, prepared_dir: str | Path, output_dir: Path, *, resume: bool = False,
                 run_id: str | None = None, on_output: OutputCallback | None = None,
                 env: dict[str, str] | None = None, worker: Sequence[str] = WORKER) -> None:
    """Run this node's torchrun agent until the job ends; stream its output.

    Raises:
        LaunchError: torchrun exited with a non-zero status (after its restarts), or did not start.
    """
    dp = params.train.distributed
    output_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        clear_run_state(output_dir)
    params_file = write_launch_params(params, output_dir)
    endpoint = dp.rdzv_endpoint or f"127.0.0.1:{free_port()}"
    log_dir = output_dir / "logs"
    cmd = torchrun_command(dp, [*worker, *worker_args(params_file, prepared_dir, output_dir, run_id)],
                           rdzv_endpoint=endpoint, rdzv_id=rendezvous_id(dp, output_dir),
                           nproc_per_node=processes_per_node(dp), log_dir=log_dir)
    log.info("torchrun: %d node(s) x %d process(es), rendezvous %s, max %d restarts", dp.nodes,
             processes_per_node(dp), endpoint, dp.max_restarts)
    code = stream_process(cmd, on_output or _log_line, {**_clean_env(), "PYTHONUNBUFFERED": "1", **(env or {})})
    if code != 0:
        raise LaunchError(f"torchrun exited with status {code} after up to {dp.max_restarts} restarts; "
                          f"the workers' logs are in {log_dir}")


def stream_process(cmd: Sequence[str], on_line: OutputCallback, env: dict[str, str],
                   cwd: str | Path | None = None) -> int:
    """Run ``cmd`` in its own process group, give each output line (stdout and stderr) to ``on_line``,
    return its exit status. Interrupted (Ctrl-C, a cancelled task), the whole group is stopped (SIGTERM,
    then SIGKILL after 30 s) before the exception goes on.

    Raises:
        LaunchError: the command cannot be started.
    """
    try:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1, env=env, cwd=cwd, start_new_session=True)
    except OSError as err:
        raise LaunchError(f"cannot start {cmd[0]}: {err}") from None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
        return proc.wait()
    except BaseException:
        _stop_group(proc)
        raise


def _stop_group(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _log_line(line: str) -> None:
    log.info("%s", line)


def _clean_env() -> dict[str, str]:
    """This process's environment without the variables of a torchrun job it may itself be part of."""
    job = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR",
           "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_MAX_RESTARTS")
    return {k: v for k, v in os.environ.items() if k not in job}


def result_from_checkpoint(path: Path, seconds: float = 0.0) -> TrainResult:
    """The :class:`TrainResult` of a finished run, from its ``last.pth`` (``model``: raw weights, CPU).

    Raises:
        CheckpointError: no checkpoint there (the job ended without writing one).
    """
    if not path.is_file():
        raise CheckpointError(f"{path} not found: the training job ended without a checkpoint")
    state = load_checkpoint(path)
    model = build_model(state["model_name"], len(state["names"]))
    model.load_state_dict(state["model_raw"])
    return TrainResult(path, path.parent, state["model_name"], int(state["input_size"]), list(state["names"]),
                       int(state["epoch"]), list(state.get("history", [])), seconds, state.get("mlflow_run_id"),
                       model)
