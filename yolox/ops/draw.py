"""Drawing detections on an image: boxes and labels in a colour per class (``yolox predict``'s pictures and the
example-detection plots logged to MLflow)."""

from __future__ import annotations

import colorsys
from functools import lru_cache

import cv2
import numpy as np

from yolox.ops.nms import Detections


@lru_cache(maxsize=1024)
def class_color(label: int) -> tuple[int, int, int]:
    """The BGR colour of class ``label``: hues spread by the golden ratio (neighbouring classes differ), bright and
    saturated."""
    r, g, b = colorsys.hsv_to_rgb((int(label) * 0.618033988749895) % 1.0, 0.75, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def text_color(bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with the background ``bgr`` (its relative luminance)."""
    b, g, r = bgr
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def label_style(height: int, width: int) -> tuple[float, int, int]:
    """(font scale, text thickness, box thickness) for an image of ``height`` x ``width`` pixels: the label text
    is about 2.5 % of the shorter side high (at least ~8 px), lines thicken with the image."""
    short = min(height, width)
    scale = max(0.35, short / 800)
    return scale, max(1, round(scale * 1.6)), max(1, round(short / 300))


def draw(img: np.ndarray, det: Detections, names: list[str]) -> np.ndarray:
    """A copy of ``img`` (BGR uint8 (H, W, 3)) with each detection's box and its label ``"<class name> <score>"``:
    text in black or white (:func:`text_color`) on a filled background of the class colour, above the box (inside
    it at the top edge of the image), kept inside the image; font and lines scaled to the image
    (:func:`label_style`). Boxes are xyxy in the image's pixels."""
    out = img.copy()
    h, w = out.shape[:2]
    scale, thick, line = label_style(h, w)
    font, pad = cv2.FONT_HERSHEY_SIMPLEX, max(1, round(2 * scale))
    for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
        color = class_color(label)
        x0, y0, x1, y1 = (round(v) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, line)
        text = f"{names[label]} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        bw, bh = tw + 2 * pad, th + base + 2 * pad
        lx = min(max(x0, 0), max(w - bw, 0))
        ly = y0 - bh if y0 - bh >= 0 else min(max(y0, 0), max(h - bh, 0))
        cv2.rectangle(out, (lx, ly), (lx + bw - 1, ly + bh - 1), color, cv2.FILLED)
        cv2.putText(out, text, (lx + pad, ly + pad + th), font, scale, text_color(color), thick, cv2.LINE_AA)
    return out
