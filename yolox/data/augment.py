"""The authors' training augmentation (REFERENCE.md, "Training recipe"), per sample.

Mosaic path (probability ``mosaic_prob``, while mosaic is enabled)::

    4 images (the sample + 3 random), each resized to fit S (r = min(S / h, S / w)) and placed around a
    random centre (xc, yc) in [0.5 S, 1.5 S]^2 of a 2S x 2S canvas filled with 114
      -> random affine (rotation +-degrees, scale in mosaic_scale, shear +-shear, translation
         +-translate * S) of that canvas into an S x S output (one cv2.warpAffine, the authors' matrix,
         pivot at the canvas origin); boxes: their 4 corners transformed, enclosing box, clipped
      -> MixUp (if enable_mixup, probability mixup_prob, the mosaic has boxes): a labelled image
         letterboxed to S, scaled by U(mixup_scale), flipped with probability 0.5, randomly cropped
         to S x S, averaged 0.5 / 0.5 with the mosaic; boxes concatenated
      -> HSV jitter (hsv_prob) and horizontal flip (flip_prob)

Non-mosaic path (mosaic not drawn, or switched off: the "no-aug" phase of the last epochs)::

    resize to fit S -> HSV jitter, horizontal flip (of the resized image) -> top-left on a 114 canvas

Both paths end by dropping boxes narrower or shorter than ``min_box_size`` pixels (default 1: the authors
keep boxes with min(w, h) > 1) and keeping at most ``max_labels`` boxes. Images are BGR uint8 throughout (as read by cv2); boxes xyxy float32 in output
pixels; labels int64.

What comes from albumentations, and what does not (and why):

- HSV jitter and flip run in one ``A.Compose`` built once, with ``BboxParams(format="pascal_voc",
  clip=True, min_width/min_height=min_box_size, filter_invalid_bboxes=True)`` doing the box dropping.
  Flip is ``A.HorizontalFlip``. HSV is :class:`YoloxHSV`, an ``A.ImageOnlyTransform`` with the
  authors' gains (hue +-5, saturation +-30, value +-30, each component jittered with probability 1/2)
  applied through one 3-channel LUT in OpenCV's HSV of the BGR image: 3x faster than
  ``A.HueSaturationValue`` (3.5 ms vs 1.2 ms at 640 here), which assumes RGB, draws all three shifts
  every time and never changes grey pixels' saturation.
- Mosaic and its affine are not ``A.Mosaic`` + ``A.Affine``: ``A.Mosaic`` places images in grid cells
  ("contain" leaves grey bands between the four images, "cover" crops them) instead of around the
  junction, and rebuilds a Compose per cell per call; ``A.Affine`` pivots at the image centre and
  keeps the input size, so it cannot map the authors' 2S canvas into S (the zoomed-out samples of
  scale < 1 would lose the content the authors show). The authors' geometry is a few lines of NumPy and
  one ``cv2.warpAffine`` here, which also allows an exact speed-up: images whose canvas region is
  outside the visible window are not decoded (their boxes would all be clipped away). Every image is
  decoded at full size and resized with ``INTER_LINEAR``, as the authors do: decoding at 1/2-1/8 by
  libjpeg (DCT scaling) for zoomed-out mosaics was faster but gave smoother pixels than the authors'
  (and than inference sees), a distribution shift this project no longer takes for speed.
- MixUp is the authors' (own code), including their zero padding when the scaled image is smaller
  than S.

Differences from the authors' code, on purpose: when every box of a sample is dropped, the sample is a
background image (the authors fall back to the un-flipped input with its unfiltered boxes); MixUp is
blended with rounding (``cv2.addWeighted``) instead of truncation.

Randomness: one ``random.Random`` and one ``numpy.random.Generator`` per :class:`TrainAugment`, shared
with its albumentations Compose; :meth:`TrainAugment.reseed` resets both (the loader's worker_init_fn
calls it with the worker's seed), so a seed gives the same samples.
"""

from __future__ import annotations

import math
import random
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.core.transforms_interface import BaseTransformInitSchema
from pydantic import Field

from yolox.config import AugmentParams
from yolox.data.cache import DecodedImageCache
from yolox.data.records import DetectionDataset, ImageRecord, PackedRecords
from yolox.errors import DataError
from yolox.ops.letterbox import PAD_VALUE, pad_to

SMALL_MODELS = ("yolox-nano", "yolox-tiny")

def recipe_for_model(model_name: str, params: AugmentParams) -> AugmentParams:
    """The authors' per-size defaults, for the fields the YAML did not set (``params.model_fields_set``).

    yolox-nano and yolox-tiny: ``enable_mixup=False``, ``mosaic_scale=(0.5, 1.5)``; nano also
    ``mosaic_prob=0.5``. Other models keep ``params`` as given. Returns a copy (``params`` untouched).
    """
    if model_name not in SMALL_MODELS:
        return params
    given = params.model_fields_set
    update: dict[str, Any] = {}
    if "enable_mixup" not in given:
        update["enable_mixup"] = False
    if "mosaic_scale" not in given:
        update["mosaic_scale"] = (0.5, 1.5)
    if model_name == "yolox-nano" and "mosaic_prob" not in given:
        update["mosaic_prob"] = 0.5
    return params.model_copy(update=update) if update else params


class YoloxHSV(A.ImageOnlyTransform):
    """The authors' HSV jitter of a BGR uint8 image (``augment_hsv``), as an albumentations transform.

    Gains ``g = U(-1, 1, 3) * (hgain, sgain, vgain)``, each component kept with probability 1/2,
    truncated to integers; in OpenCV's 8-bit HSV (hue 0-179): ``h = (h + g0) mod 180``,
    ``s = clip(s + g1, 0, 255)``, ``v = clip(v + g2, 0, 255)``. Applied with one 3-channel LUT.
    """

    class InitSchema(BaseTransformInitSchema):
        hgain: float = Field(ge=0, le=90)
        sgain: float = Field(ge=0, le=255)
        vgain: float = Field(ge=0, le=255)

    def __init__(self, hgain: float = 5.0, sgain: float = 30.0, vgain: float = 30.0, p: float = 1.0):
        super().__init__(p=p)
        self.hgain, self.sgain, self.vgain = hgain, sgain, vgain

    def get_params(self) -> dict[str, Any]:
        gains = self.random_generator.uniform(-1.0, 1.0, 3) * (self.hgain, self.sgain, self.vgain)
        gains *= self.random_generator.integers(0, 2, 3)
        return {"gains": gains.astype(np.int16)}

    def apply(self, img: np.ndarray, gains: np.ndarray, **params: Any) -> np.ndarray:
        if not gains.any():
            return img
        ramp = np.arange(256, dtype=np.int16)
        lut = np.empty((256, 1, 3), np.uint8)
        lut[:, 0, 0] = np.mod(ramp + gains[0], 180)
        lut[:, 0, 1] = np.clip(ramp + gains[1], 0, 255)
        lut[:, 0, 2] = np.clip(ramp + gains[2], 0, 255)
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        cv2.LUT(hsv, lut, dst=hsv)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("hgain", "sgain", "vgain")


def affine_matrix(py: random.Random, size: int, degrees: float, translate: float,
                  scale: tuple[float, float], shear: float) -> np.ndarray:
    """The authors' random affine (``get_affine_matrix``): (2, 3) float64, canvas pixels -> output pixels.

    Rotation U(-degrees, degrees) and scale U(*scale) about the canvas origin, shear U(-shear, shear)
    degrees on each axis, translation U(-translate, translate) * size pixels on each axis.
    """
    angle = py.uniform(-degrees, degrees)
    s = py.uniform(*scale)
    rot = cv2.getRotationMatrix2D(angle=angle, center=(0, 0), scale=s)
    shear_x = math.tan(py.uniform(-shear, shear) * math.pi / 180)
    shear_y = math.tan(py.uniform(-shear, shear) * math.pi / 180)
    m = np.empty((2, 3))
    m[0] = rot[0] + shear_y * rot[1]
    m[1] = rot[1] + shear_x * rot[0]
    m[0, 2] = py.uniform(-translate, translate) * size
    m[1, 2] = py.uniform(-translate, translate) * size
    return m


def affine_boxes(boxes: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Boxes (N, 4) xyxy through the affine ``m`` (2, 3): enclosing box of the 4 warped corners,
    clipped to [0, size]. Returns (N, 4) float32."""
    n = len(boxes)
    if n == 0:
        return boxes.astype(np.float32).reshape(0, 4)
    corners = np.ones((4 * n, 3))
    corners[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(4 * n, 2)
    warped = (corners @ m.T).reshape(n, 8)
    xs, ys = warped[:, 0::2], warped[:, 1::2]
    out = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1)
    np.clip(out, 0, size, out=out)
    return out.astype(np.float32)


def mosaic_placement(i: int, xc: int, yc: int, w: int, h: int, size: int
                     ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The authors' ``get_mosaic_coordinate``: where image ``i`` (0 top-left, 1 top-right, 2 bottom-left,
    3 bottom-right of the centre (xc, yc)) of resized size (w, h) goes on the 2*size canvas.

    Returns ``((x1, y1, x2, y2) on the canvas, (x1, y1, x2, y2) in the resized image)``, same extent.
    """
    if i == 0:
        x1, y1, x2, y2 = max(xc - w, 0), max(yc - h, 0), xc, yc
        small = w - (x2 - x1), h - (y2 - y1), w, h
    elif i == 1:
        x1, y1, x2, y2 = xc, max(yc - h, 0), min(xc + w, size * 2), yc
        small = 0, h - (y2 - y1), min(w, x2 - x1), h
    elif i == 2:
        x1, y1, x2, y2 = max(xc - w, 0), yc, xc, min(size * 2, yc + h)
        small = w - (x2 - x1), 0, w, min(y2 - y1, h)
    else:
        x1, y1, x2, y2 = xc, yc, min(xc + w, size * 2), min(size * 2, yc + h)
        small = 0, 0, min(w, x2 - x1), min(y2 - y1, h)
    return (x1, y1, x2, y2), small


def read_image(path: Any) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 BGR with ``cv2.imread`` (full size).

    Raises:
        DataError: the file cannot be read or decoded.
    """
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: cannot read or decode this image; check the file or re-run `yolox prepare`")
    return img


def _resize_to(img: np.ndarray, w: int, h: int) -> np.ndarray:
    if img.shape[1] == w and img.shape[0] == h:
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def _valid(boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop degenerate boxes (x2 <= x1 or y2 <= y1)."""
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if keep.all():
        return boxes, labels
    return boxes[keep], labels[keep]


class TrainAugment:
    """The training augmentation over a dataset's records; one call makes one sample.

    Attributes:
        params: the recipe (already passed through :func:`recipe_for_model` by the caller if wanted).
        mosaic_enabled: False switches Mosaic (and with it MixUp) off: the "no-aug" phase.
        cache: the decoded images (:class:`yolox.data.cache.DecodedImageCache`, ``cache_mb`` MiB at most;
            0, the default here, decodes per sample: a few samples (the preview) need no cache, training
            passes ``train.cache_ram_mb`` through :class:`yolox.data.dataset.TrainDataset`).
    """

    def __init__(self, dataset: DetectionDataset | PackedRecords, params: AugmentParams, seed: int = 0,
                 cache_mb: int = 0) -> None:
        records = dataset if isinstance(dataset, PackedRecords) else dataset.records
        if not len(records):
            raise DataError("the training dataset has no images: check the prepared train split")
        # flat arrays: what the loader's workers read of the dataset (shared with the main process)
        self.records = records if isinstance(records, PackedRecords) else PackedRecords(records)
        # decoded images in RAM when they fit in cache_mb MiB (same pixels as reading the file)
        self.cache = DecodedImageCache(self.records, read_image, cache_mb)
        self.params = params
        self.mosaic_enabled = True
        self._labelled = np.flatnonzero(self.records.num_boxes())
        self._color_flip = A.Compose(
            [YoloxHSV(p=params.hsv_prob), A.HorizontalFlip(p=params.flip_prob)],
            bbox_params=A.BboxParams(
                format="pascal_voc", label_fields=["labels"], clip=True, min_area=0.0, min_visibility=0.0,
                min_width=params.min_box_size, min_height=params.min_box_size, filter_invalid_bboxes=True,
                check_each_transform=False,  # neither transform moves a box out: filter once, at the end
            ),
            strict=False,
        )
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Reset the random state (Python and NumPy generators shared with the albumentations Compose)."""
        self.py = random.Random(seed)
        self.rng = np.random.default_rng(seed)
        self._color_flip.set_random_state(self.rng, self.py)

    def __call__(self, index: int, size: int, mosaic: bool | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Augment sample ``index`` at output side ``size`` (pixels).

        Args:
            index: record index (the primary image of a mosaic).
            size: output side S (a multiple of 32 in training, any positive int works).
            mosaic: allow the mosaic draw (default: ``self.mosaic_enabled``).

        Returns:
            image (S, S, 3) uint8 BGR; boxes (N, 4) float32 xyxy in output pixels, each at least
            ``min_box_size`` wide and tall, inside [0, S]; labels (N,) int64; N <= max_labels.
        """
        p = self.params
        allow = self.mosaic_enabled if mosaic is None else mosaic
        if allow and p.mosaic_prob > 0 and self.py.random() < p.mosaic_prob:
            img, boxes, labels = self._mosaic(index, size)
            if p.enable_mixup and len(boxes) and p.mixup_prob > 0 and self.py.random() < p.mixup_prob:
                img, boxes, labels = self._mixup(img, boxes, labels, size)
            img, boxes, labels = self._finish(img, boxes, labels)
        else:
            rec = self.records[index]
            r = min(size / rec.height, size / rec.width)
            w, h = max(int(rec.width * r), 1), max(int(rec.height * r), 1)
            img = _resize_to(self._image(index, rec), w, h)
            boxes, labels = _valid(rec.boxes * np.float32(r), rec.labels)
            img, boxes, labels = self._finish(img, boxes, labels)
            if img.shape[0] != size or img.shape[1] != size:
                img = pad_to(img, size)
        if len(boxes) > p.max_labels:
            boxes, labels = boxes[: p.max_labels], labels[: p.max_labels]
        return img, boxes, labels

    def _image(self, index: int, rec: ImageRecord) -> np.ndarray:
        """Record ``index``'s image, (H, W, 3) uint8 BGR: from the cache (read-only) or the file."""
        img = self.cache.get(index)
        return read_image(rec.path) if img is None else img

    def _finish(self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """HSV + flip + min-size box filter (albumentations Compose)."""
        out = self._color_flip(image=img, bboxes=boxes, labels=labels)
        b = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        return out["image"], b, np.asarray(out["labels"], np.int64).reshape(-1)

    def _mosaic(self, index: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p, py, n = self.params, self.py, len(self.records)
        yc = int(py.uniform(0.5 * size, 1.5 * size))
        xc = int(py.uniform(0.5 * size, 1.5 * size))
        indices = [index] + [py.randint(0, n - 1) for _ in range(3)]
        m = affine_matrix(py, size, p.degrees, p.translate, p.mosaic_scale, p.shear)
        # The part of the 2S canvas the output sees: bounding box of the output corners mapped back.
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
        x0, y0 = (max(math.floor(v) - 1, 0) for v in corners.min(0).tolist())
        x1, y1 = (min(math.ceil(v) + 1, 2 * size) for v in corners.max(0).tolist())
        # Only that window of the canvas is built (same pixels as the authors' full canvas).
        canvas = np.full((max(y1 - y0, 1), max(x1 - x0, 1), 3), PAD_VALUE, np.uint8)
        all_boxes, all_labels = [], []
        for i, idx in enumerate(indices):
            rec = self.records[idx]
            r = min(size / rec.height, size / rec.width)
            w, h = max(int(rec.width * r), 1), max(int(rec.height * r), 1)
            (lx1, ly1, lx2, ly2), (sx1, sy1, _, _) = mosaic_placement(i, xc, yc, w, h, size)
            ax1, ay1, ax2, ay2 = max(lx1, x0), max(ly1, y0), min(lx2, x1), min(ly2, y1)
            if ax2 <= ax1 or ay2 <= ay1:
                continue  # outside the visible window: every box of it would be clipped away
            img = _resize_to(self._image(idx, rec), w, h)
            bx, by = sx1 + ax1 - lx1, sy1 + ay1 - ly1
            canvas[ay1 - y0:ay2 - y0, ax1 - x0:ax2 - x0] = img[by:by + ay2 - ay1, bx:bx + ax2 - ax1]
            if len(rec.boxes):
                b = rec.boxes * np.float32(r)
                b[:, 0::2] += lx1 - sx1
                b[:, 1::2] += ly1 - sy1
                all_boxes.append(b)
                all_labels.append(rec.labels)
        shifted = m.copy()
        shifted[:, 2] += m[:, :2] @ (x0, y0)
        out = cv2.warpAffine(canvas, shifted, dsize=(size, size), borderValue=(PAD_VALUE,) * 3)
        if not all_boxes:
            return out, np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
        boxes = np.concatenate(all_boxes)
        np.clip(boxes, 0, 2 * size, out=boxes)
        boxes = affine_boxes(boxes, m, size)
        return (out, *_valid(boxes, np.concatenate(all_labels)))

    def _mixup(self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, size: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The authors' MixUp of the mosaic output (S, S, 3) with one labelled image."""
        if not len(self._labelled):
            return img, boxes, labels
        py = self.py
        jit = py.uniform(*self.params.mixup_scale)
        flip = py.uniform(0, 1) > 0.5
        pick = int(self._labelled[py.randint(0, len(self._labelled) - 1)])
        rec = self.records[pick]
        r = min(size / rec.height, size / rec.width)
        side = int(size * jit)  # the authors' S x S letterbox canvas, resized by jit
        w, h = max(int(int(rec.width * r) * jit), 1), max(int(int(rec.height * r) * jit), 1)
        src = _resize_to(self._image(pick, rec), w, h)
        cp = np.full((side, side, 3), PAD_VALUE, np.uint8)
        cp[:h, :w] = src[:side, :side]
        if flip:
            cp = cv2.flip(cp, 1)
        x_off = py.randint(0, side - size - 1) if side > size else 0
        y_off = py.randint(0, side - size - 1) if side > size else 0
        if side >= size:
            crop = cp[y_off:y_off + size, x_off:x_off + size]
        else:  # the authors pad with zeros (black) beyond the scaled canvas
            crop = np.zeros((size, size, 3), np.uint8)
            crop[:side, :side] = cp
        mixed = cv2.addWeighted(img, 0.5, crop, 0.5, 0.0)

        cb = rec.boxes * np.float32(r * jit)
        np.clip(cb, 0, side, out=cb)
        if flip:
            cb[:, [0, 2]] = side - cb[:, [2, 0]]
        cb[:, 0::2] -= x_off
        cb[:, 1::2] -= y_off
        np.clip(cb, 0, size, out=cb)
        cb, cl = _valid(cb, rec.labels)
        return mixed, np.concatenate([boxes, cb]), np.concatenate([labels, cl])
