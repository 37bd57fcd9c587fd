"""Decoding raw head outputs to boxes in input pixels (REFERENCE.md: no +0.5 in decoding). The one copy of
the formula: inference (:func:`decode_outputs`) and the training loss (:func:`decode_boxes`) both use it."""

from __future__ import annotations

from functools import lru_cache

import torch


def anchor_points(input_hw: tuple[int, int], strides: tuple[int, ...], device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The anchor points (grid cells) of every output level, in the head's prediction order: level by level in
    ``strides`` order, row-major within a level.

    Args:
        input_hw: the network input's (height, width), pixels. strides: pixels per cell of each level
            (the model's, e.g. :data:`yolox.models.table.STRIDES`).
    Returns:
        grid: (A, 2) integer cell indices ``(col, row)`` as ``dtype``.
        stride: (A,) the stride of each anchor point (pixels), as ``dtype``.
    """
    grids, stride_list = [], []
    h, w = input_hw
    for s in strides:
        ys, xs = torch.meshgrid(torch.arange(h // s, device=device), torch.arange(w // s, device=device),
                                indexing="ij")
        grids.append(torch.stack((xs, ys), 2).reshape(-1, 2))
        stride_list.append(torch.full((grids[-1].shape[0],), s, device=device))
    return torch.cat(grids).to(dtype), torch.cat(stride_list).to(dtype)


def decode_boxes(raw_box: torch.Tensor, grid: torch.Tensor, stride: torch.Tensor) -> torch.Tensor:
    """``raw_box (..., A, 4)`` ``[x, y, log w, log h]`` grid offsets -> ``(..., A, 4)`` ``[cx, cy, w, h]`` pixels.

    ``cx = (x + col) * stride``, ``cy = (y + row) * stride``, ``w = exp(log w) * stride``,
    ``h = exp(log h) * stride``; ``grid (A, 2)`` cell indices ``(col, row)`` and ``stride (A,)`` from
    :func:`anchor_points`.
    """
    xy = (raw_box[..., :2] + grid) * stride[:, None]
    wh = torch.exp(raw_box[..., 2:4]) * stride[:, None]
    return torch.cat([xy, wh], dim=-1)


def decode_outputs(outputs: torch.Tensor, input_hw: tuple[int, int], strides: tuple[int, ...]) -> torch.Tensor:
    """Decode (B, A, 5 + C) predictions ``[x, y, log w, log h, ...]`` into ``[cx, cy, w, h, ...]`` pixels
    (:func:`decode_boxes`). Channels after the first four are passed through unchanged.
    Works on any float dtype; returns a new tensor of the same shape.
    """
    grid, stride = anchor_points(input_hw, strides, outputs.device, outputs.dtype)
    return torch.cat([decode_boxes(outputs[..., :4], grid, stride), outputs[..., 4:]], dim=-1)


@lru_cache(maxsize=32)
def cached_anchor_points(input_hw: tuple[int, int], strides: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`anchor_points` on the CPU as float32, built once per (input size, strides):
    ``grid (A, 2)`` cells ``(col, row)``, ``stride (A,)`` pixels. Shared between calls: index them, never write."""
    return anchor_points((int(input_hw[0]), int(input_hw[1])), tuple(int(s) for s in strides))
