"""Shared by the distributed-training tests (one node, several nodes)."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def nano_named_parameters() -> Iterator[tuple[str, torch.nn.Parameter]]:
    """The named parameters of a fresh yolox-nano (80 classes): the names the ranks' weights are compared on
    (parameters only: BatchNorm running statistics stay per rank, ``broadcast_buffers=False``)."""
    from yolox.models.build import build_model

    return build_model("yolox-nano", 80).named_parameters()
