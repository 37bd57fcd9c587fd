"""The one letterbox: the authors' inference preprocessing, shared by training-val, eval, predict,
the export check and serving (REFERENCE.md, "Inference preprocessing of the released weights").

An image (H, W, 3) uint8 BGR is resized by ``r = min(size_h / H, size_w / W)`` to
``(int(W * r), int(H * r))`` with bilinear interpolation (``cv2.INTER_LINEAR``) and placed at the
TOP-LEFT corner of a (size_h, size_w, 3) canvas filled with 114. Boxes map to the letterboxed image by
multiplying by ``r`` (no offset) and back by dividing by ``r``. The network input is that canvas in
BGR 0-255 as float32, channels first, without normalisation.

The training pipeline uses the same pieces (:func:`letterbox_scale`, :func:`resize_to_fit`,
:func:`pad_to`) for its non-mosaic path, where the horizontal flip sits between resize and padding
(as in the authors' training transform).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

PAD_VALUE = 114
"""Fill value of the letterbox canvas (all three channels)."""


def _size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def check_letterbox_input(img: np.ndarray) -> None:
    """Raise ValueError unless ``img`` is an (H, W, 3) uint8 array (what the letterbox takes)."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f"letterbox expects an (H, W, 3) uint8 BGR image, got {got}")


def letterbox_scale(h: int, w: int, size: int | tuple[int, int]) -> float:
    """The letterbox scale ``r = min(size_h / h, size_w / w)`` of an (h, w) image (pixels -> pixels)."""
    size_h, size_w = _size_hw(size)
    return min(size_h / h, size_w / w)


def resize_to_fit(img: np.ndarray, size: int | tuple[int, int], r: float | None = None
                  ) -> tuple[np.ndarray, float]:
    """Resize (H, W, 3) uint8 to ``(int(H * r), int(W * r))`` with ``cv2.INTER_LINEAR``, no padding.

    Args:
        img: (H, W, 3) uint8 BGR.
        size: target side, or (size_h, size_w), in pixels.
        r: the scale to use; default :func:`letterbox_scale` of ``img`` (pass it when ``img`` was decoded
            at a reduced resolution but boxes refer to the full-resolution image).

    Returns:
        The resized (int(H*r), int(W*r), 3) uint8 image (``img`` itself when the size is unchanged) and r.
    """
    h, w = img.shape[:2]
    if r is None:
        r = letterbox_scale(h, w, size)
    new_w, new_h = max(int(w * r), 1), max(int(h * r), 1)
    if (new_w, new_h) == (w, h):
        return img, r
    return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR), r


def pad_to(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Place (h, w, 3) uint8 at the top-left of a (size_h, size_w, 3) canvas filled with 114.

    ``img`` must fit (h <= size_h, w <= size_w). Returns a new array.
    """
    size_h, size_w = _size_hw(size)
    h, w = img.shape[:2]
    canvas = np.full((size_h, size_w, 3), PAD_VALUE, np.uint8)
    canvas[:h, :w] = img
    return canvas


def letterbox(img: np.ndarray, size: int | tuple[int, int]) -> tuple[np.ndarray, float]:
    """The authors' letterbox: bilinear resize by r, top-left on a 114 canvas.

    Args:
        img: (H, W, 3) uint8 BGR, as read by ``cv2.imread``.
        size: output side, or (size_h, size_w), in pixels.

    Returns:
        ``(canvas, r)``: canvas (size_h, size_w, 3) uint8 BGR (a new array); r = min(size_h / H, size_w / W),
        so a box in original pixels maps to ``box * r`` in canvas pixels.

    Raises:
        ValueError: ``img`` is not an (H, W, 3) uint8 array.
    """
    check_letterbox_input(img)
    resized, r = resize_to_fit(img, size)
    return pad_to(resized, size), r


def letterbox_into(img: np.ndarray, out: np.ndarray) -> float:
    """The letterbox of ``img`` written straight into a network input slot: the same values as
    ``letterbox(img, size)[0].transpose(2, 0, 1)`` as float32, without the padded canvas and its transposed copy
    (the resized image is converted to float32 channels-first in one strided copy, over the pad value).

    Args:
        img: (H, W, 3) uint8 BGR.
        out: (3, size_h, size_w) float32, written in full (e.g. ``batch[i]`` of a (B, 3, S, S) batch).

    Returns:
        r = min(size_h / H, size_w / W).

    Raises:
        ValueError: ``img`` is not an (H, W, 3) uint8 array.
    """
    check_letterbox_input(img)
    resized, r = resize_to_fit(img, out.shape[1:])
    h, w = resized.shape[:2]
    out[:, :h, w:] = PAD_VALUE
    out[:, h:] = PAD_VALUE
    out[:, :h, :w] = resized.transpose(2, 0, 1)
    return r


def to_input_tensor(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """Letterboxed images -> the network input.

    Args:
        images: (B, S_h, S_w, 3) uint8 BGR, a sequence of (S_h, S_w, 3) uint8 of one size, or a single
            (S_h, S_w, 3) image (treated as a batch of one).

    Returns:
        (B, 3, S_h, S_w) float32, contiguous, BGR 0-255 (channel order as read by cv2, no normalisation).
    """
    batch = np.asarray(images) if not isinstance(images, np.ndarray) else images
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[3] != 3:
        raise ValueError(f"to_input_tensor expects (B, H, W, 3) images, got shape {batch.shape}")
    b, h, w, _ = batch.shape
    out = torch.empty((b, 3, h, w), dtype=torch.float32)
    out.copy_(torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2))
    return out
