"""Decoding the head's raw outputs (yolox/ops/decode.py): the authors' formula, cell by cell, with no +0.5."""

from __future__ import annotations

import math

import pytest
import torch

from yolox.models.table import STRIDES
from yolox.ops.decode import decode_outputs


def test_decode_outputs_matches_the_reference_formula() -> None:
    # 64 x 96 input: stride 8 -> 8 rows x 12 cols, stride 16 -> 4 x 6, stride 32 -> 2 x 3 (row-major)
    A = 8 * 12 + 4 * 6 + 2 * 3
    raw = torch.zeros(1, A, 7)
    raw[..., 4:] = torch.rand(1, A, 3)
    a8 = 1 * 12 + 2               # stride 8, row 1, col 2
    a16 = 96 + 2 * 6 + 3          # stride 16, row 2, col 3
    a32 = 96 + 24 + 1 * 3 + 2     # stride 32, row 1, col 2
    raw[0, a8, :4] = torch.tensor([0.25, 0.75, math.log(2.0), 0.0])
    raw[0, a16, :4] = torch.tensor([0.0, 0.0, 0.0, math.log(0.5)])
    raw[0, a32, :4] = torch.tensor([-0.5, 1.5, math.log(3.0), math.log(1.5)])
    out = decode_outputs(raw, (64, 96), STRIDES)
    assert out.shape == raw.shape
    # cx = (x + col) * s, cy = (y + row) * s, w = exp(log w) * s -- no +0.5
    assert out[0, a8, :4].tolist() == pytest.approx([(0.25 + 2) * 8, (0.75 + 1) * 8, 16, 8])
    assert out[0, a16, :4].tolist() == pytest.approx([3 * 16, 2 * 16, 16, 8])
    assert out[0, a32, :4].tolist() == pytest.approx([(-0.5 + 2) * 32, (1.5 + 1) * 32, 96, 48])
    assert out[0, 0, :4].tolist() == pytest.approx([0, 0, 8, 8])            # cell (0, 0): no +0.5
    assert torch.equal(out[..., 4:], raw[..., 4:])                          # passed through
    assert decode_outputs(raw.double(), (64, 96), STRIDES).dtype == torch.float64
