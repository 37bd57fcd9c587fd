"""What a source of images holds: the image and video files of a file or a folder tree (``yolox predict``'s
sources, the export check's images)."""

from __future__ import annotations

from pathlib import Path

from yolox.data.readers import IMAGE_SUFFIXES as _IMAGE_SUFFIXES
from yolox.errors import DataError

IMAGE_SUFFIXES = frozenset(_IMAGE_SUFFIXES)
"""Extensions read as images (lower case), as ``prepare`` reads them (:data:`yolox.data.readers.IMAGE_SUFFIXES`)."""
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"}
"""Extensions read as videos (lower case)."""


def list_images(source: str | Path) -> list[Path]:
    """The image files of ``source`` (one image, or a folder and its sub-folders, sorted). Raises DataError if
    none."""
    files, _, _ = source_files(Path(source))
    if not files:
        raise DataError(no_images(Path(source)))
    return files


def source_files(source: Path, exclude: Path | None = None) -> tuple[list[Path], list[Path], list[Path]]:
    """(image files, video files, other files) of a file or a folder tree, sorted; files under ``exclude`` left
    out. A file given by name is an image unless its extension is a video's. A FIFO, socket or device (never
    opened: reading one would block) is an "other" file, so it is reported, whatever its name."""
    if source.is_file():
        return ([], [source], []) if source.suffix.lower() in VIDEO_SUFFIXES else ([source], [], [])
    if not source.is_dir():
        return ([], [], [source]) if source.exists() else ([], [], [])
    entries = [p for p in source.rglob("*") if not p.is_dir() and p.exists()
               and not (exclude and exclude in p.resolve().parents)]
    special = sorted(p for p in entries if not p.is_file())
    files = sorted(p for p in entries if p.is_file())
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES], \
        [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES], \
        sorted([*special, *(p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES)])


def no_images(source: Path) -> str:
    if not source.exists():
        return f"{source}: no such file or folder"
    return f"no images at {source} (expected an image file or a folder of {sorted(IMAGE_SUFFIXES)})"
