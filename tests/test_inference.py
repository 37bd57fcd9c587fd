"""Detection through a backend (yolox/inference.py): boxes decoded in the letterboxed canvas and mapped back
to the image by the letterbox ratio, unclipped (the authors' evaluation protocol; ``yolox predict`` clips
them: tests/serve/test_predict_sources.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from yolox.inference import detect

SIZE = 416


class _StubBackend:
    """A backend returning one confident box at anchor (col 2, row 1) of stride 8, 416 input."""

    strides = (8, 16, 32)
    num_classes = 3

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        out = torch.zeros(images.shape[0], 3549, 8)
        out[:, :, 4] = 0.001
        out[:, 52 + 2, :4] = torch.tensor([-3.0, 0.5, math.log(8.0), math.log(4.0)])
        out[:, 52 + 2, 4:] = torch.tensor([0.9, 0.1, 0.95, 0.1])
        return out


def test_detect_maps_boxes_back_by_r_without_clipping() -> None:
    img = np.full((208, 104, 3), 80, np.uint8)           # r = 416 / 208 = 2
    (det,) = detect(_StubBackend(), [img], SIZE)
    assert len(det) == 1 and det.labels.tolist() == [1]
    # decoded in the canvas: cx = (-3 + 2) * 8 = -8, cy = 12, w = 64, h = 32 -> xyxy [-40, -4, 24, 28] / 2
    assert det.boxes[0].tolist() == pytest.approx([-20, -2, 12, 14])
    assert det.scores[0] == pytest.approx(0.9 * 0.95)
