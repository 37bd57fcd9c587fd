"""Validation: which raw images and boxes may enter a prepared dataset, and why the others may not.

Rules (sizes in pixels):

- an image's path is valid UTF-8 (see :func:`check_image`), the file exists, can be read, its header
  (Pillow) claims no more pixels than Pillow's decompression-bomb limit, it decodes (``cv2.imread``) and,
  for a JPEG, ends with its end-of-image marker (OpenCV decodes a truncated JPEG with a grey bottom and
  only a warning);
- both sides are at least ``min_image_size``; the size recorded by the source (COCO json, image
  header) equals the decoded size;
- a box's class index is in ``0..C-1``; its coordinates are finite; its width and height are positive;
  clipped to the image it still overlaps it and is at least ``min_box_size`` wide and high.

A bad box is skipped; a bad image is skipped with all its boxes. Each is returned as an
:class:`~yolox.data.readers.Issue` with a stable ``reason`` (the constants below); nothing is fatal and
nothing is dropped silently. Images without boxes are kept (background images are training data);
exact duplicate boxes are kept (they are legal).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat

import cv2
import numpy as np

from yolox.config import DataParams
from yolox.console import progress as progress_bar
from yolox.data.readers import (
    NOT_AN_IMAGE,
    UNKNOWN_CATEGORY,
    UNREADABLE_IMAGE,
    Issue,
    RawBox,
    RawImage,
    UnusableImage,
    header_size,
)
from yolox.data.records import ImageRecord

__all__ = ["Issue", "ValidationResult", "check_box", "check_image", "validate_images"]

MISSING_IMAGE = "missing image file"
NON_UTF8_NAME = "file name is not valid UTF-8"
TRUNCATED_JPEG = "truncated JPEG"
IMAGE_TOO_SMALL = "image too small"
SIZE_MISMATCH = "size mismatch"
UNKNOWN_CLASS = UNKNOWN_CATEGORY
NON_FINITE = "non-finite coordinates"
NON_POSITIVE_SIZE = "non-positive size"
OUTSIDE_IMAGE = "outside the image"
BOX_TOO_SMALL = "box too small"
CLIPPED_NOTE = "boxes clipped to the image (by more than 0.5 px)"
CLIP_NOTE_TOLERANCE = 0.5  # pixels; YOLO's rounded normalised boxes often stick out by ~1e-4 px

PROCESS_POOL_MIN_IMAGES = 2000
"""From this many images on, validation runs in worker processes (decoding and the per-box checks in
parallel); below it, in threads of this process (decoding in parallel), which start instantly."""
CHUNK_IMAGES = 64
"""Images per task sent to a validation worker process."""

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
_JPEG_TAIL_BYTES = 1024  # the end marker may be followed by a little padding


@dataclass
class ValidationResult:
    """Clean records, the skipped items, and counts of non-error observations.

    ``records[i].image_id`` is provisional (``i + 1`` in input order); the writer renumbers them.
    ``records[i].width, height`` are the decoded size (pixels).
    """

    records: list[ImageRecord]
    issues: list[Issue]
    notes: Counter[str] = field(default_factory=Counter)


def validate_images(
    images: list[RawImage],
    num_classes: int,
    params: DataParams,
    description: str = "validating images",
    workers: int | None = None,
) -> ValidationResult:
    """Check every image and box (rules in the module docstring), in parallel, with a progress bar.

    Args:
        images: raw images as read; their boxes are ``xyxy`` pixels, unchecked.
        num_classes: C; class indices must be in ``0..C-1``.
        params: ``min_image_size`` and ``min_box_size`` (pixels).
        description: label of the progress bar.
        workers: parallel workers (default: CPU count, at most 8): processes from
            :data:`PROCESS_POOL_MIN_IMAGES` images on, else decoding threads. Results keep the input order
            either way. The processes come from a fork server (``multiprocessing`` ``forkserver``), never
            forked from this process, whose other threads (OpenCV's, Prefect's, MLflow's) may hold locks a
            forked child would wait on forever; as with any ``multiprocessing`` start method other than
            ``fork``, a script that prepares 2000+ images must call it under ``if __name__ == "__main__":``.

    Returns:
        Records of the valid images (boxes clipped, float32 ``xyxy`` pixels), the issues in input
        order, and notes (boxes clipped by more than ``CLIP_NOTE_TOLERANCE`` pixels are counted).
    """
    workers = workers or min(8, os.cpu_count() or 1)
    result = ValidationResult([], [])
    chunks = [images[i:i + CHUNK_IMAGES] for i in range(0, len(images), CHUNK_IMAGES)]
    with _pool(len(images), workers) as pool, progress_bar() as progress:   # on stderr: stdout is for results
        task = progress.add_task(description, total=len(images))
        for chunk in _map_chunks(pool, chunks, num_classes, params):
            for record, issues, clipped in chunk:
                if record is not None:
                    record.image_id = len(result.records) + 1
                    result.records.append(record)
                result.issues.extend(issues)
                if clipped:
                    result.notes[CLIPPED_NOTE] += clipped
            progress.advance(task, len(chunk))
    return result


def _pool(num_images: int, workers: int) -> Executor:
    if num_images >= PROCESS_POOL_MIN_IMAGES and workers > 1:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])   # the server imports cv2, numpy and this module once
        return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=cv2.setNumThreads,
                                   initargs=(1,))
    return ThreadPoolExecutor(max_workers=workers)


def _map_chunks(pool: Executor, chunks: list[list[RawImage]], num_classes: int, params: DataParams
                ) -> Iterator[list[tuple[ImageRecord | None, list[Issue], int]]]:
    if isinstance(pool, ProcessPoolExecutor):
        yield from pool.map(_validate_chunk, chunks, repeat(num_classes), repeat(params))
        return
    for chunk in chunks:   # threads: one image per task (cv2 decodes without the GIL)
        yield list(pool.map(lambda im: _validate_one(im, num_classes, params), chunk))


def _validate_chunk(images: list[RawImage], num_classes: int, params: DataParams
                    ) -> list[tuple[ImageRecord | None, list[Issue], int]]:
    return [_validate_one(image, num_classes, params) for image in images]


def _validate_one(
    image: RawImage, num_classes: int, params: DataParams
) -> tuple[ImageRecord | None, list[Issue], int]:
    """(record or None, issues, number of clipped boxes) for one image."""
    size = check_image(image, params.min_image_size)
    if isinstance(size, Issue):
        return None, [size], 0
    width, height = size
    boxes, labels, issues, clipped = [], [], [], 0
    for box in image.boxes:
        checked = check_box(box, width, height, num_classes, params.min_box_size)
        if isinstance(checked, str):
            issues.append(_box_issue(image, box, checked, width, height))
            continue
        boxes.append(checked)
        labels.append(box.label)
        clipped += int(_clip_distance(box.xyxy, checked) > CLIP_NOTE_TOLERANCE)
    record = ImageRecord(
        image_id=1,
        path=image.path,
        width=width,
        height=height,
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        labels=np.array(labels, np.int64),
    )
    return record, issues, clipped


def check_image(image: RawImage, min_image_size: int) -> tuple[int, int] | Issue:
    """The decoded (width, height) of an image that passes :func:`read_checked_image`, or its :class:`Issue`."""
    pixels = read_checked_image(image, min_image_size)
    return pixels if isinstance(pixels, Issue) else (pixels.shape[1], pixels.shape[0])


def read_checked_image(image: RawImage, min_image_size: int) -> np.ndarray | Issue:
    """Decode an image and check it.

    An image whose path is not valid UTF-8 (a file name's bytes in another encoding, e.g. Latin-1
    ``b"caf\\xe9.jpg"``, held by Python as surrogate escapes) is skipped, not prepared under another name:
    the prepared dataset names its images in COCO json, which holds Unicode text, not bytes, so the name
    cannot be written as it is, and a made-up name would no longer match the source file a person looks
    for (or could collide with another file's name). OpenCV cannot open such a path either (its Python
    binding crashes on it). The report shows the name with the bytes escaped (``caf\\xe9.jpg``);
    renaming the file to UTF-8 (e.g. with ``convmv``) brings it back.

    Returns:
        The decoded image, BGR uint8 (H, W, 3) (``cv2.imread``: EXIF rotation applied), or an
        image :class:`Issue` (name not UTF-8, missing, unreadable, not decodable, truncated JPEG, smaller
        than ``min_image_size`` pixels on a side, or not the size the source records) that counts all its
        boxes. Details name no path of this machine (they go into ``report.json``).
    """

    def issue(reason: str, detail: str) -> Issue:
        return Issue("image", image.file, reason, detail=detail, boxes=len(image.boxes))

    if not _is_utf8(str(image.path)):
        where = "its file name" if not _is_utf8(image.path.name) else "a folder in its path"
        return issue(NON_UTF8_NAME, f"{where} holds bytes that are not UTF-8: rename it to UTF-8 "
                                    "(COCO json and OpenCV need text)")
    if not image.path.is_file():
        what = "not a regular file" if image.path.exists() else "no such file"
        return issue(MISSING_IMAGE, what)
    try:
        header_size(image.path)     # before decoding: a header claiming too many pixels is not decoded
        complete = jpeg_is_complete(image.path)
    except UnusableImage as err:
        return issue(err.reason, err.detail)
    except OSError as err:
        return issue(UNREADABLE_IMAGE, err.strerror or type(err).__name__)
    pixels = cv2.imread(str(image.path), cv2.IMREAD_COLOR)
    if pixels is None:
        return issue(NOT_AN_IMAGE, "cv2.imread cannot decode it")
    if not complete:
        return issue(TRUNCATED_JPEG, "no end-of-image marker: the file is cut short")
    height, width = pixels.shape[:2]
    if min(width, height) < min_image_size:
        return issue(IMAGE_TOO_SMALL, f"{width}x{height} px, min_image_size is {min_image_size} px")
    recorded = (image.width, image.height)
    if None not in recorded and recorded != (width, height):
        return issue(SIZE_MISMATCH, f"recorded {image.width}x{image.height} px, decoded {width}x{height} px")
    return pixels


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def jpeg_is_complete(path: os.PathLike[str] | str) -> bool:
    """False for a JPEG file without its end-of-image marker near the end; True for other files."""
    with open(path, "rb") as f:
        if f.read(2) != _JPEG_START:
            return True
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - _JPEG_TAIL_BYTES))
        return _JPEG_END in f.read()


def check_box(
    box: RawBox, width: int, height: int, num_classes: int, min_box_size: float
) -> tuple[float, float, float, float] | str:
    """Check one box against its image of ``width x height`` pixels.

    Returns:
        The box clipped to the image (``xyxy`` pixels), or the reason it is skipped: unknown class,
        non-finite coordinates, non-positive size, outside the image, or narrower/shorter than
        ``min_box_size`` pixels after clipping.
    """
    if not 0 <= box.label < num_classes:
        return UNKNOWN_CLASS
    x0, y0, x1, y1 = box.xyxy
    if not all(math.isfinite(v) for v in box.xyxy):
        return NON_FINITE
    if x1 <= x0 or y1 <= y0:
        return NON_POSITIVE_SIZE
    clipped = (min(max(x0, 0.0), width), min(max(y0, 0.0), height),
               min(max(x1, 0.0), width), min(max(y1, 0.0), height))
    w, h = clipped[2] - clipped[0], clipped[3] - clipped[1]
    if w <= 0 or h <= 0:
        return OUTSIDE_IMAGE
    if w < min_box_size or h < min_box_size:
        return BOX_TOO_SMALL
    return clipped


def _clip_distance(raw: tuple[float, ...], clipped: tuple[float, ...]) -> float:
    """Largest move of a coordinate by clipping (pixels)."""
    return max(abs(a - b) for a, b in zip(raw, clipped, strict=True))


def _box_issue(image: RawImage, box: RawBox, reason: str, width: int, height: int) -> Issue:
    where = image.file if box.ann_id is None else f"annotation id {box.ann_id} of {image.file}"
    xyxy = ", ".join(f"{v:.6g}" for v in box.xyxy)
    detail = f"{where}: class {box.label}, xyxy ({xyxy}) px in a {width}x{height} px image"
    return Issue("box", image.box_file or image.file, reason, line=box.line, detail=detail, boxes=1)
