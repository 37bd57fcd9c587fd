"""Devices and torch.distributed setup (torchrun: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

NCCL on CUDA devices, gloo on CPU. One process per device; metrics and checkpoints from rank 0 only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from yolox.errors import ConfigError

log = logging.getLogger("yolox.train")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False
    """True when :func:`init_distributed` created the process group (and :func:`cleanup` ends it)."""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def select_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else CPU; ``cpu``, ``cuda``, ``cuda:N``.

    Raises:
        ConfigError: CUDA asked for but not available, or an unknown spec.
    """
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={spec!r} but no CUDA GPU is available here (use 'auto' or 'cpu')")
        return torch.device(spec if ":" in spec else f"cuda:{local_rank}")
    raise ConfigError(f"train.device={spec!r}: allowed 'auto', 'cpu', 'cuda', 'cuda:N'")


def select_backend(spec: str, device: torch.device) -> str:
    """``auto`` -> ``nccl`` on a CUDA device, ``gloo`` otherwise; ``gloo`` or ``nccl`` as given.

    Raises:
        ConfigError: ``nccl`` asked for on a CPU device.
    """
    if spec == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if spec == "nccl" and device.type != "cuda":
        raise ConfigError(f"train.distributed.backend='nccl' needs CUDA devices, this process trains on {device}: "
                          "use 'auto' or 'gloo'")
    return spec


def init_distributed(device_spec: str = "auto", backend: str = "auto") -> DistContext:
    """Join the torchrun job if the environment describes one (``WORLD_SIZE`` > 1, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), else a single-process context. A process group
    that already exists (the caller's) is used as it is. ``backend``: see :func:`select_backend`."""
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    else:
        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_spec, local_rank)
    owns = False
    if world > 1 and not dist.is_initialized():
        name = select_backend(backend, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=name)
        owns = True
        log.info("distributed: rank %d/%d on %s (%s)", rank, world, device, name)
    return DistContext(rank, world, local_rank, device, owns)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def cleanup(ctx: DistContext) -> None:
    """End the process group if :func:`init_distributed` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
