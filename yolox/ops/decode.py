"""Decoding raw head outputs to boxes in input pixels (REFERENCE.md: no +0.5 in decoding)."""

from __future__ import annotations

import torch

from yolox.models.head import anchor_points


def decode_outputs(outputs: torch.Tensor, input_hw: tuple[int, int],
                   strides: tuple[int, ...] = (8, 16, 32)) -> torch.Tensor:
    """Decode (B, A, 5 + C) predictions ``[x, y, log w, log h, ...]`` into ``[cx, cy, w, h, ...]`` pixels.

    ``cx = (x + col) * stride``, ``cy = (y + row) * stride``, ``w = exp(log w) * stride``,
    ``h = exp(log h) * stride``. Channels after the first four are passed through unchanged.
    Works on any float dtype; returns a new tensor of the same shape.
    """
    grid, stride = anchor_points(input_hw, strides, outputs.device, outputs.dtype)
    xy = (outputs[..., :2] + grid) * stride[:, None]
    wh = torch.exp(outputs[..., 2:4]) * stride[:, None]
    return torch.cat([xy, wh, outputs[..., 4:]], dim=-1)
