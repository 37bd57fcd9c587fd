"""Helpers of the predict-source tests: videos made from coco128 images, and read back (the loopback server
they are served from is :func:`helpers.http.serve_folder`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def make_video(path: Path, images: Sequence[Path], size: tuple[int, int] = (320, 240), fps: float = 5.0) -> Path:
    """A video of ``images`` (each resized to ``size`` = (width, height)) written by ``cv2.VideoWriter``: MJPG in
    an .avi, MPEG-4 (mp4v) otherwise."""
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    assert writer.isOpened(), path
    for p in images:
        writer.write(cv2.resize(cv2.imread(str(p)), size, interpolation=cv2.INTER_AREA))
    writer.release()
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from a video."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames
