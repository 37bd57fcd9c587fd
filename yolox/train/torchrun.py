"""The torchrun command a training launch runs: the elastic agent, its workers and their rendezvous. Used by the
launcher on this machine (:mod:`yolox.train.launch`) and by the Kubernetes PyTorchJob's pods (:mod:`yolox.train.k8s`).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from yolox.config import DistributedParams
from yolox.train import agent as agent_module
from yolox.train import worker as worker_module

log = logging.getLogger("yolox.train")

WORKER = ("-m", worker_module.__name__)
"""The training process torchrun starts (:mod:`yolox.train.worker`; imported here so that the code lineage
of the train stage, :func:`yolox.lineage.stage_code`, includes it)."""


TORCHRUN = (sys.executable, "-m", agent_module.__name__)
"""torchrun's elastic agent with a fresh rendezvous store per round (:mod:`yolox.train.agent`)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for a one-node rendezvous)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def processes_per_node(dp: DistributedParams) -> int:
    """``nproc_per_node``, or one per visible CUDA GPU (1 without a GPU)."""
    if dp.nproc_per_node is not None:
        return dp.nproc_per_node
    return max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else 1


def rendezvous_id(dp: DistributedParams, output_dir: str | Path) -> str:
    """``rdzv_id``, or one derived from the output folder's name (the same on every node)."""
    if dp.rdzv_id:
        return dp.rdzv_id
    return "yolox-" + hashlib.sha256(Path(output_dir).name.encode()).hexdigest()[:12]


def worker_args(params_file: str | Path, prepared_dir: str | Path, output_dir: str | Path,
                run_id: str | None = None) -> list[str]:
    """The arguments of :mod:`yolox.train.worker` after its module name."""
    args = ["--params", str(params_file), "--prepared", str(prepared_dir), "--out", str(output_dir)]
    if run_id:
        args += ["--run-id", run_id]
    return args


def clear_run_state(output_dir: Path) -> None:
    """Before a launch that is not a resume: remove ``last.pth`` and ``run.json`` of an earlier run, since
    every worker of a launched job continues from ``last.pth`` when it exists (:mod:`yolox.train.worker`)."""
    for name in ("last.pth", "run.json"):
        path = output_dir / name
        if path.is_file():
            log.info("new run: removing %s of an earlier run (resume keeps it)", path)
            path.unlink()


def torchrun_command(dp: DistributedParams, worker: Sequence[str], *, rdzv_endpoint: str, rdzv_id: str,
                     nproc_per_node: int, log_dir: str | Path | None = None, node_rank: int | None = None,
                     torchrun: Sequence[str] = TORCHRUN) -> list[str]:
    """The command line of one node's torchrun agent.

    Args:
        dp: ``nodes``, ``max_restarts``, ``local_addr``, ``join_timeout_s`` are read.
        worker: what each worker runs, e.g. ``["-m", "yolox.train.worker", "--params", ...]`` or a script
            path and its arguments.
        rdzv_endpoint: ``host:port`` of the c10d rendezvous (the same on every node).
        rdzv_id: the job's rendezvous id (the same on every node).
        nproc_per_node: workers on this node.
        log_dir: where torchrun keeps each worker's stdout/stderr (``--tee 3``; the console gets them
            too, prefixed ``[rank]:``).
        node_rank: this node's ``--node-rank`` (informative with c10d: ranks come from the rendezvous).
        torchrun: the torchrun executable (default this interpreter's :mod:`yolox.train.agent`).
    """
    cmd = [*torchrun, "--nnodes", str(dp.nodes), "--nproc-per-node", str(nproc_per_node),
           "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint, "--rdzv-id", rdzv_id,
           "--rdzv-conf", f"join_timeout={dp.join_timeout_s}", "--max-restarts", str(dp.max_restarts),
           "--monitor-interval", "0.5"]
    if node_rank is not None:
        cmd += ["--node-rank", str(node_rank)]
    if dp.local_addr:
        cmd += ["--local-addr", dp.local_addr]
    if log_dir is not None:
        cmd += ["--log-dir", str(log_dir), "--tee", "3"]
    return [*cmd, *worker]
