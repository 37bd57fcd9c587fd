"""Letterbox (yolox/ops/letterbox.py) on real coco128 images: the authors' top-left letterbox, computed by
hand, and the input tensor (BGR, 0-255, no normalisation)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from yolox.data.records import DetectionDataset
from yolox.ops.letterbox import letterbox, to_input_tensor


def test_letterbox_matches_hand_computation(coco128_dataset: DetectionDataset) -> None:
    landscape = next(r for r in coco128_dataset.records if r.width > r.height)
    portrait = next(r for r in coco128_dataset.records if r.height > r.width)
    for rec in (landscape, portrait):
        img = cv2.imread(str(rec.path))
        h, w = img.shape[:2]
        out, r = letterbox(img, 416)
        assert r == min(416 / h, 416 / w)
        nw, nh = int(w * r), int(h * r)
        assert out.shape == (416, 416, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[:nh, :nw], cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR))
        assert (out[nh:] == 114).all() and (out[:, nw:] == 114).all()
        assert nh < 416 if rec is landscape else nw < 416  # padding at the bottom / at the right

    img = cv2.imread(str(landscape.path))
    out, r = letterbox(img, (320, 480))
    assert out.shape == (320, 480, 3) and r == min(320 / img.shape[0], 480 / img.shape[1])

    boxed, _ = letterbox(img, 416)
    t = to_input_tensor(np.stack([boxed, boxed]))
    assert t.shape == (2, 3, 416, 416) and t.dtype == torch.float32 and t.is_contiguous()
    for c in range(3):  # BGR kept, 0-255, no normalisation
        np.testing.assert_array_equal(t[1, c].numpy(), boxed[..., c].astype(np.float32))
