"""Drawing detections (yolox/ops/draw.py): a filled label in the class colour above the box, its text in black
or white (whichever contrasts), reading 'name score', growing with the image; the input left alone."""

from __future__ import annotations

import numpy as np
import pytest

from yolox.models.coco_classes import COCO_CLASSES
from yolox.ops.draw import class_color, draw, text_color
from yolox.ops.nms import Detections

NAMES = list(COCO_CLASSES)


def _label_band(drawn: np.ndarray, color: tuple[int, int, int], x: int, top: int) -> int:
    """Rows of the filled label background above row ``top`` at column ``x`` (pixels of exactly ``color``)."""
    rows = 0
    while top - rows - 1 >= 0 and tuple(drawn[top - rows - 1, x]) == color:
        rows += 1
    return rows


@pytest.mark.parametrize("label", [0, 23, 41])   # person, giraffe, cup: light and dark class colours
def test_labels_are_readable(label: int) -> None:
    """Filled label in the class colour above the box, text in black or white (whichever contrasts), reading
    'name score'; the label grows with the image."""
    heights = []
    for side in (320, 1280):
        img = np.full((side * 3 // 4, side, 3), 128, np.uint8)
        box = np.array([[side * 0.2, side * 0.3, side * 0.6, side * 0.7]], np.float32)
        drawn = draw(img, Detections(box, np.array([0.87], np.float32), np.array([label])), NAMES)
        color = class_color(label)
        x0, y0 = round(box[0, 0]), round(box[0, 1])
        band = _label_band(drawn, color, x0, y0)
        assert band >= 8
        width = int(np.argmin((drawn[y0 - band, x0:] == color).all(1)))   # the label's top edge
        patch = drawn[y0 - band:y0, x0:x0 + width]
        assert width > 2.5 * band and (patch == color).all(2).mean() > 0.6  # filled (not an outline)
        text = text_color(color)
        near = np.abs(patch.astype(int) - text).sum(2) < np.abs(patch.astype(int) - color).sum(2)
        assert near.sum() > 4 * band                               # the text, in the contrasting colour
        lum = [0.299 * c[2] + 0.587 * c[1] + 0.114 * c[0] for c in (color, text)]
        assert abs(lum[0] - lum[1]) > 90
        heights.append(band)
        assert (img == 128).all()                                   # the input is left alone
    assert heights[1] > 2.5 * heights[0]
    # the text says 'name score': OpenCV draws the same string at the same place
    side = 320
    img = np.full((240, side, 3), 128, np.uint8)
    box = np.array([[64, 96, 192, 224]], np.float32)
    a = draw(img, Detections(box, np.array([0.87], np.float32), np.array([label])), NAMES)
    b = draw(img, Detections(box, np.array([0.12], np.float32), np.array([label])), NAMES)
    assert (a != b).any()                                           # another score, other text
