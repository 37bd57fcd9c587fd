"""Readers of raw detection datasets: YOLO text labels and COCO ``instances_*.json``.

A reader turns a dataset on disk into :class:`RawDataset`: class names, their COCO category ids and,
per split, the images with their boxes exactly as the files give them (``xyxy`` in pixels, neither
checked nor clipped). Problems that stop a line or an image from being read at all (a label line that
is not ``class cx cy w h``, a crowd annotation, a label file without an image, an image whose header
cannot be read) are returned as :class:`Issue` items next to the data; everything else is checked by
:mod:`yolox.data.validate`.

Paths from dataset files never leave their dataset root: an image or label file whose path, once resolved
(``..`` components, an absolute ``file_name``, symbolic links), lies outside the root is neither read nor
linked, and is reported with reason :data:`OUTSIDE_ROOT`. The root is the YOLO ``dataset.yaml``'s ``path``
(which declares it) and, for a COCO json, its image folder (``data.images``, default the json's folder). A
YOLO split folder outside the root is a :class:`~yolox.errors.DataError` (the yaml is wrong, not an image).

Category ids: a COCO source keeps its ids (classes in ascending id order). A YOLO source whose names
are the 80 COCO names gets the original COCO ids (:data:`COCO_CATEGORY_IDS`), any other gets
``index + 1``.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from PIL import Image, UnidentifiedImageError

from yolox.errors import DataError
from yolox.files import regular_file_problem
from yolox.models.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Reasons shared by the readers and the validator (the strings appear in report.json).
NOT_AN_IMAGE = "not a decodable image"
BAD_LABEL_LINE = "bad label line"
NON_INTEGER_CLASS = "non-integer class"
NO_IMAGE_FOR_LABEL = "no image for this label file"
UNREADABLE_LABEL_FILE = "unreadable label file"
CROWD = "crowd"
MALFORMED_BBOX = "malformed bbox"
UNKNOWN_CATEGORY = "unknown class"
UNKNOWN_IMAGE = "annotation of unknown image"
DUPLICATE_IMAGE_ID = "duplicate image id"
MISSING_LABEL_NOTE = "missing label file (background image)"
NON_IMAGE_FILE_NOTE = "non-image files ignored"
SAME_VAL_NOTE = "val split is the train folder (ignored)"
OUTSIDE_ROOT = "outside the dataset root"
BROKEN_LINK = "broken symbolic link"
INVALID_FILE_NAME = "invalid file name"
UNREADABLE_IMAGE = "unreadable image file"
MALFORMED_IMAGE_ENTRY = "malformed image entry"
MALFORMED_ANNOTATION = "malformed annotation"
LINKED_FOLDER_NOTE = "links to folders not followed"

# EXIF orientations that turn the image by 90 degrees (width and height swap once decoded).
_ROTATED_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112


@dataclass
class Issue:
    """One skipped item of a dataset and why.

    Attributes:
        kind: what was skipped: an ``image`` (with all its boxes), a ``box``, or a ``label_file``.
        file: the file it comes from, relative to the dataset root when it lies below it.
        reason: a short, stable category (e.g. ``"unknown class"``), used for counting.
        line: 1-based line of a label file, when the item is a line.
        detail: the specifics (values, sizes, annotation ids) for a person.
        boxes: boxes lost with the item (1 for a box, all of an image's or label file's boxes).
    """

    kind: Literal["image", "box", "label_file"]
    file: str
    reason: str
    line: int | None = None
    detail: str = ""
    boxes: int = 0

    def to_json(self) -> dict[str, Any]:
        """The issue as a JSON-ready dict (``line`` only when set; names escaped by :func:`printable`)."""
        out: dict[str, Any] = {"kind": self.kind, "file": printable(self.file)}
        if self.line is not None:
            out["line"] = self.line
        out.update({"reason": self.reason, "detail": printable(self.detail), "boxes": self.boxes})
        return out


def printable(text: str) -> str:
    """``text`` as valid Unicode: a file name's bytes that are not UTF-8 (held by Python as surrogate
    escapes, e.g. ``os.fsdecode(b"bad\\xff.jpg")``) become backslash escapes (``bad\\xff.jpg``), as do other
    lone surrogates (``\\ud800``); anything else is returned unchanged."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


@dataclass
class RawBox:
    """One box as read: class index and ``xyxy`` in image pixels, not yet checked.

    Attributes:
        label: contiguous class index as written (may be out of range until validated).
        xyxy: (x0, y0, x1, y1) pixels; may be non-finite, inverted or outside the image.
        line: 1-based line in the label file (YOLO), else None.
        ann_id: annotation id (COCO), else None.
    """

    label: int
    xyxy: tuple[float, float, float, float]
    line: int | None = None
    ann_id: int | None = None


@dataclass
class RawImage:
    """One image file and its boxes as read.

    Attributes:
        path: absolute path of the image file (may not exist for a COCO source).
        file: display name for reports (relative to the dataset root when below it).
        width, height: recorded size (pixels): the COCO json's, or the image header's for YOLO
            (EXIF rotation applied); None when the source does not record it.
        boxes: the boxes as read.
        box_file: the file the boxes come from (label file or json), for reports.
    """

    path: Path
    file: str
    width: int | None
    height: int | None
    boxes: list[RawBox] = field(default_factory=list)
    box_file: str = ""


@dataclass
class RawDataset:
    """Class names, their COCO category ids, and the images of each split as read.

    ``splits`` holds ``"train"`` and, when the source defines one, ``"val"``; a COCO json is one
    split, ``"train"``. ``notes`` counts non-error observations (e.g. images without a label file).
    """

    names: list[str]
    category_ids: list[int]
    splits: dict[str, list[RawImage]]
    notes: Counter[str] = field(default_factory=Counter)

    @property
    def num_classes(self) -> int:
        return len(self.names)


def display_path(path: Path, root: Path, resolved: bool = False) -> str:
    """``path`` relative to ``root`` when it lies below it, else the absolute path (POSIX form).
    ``resolved``: both are already resolved (no symbolic link, absolute), which saves the look-ups."""
    path, root = (path, root) if resolved else (path.resolve(), root.resolve())
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _resolve_in(path: Path) -> Path:
    """``path.resolve()`` for a path listed inside a resolved folder (``rglob`` does not enter links to
    folders, so only the file itself can be a link): one ``lstat`` instead of one per component."""
    return path.resolve() if path.is_symlink() else path


def resolve_below(path: Path, root: Path, listed: bool = False) -> Path | tuple[str, str]:
    """``path`` resolved (``..`` and symbolic links followed) when it stays below ``root``, else why not.

    Args:
        path: a path built from a dataset file (``root / file_name``; may be absolute, hold ``..``, be a link).
        root: the dataset root, resolved.
        listed: ``path`` was listed inside a resolved folder below ``root`` (only the file itself can be a
            link: one ``lstat`` instead of one per component).

    Returns:
        The resolved path (which may not exist: a missing file is the validator's to report), or
        ``(reason, detail)``: :data:`OUTSIDE_ROOT`, :data:`BROKEN_LINK` (a link to nothing, or a loop of
        links) or :data:`INVALID_FILE_NAME` (a NUL byte, or a surrogate no file name can hold). The detail
        names no path of this machine (it goes into ``report.json``).
    """
    try:
        resolved = _resolve_in(path) if listed else path.resolve()
    except RuntimeError:                      # Python 3.11 resolve(): "Symlink loop from ..."
        return BROKEN_LINK, "is a loop of symbolic links"
    except (OSError, ValueError) as err:      # ValueError: NUL byte; UnicodeEncodeError: lone surrogate
        return INVALID_FILE_NAME, f"is a name no file can have ({type(err).__name__})"
    if not resolved.is_relative_to(root):
        via = "is a symbolic link to" if path.is_symlink() else "names"
        return OUTSIDE_ROOT, f"{via} a path outside the dataset root: not read (paths must stay below it)"
    if path.is_symlink() and not resolved.exists():
        return BROKEN_LINK, "is a symbolic link to nothing"
    return resolved


def category_ids_for(names: list[str]) -> list[int]:
    """COCO category ids for class names: the COCO ids for the 80 COCO names, else ``index + 1``."""
    if tuple(names) == COCO_CLASSES:
        return list(COCO_CATEGORY_IDS)
    return list(range(1, len(names) + 1))


# ----------------------------------------------------------------------------------------- YOLO


def read_yolo(source: Path, only: str | None = None) -> tuple[RawDataset, list[Issue]]:
    """Read a YOLO dataset: ``dataset.yaml`` + ``images/<split>/*`` + ``labels/<split>/*.txt``.

    ``dataset.yaml`` keys: ``path`` (dataset root, relative to the yaml's folder; default the yaml's
    folder), ``train`` and optional ``val`` (an image folder, or a list of them, relative to the
    root), ``names`` (``{id: name}`` with ids 0..C-1, or a list). The label file of
    ``<root>/images/<split>/a.jpg`` is ``<root>/labels/<split>/a.txt``; one line per box,
    ``class cx cy w h`` normalised to [0, 1] by the image width and height. Boxes are returned in
    pixels (``xyxy``) using the size in the image header.

    Args:
        source: the ``dataset.yaml`` file or the folder holding it.
        only: read just this split (e.g. ``"val"`` of a val-only ``dataset.yaml`` handed over as a test
            set: ``val`` + ``names``, no ``train``), as it is, even when it is the train folder. Default:
            ``train`` (required) and ``val`` when the yaml names a different folder (training on the val
            images would make the val AP meaningless, so a ``val`` equal to ``train`` is dropped with a note).

    Returns:
        The raw dataset (``train``, and ``val`` when the yaml names a different folder; or just ``only``) and the
        issues met while reading (bad label lines, label files without an image, unreadable images).

    Raises:
        DataError: no ``dataset.yaml``, unreadable yaml, missing keys or folders, or no images found
            (the message names the path).
    """
    yaml_path = _find_yaml(Path(source))
    spec = _load_yaml(yaml_path)
    root = (yaml_path.parent / str(spec.get("path") or ".")).resolve()
    names = _parse_names(spec.get("names"), yaml_path)
    issues: list[Issue] = []
    notes: Counter[str] = Counter()
    if only is not None:
        dirs = _split_dirs(spec, only, root, yaml_path)
        split = _read_yolo_split(dirs, root, issues, notes)
        if not split and not _has_image_issue(issues):
            raise DataError(f"{yaml_path}: no images ({'/'.join(IMAGE_SUFFIXES)}) found in "
                            + ", ".join(str(d) for d in dirs))
        return RawDataset(names, category_ids_for(names), {only: split}, notes), issues
    train_dirs = _split_dirs(spec, "train", root, yaml_path)
    splits = {"train": _read_yolo_split(train_dirs, root, issues, notes)}
    if spec.get("val"):
        val_dirs = _split_dirs(spec, "val", root, yaml_path)
        if sorted(val_dirs) == sorted(train_dirs):
            notes[SAME_VAL_NOTE] += 1
        else:
            splits["val"] = _read_yolo_split(val_dirs, root, issues, notes)
    if not any(splits.values()) and not _has_image_issue(issues):
        folders = ", ".join(str(d) for d in train_dirs)
        raise DataError(f"{yaml_path}: no images ({'/'.join(IMAGE_SUFFIXES)}) found in {folders}")
    return RawDataset(names, category_ids_for(names), splits, notes), issues


def _has_image_issue(issues: list[Issue]) -> bool:
    return any(i.kind == "image" for i in issues)


def _find_yaml(source: Path) -> Path:
    if source.is_dir():
        source = source / "dataset.yaml"
    problem = regular_file_problem(source, MAX_SPEC_BYTES)
    if problem == "not found":
        raise DataError(f"{source}: no such file; a YOLO source needs a dataset.yaml (or give a COCO .json)")
    if problem is not None:
        raise DataError(f"{source}: {problem}; a YOLO source needs a dataset.yaml (or give a COCO .json)")
    return source


def _load_yaml(yaml_path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(yaml_path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DataError(f"{yaml_path}: not a readable YAML file ({err})") from None
    if not isinstance(spec, dict):
        raise DataError(f"{yaml_path}: expected a mapping with keys path, train, val, names")
    return spec


def _parse_names(raw: Any, yaml_path: Path) -> list[str]:
    if isinstance(raw, list) and raw:
        return [printable(str(n)) for n in raw]
    if isinstance(raw, dict) and raw:
        try:
            ids = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            raise DataError(f"{yaml_path}: names: keys must be class ids 0..C-1") from None
        if ids != list(range(len(ids))):
            raise DataError(
                f"{yaml_path}: names: class ids must be 0..{len(ids) - 1} without gaps, got {ids}"
            )
        by_id = {int(k): printable(str(v)) for k, v in raw.items()}
        return [by_id[i] for i in ids]
    raise DataError(f"{yaml_path}: names: expected a list of class names or a mapping {{id: name}}")


def _split_dirs(spec: dict[str, Any], key: str, root: Path, yaml_path: Path) -> list[Path]:
    """The resolved folders of split ``key``; a DataError when one is missing or lies outside ``root``."""
    value = spec.get(key)
    if not value:
        raise DataError(f"{yaml_path}: missing key {key!r} (an image folder relative to {root})")
    entries = value if isinstance(value, list) else [value]
    dirs = []
    for entry in entries:
        folder = (root / str(entry)).resolve()
        if not folder.is_relative_to(root):
            raise DataError(
                f"{yaml_path}: {key}: {str(entry)!r} resolves to {folder}, outside the dataset root {root} "
                "(its 'path'): move the images below the root, or set 'path' to a folder that holds all splits"
            )
        if not folder.is_dir():
            raise DataError(
                f"{yaml_path}: {key}: {folder} is not a folder (image list files are not supported)"
            )
        dirs.append(folder)
    return dirs


def _list_images(folder: Path, notes: Counter[str]) -> list[Path]:
    """Image files below ``folder`` (links to files and broken links included: the reader reports the bad
    ones); links to folders are not entered (counted in the notes), other files are counted as ignored."""
    images = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            if path.is_dir():
                notes[LINKED_FOLDER_NOTE] += 1
                continue
        elif not path.is_file() and (path.is_dir() or path.suffix.lower() not in IMAGE_SUFFIXES):
            continue      # a FIFO, socket or device named like an image goes on: the validator reports it, unread
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        elif not path.name.startswith("."):
            notes[NON_IMAGE_FILE_NOTE] += 1
    return images


def label_dir_for(image_dir: Path) -> Path:
    """The YOLO label folder of an image folder: its last ``images`` component becomes ``labels``.

    A folder without an ``images`` component holds its own label files.
    """
    parts = list(image_dir.parts)
    if "images" not in parts:
        return image_dir
    index = len(parts) - 1 - parts[::-1].index("images")
    parts[index] = "labels"
    return Path(*parts)


def label_path_for(image: Path) -> Path:
    """The YOLO label file of an image, e.g. ``images/train/a.jpg`` -> ``labels/train/a.txt``."""
    return label_dir_for(image.parent) / f"{image.stem}.txt"


def _read_yolo_split(
    dirs: list[Path], root: Path, issues: list[Issue], notes: Counter[str]
) -> list[RawImage]:
    images: list[RawImage] = []
    used_labels: set[Path] = set()
    label_dirs: dict[Path, Path | tuple[str, str]] = {}
    for folder in dirs:
        for image_path in _list_images(folder, notes):
            parent = image_path.parent
            if parent not in label_dirs:
                label_dirs[parent] = resolve_below(label_dir_for(parent), root)
            label_dir = label_dirs[parent]
            label = _LabelFile.read(label_dir, image_path, root, notes)
            if label.path is not None:
                used_labels.add(label.path)
            image = _read_yolo_image(image_path, label, root, issues)
            if image is not None:
                images.append(image)
    for folder in dirs:
        label_dir = resolve_below(label_dir_for(folder), root)
        if isinstance(label_dir, Path):
            _report_orphan_labels(label_dir, used_labels, root, issues)
    return images


@dataclass
class _LabelFile:
    """An image's YOLO label file as read: its report name, non-blank lines, and why it cannot be used.

    Attributes:
        file: report name (relative to the root). path: the resolved file, None when it is not below the root.
        lines: (1-based number, text) of the non-blank lines. problem: (reason, detail) when the file exists
        but cannot be used (outside the root, a broken link, not a file, unreadable, not UTF-8 text).
        count: boxes lost with it (its non-blank lines; 0 when it cannot be read).
    """

    file: str
    path: Path | None
    lines: list[tuple[int, str]] = field(default_factory=list)
    problem: tuple[str, str] | None = None
    count: int = 0

    @classmethod
    def read(cls, label_dir: Path | tuple[str, str], image_path: Path, root: Path,
             notes: Counter[str]) -> _LabelFile:
        """The label file of ``image_path`` (listed) in its label folder ``label_dir`` (resolved, or why its
        folder cannot be used). A missing file is a background image (counted in the notes); a file
        with a byte-order mark is read without it."""
        name = f"{image_path.stem}.txt"
        if isinstance(label_dir, tuple):
            file = display_path(label_path_for(image_path), root, resolved=True)
            folder = printable(Path(file).parent.as_posix())
            return cls(file, None, problem=(label_dir[0], f"the folder of its label file, {folder}, {label_dir[1]}"))
        path = label_dir / name
        file = display_path(path, root, resolved=True)
        if not os.path.lexists(path):
            notes[MISSING_LABEL_NOTE] += 1
            return cls(file, path)
        resolved = resolve_below(path, root, listed=True)
        if isinstance(resolved, tuple):
            return cls(file, path, problem=(resolved[0], f"its label file {printable(file)} {resolved[1]}"))
        file = display_path(resolved, root, resolved=True)
        kind = regular_file_problem(resolved, MAX_LABEL_FILE_BYTES)     # a FIFO would block, a huge file is no label
        if kind is not None:
            return cls(file, path, problem=(UNREADABLE_LABEL_FILE, f"its label file {printable(file)}: {kind}"))
        try:
            data = resolved.read_bytes()
        except OSError as err:
            why = err.strerror or type(err).__name__
            return cls(file, path, problem=(UNREADABLE_LABEL_FILE, f"its label file {printable(file)}: {why}"))
        count = sum(1 for line in data.splitlines() if line.strip())
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            detail = f"its label file {printable(file)} is not UTF-8 text (byte {err.start}: {err.reason})"
            return cls(file, path, problem=(UNREADABLE_LABEL_FILE, detail), count=count)
        lines = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
        return cls(file, path, lines, count=len(lines))


def _read_yolo_image(listed: Path, label: _LabelFile, root: Path, issues: list[Issue]) -> RawImage | None:
    """One image (listed in a resolved split folder) and its label file; None, with an image issue that
    counts the label file's boxes, when either cannot be used (outside the root, a broken link, an unreadable
    label file, an image header that cannot be read)."""
    image_path = resolve_below(listed, root, listed=True)
    if isinstance(image_path, tuple):
        reason, detail = image_path
        issues.append(Issue("image", display_path(listed, root, resolved=True), reason, detail=detail,
                            boxes=label.count))
        return None
    file = display_path(image_path, root, resolved=True)
    if label.problem is not None:
        issues.append(Issue("image", file, label.problem[0], detail=label.problem[1], boxes=label.count))
        return None
    try:
        width, height = header_size(image_path)
    except UnusableImage as err:
        issues.append(Issue("image", file, err.reason, detail=err.detail, boxes=label.count))
        return None
    boxes = []
    for number, text in label.lines:
        box = _parse_label_line(text, number, width, height, label.file, issues)
        if box is not None:
            boxes.append(box)
    return RawImage(image_path, file, width, height, boxes, label.file)


def _parse_label_line(
    text: str, number: int, width: int, height: int, label_file: str, issues: list[Issue]
) -> RawBox | None:
    """``class cx cy w h`` (normalised) -> RawBox in pixels; None (with an issue) when unparsable."""
    fields = text.split()
    values = _floats(fields)
    if len(fields) != 5 or values is None:
        issues.append(Issue("box", label_file, BAD_LABEL_LINE, line=number, boxes=1,
                            detail=f"expected 5 numbers 'class cx cy w h', got {text.strip()!r}"))
        return None
    cls, cx, cy, w, h = values
    if not (math.isfinite(cls) and cls.is_integer()):
        issues.append(Issue("box", label_file, NON_INTEGER_CLASS, line=number, boxes=1,
                            detail=f"class {fields[0]!r} is not an integer"))
        return None
    xyxy = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
    return RawBox(int(cls), xyxy, line=number)


def _floats(fields: list[str]) -> list[float] | None:
    try:
        return [float(f) for f in fields]
    except ValueError:
        return None


def _report_orphan_labels(label_dir: Path, used: set[Path], root: Path, issues: list[Issue]) -> None:
    """Report the label files in ``label_dir`` (resolved, below ``root``) that belong to no image, with
    their boxes; one that links outside the root is reported as such, unread."""
    for path in sorted(label_dir.rglob("*.txt")):
        if path in used or not (path.is_file() or path.is_symlink()):
            continue
        file = display_path(path, root, resolved=True)
        resolved = resolve_below(path, root, listed=True)
        if isinstance(resolved, tuple):
            issues.append(Issue("label_file", file, resolved[0], detail=resolved[1]))
            continue
        try:
            lines = [line for line in resolved.read_bytes().splitlines() if line.strip()]
        except OSError as err:
            issues.append(Issue("label_file", file, UNREADABLE_LABEL_FILE, detail=err.strerror or ""))
            continue
        issues.append(Issue("label_file", file, NO_IMAGE_FOR_LABEL,
                            detail=f"{len(lines)} boxes not used", boxes=len(lines)))


class UnusableImage(Exception):
    """An image file whose header cannot be read: ``reason`` (a report reason) and ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the image header, as decoded (EXIF rotation applied).

    Reads the header only, not the pixels.

    Raises:
        UnusableImage: :data:`UNREADABLE_IMAGE` (the file cannot be opened: rights, a folder) or
            :data:`NOT_AN_IMAGE` (no image format recognised, or a header claiming more pixels than
            Pillow's decompression-bomb limit); :data:`UNREADABLE_IMAGE` too for a FIFO, socket or device (never
            opened: reading one would block). The detail names no path.
    """
    kind = regular_file_problem(path)
    if kind is not None and kind != "not found":     # a missing file: open() below says so, as before
        raise UnusableImage(UNREADABLE_IMAGE, kind)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Image.DecompressionBombError as err:
        raise UnusableImage(NOT_AN_IMAGE, f"the header claims too many pixels ({err})") from None
    except UnidentifiedImageError:
        raise UnusableImage(NOT_AN_IMAGE, "cannot read the image header") from None
    except OSError as err:
        if err.errno is not None:       # from open() or read(): the file, not its content
            raise UnusableImage(UNREADABLE_IMAGE, err.strerror or type(err).__name__) from None
        raise UnusableImage(NOT_AN_IMAGE, "cannot read the image header") from None
    except (ValueError, SyntaxError):
        raise UnusableImage(NOT_AN_IMAGE, "cannot read the image header") from None
    if orientation in _ROTATED_ORIENTATIONS:
        return height, width
    return width, height


# ----------------------------------------------------------------------------------------- COCO


def read_coco(json_path: Path, images_dir: Path | None = None) -> tuple[RawDataset, list[Issue]]:
    """Read a COCO ``instances_*.json`` (one split, returned as ``"train"``).

    Boxes ``[x, y, w, h]`` become ``xyxy`` pixels as written (not clipped); classes are the json's
    categories in ascending id order and keep their ids. Crowd annotations (``iscrowd = 1``) are
    skipped and reported with reason ``"crowd"``; annotations with an unknown category or image id,
    or a bbox that is not 4 numbers, are reported too. An image entry without an integer ``id`` or a
    ``file_name`` is skipped (:data:`MALFORMED_IMAGE_ENTRY`), so are all entries sharing an ``id`` (which
    boxes are whose is unknown) and entries whose ``file_name`` leaves ``images_dir``
    (see :func:`resolve_below`); the boxes of a skipped image are counted on its issue.

    Args:
        json_path: the COCO json file.
        images_dir: folder that ``file_name`` is relative to, and the dataset root no image may leave;
            default the json's folder.

    Raises:
        DataError: the file is missing, not JSON, lacks ``images``/``categories``, or its categories
            lack ids or names or repeat an id (names the path).
    """
    json_path = Path(json_path)
    images_dir = Path(images_dir) if images_dir is not None else json_path.parent
    coco = _load_coco(json_path)
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    names = [printable(str(c["name"])) for c in cats]
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    json_file = json_path.name
    issues: list[Issue] = []
    images, skipped = _coco_images(coco["images"], images_dir, json_file, issues)
    for ann in coco.get("annotations", []):
        if not isinstance(ann, dict):
            issues.append(Issue("box", json_file, MALFORMED_ANNOTATION, boxes=1,
                                detail=f"annotation {ann!r:.80} is not an object"))
            continue
        box = _coco_box(ann, cat_index, images, json_file, issues)
        if box is None:
            continue
        image_id = ann["image_id"]
        if image_id in skipped:
            skipped[image_id].boxes += 1
        else:
            images[image_id].boxes.append(box)
    kept = [image for image_id, image in images.items() if image_id not in skipped]
    return RawDataset(names, [c["id"] for c in cats], {"train": kept}), issues


MAX_COCO_JSON_BYTES = 2 * 2**30
"""Largest COCO annotation file read (bytes; 2 GiB: COCO train2017's is 0.45 GB; json.loads holds several times it)."""
MAX_LABEL_FILE_BYTES = 16 * 2**20
"""Largest YOLO label file read (bytes; 16 MiB: some 400,000 boxes)."""
MAX_SPEC_BYTES = 2**20
"""Largest dataset.yaml read (bytes; 1 MiB)."""


def _load_coco(json_path: Path) -> dict[str, Any]:
    problem = regular_file_problem(json_path, MAX_COCO_JSON_BYTES)
    if problem is not None:
        raise DataError(f"{json_path}: {'no such file' if problem == 'not found' else problem}")
    try:
        coco = json.loads(json_path.read_text(encoding="utf-8"))
        problem = _coco_structure_problem(coco)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        problem = f"{type(err).__name__}: {err}"
    if problem:
        raise DataError(f"{json_path}: not a readable COCO instances json ({problem})")
    if not coco["images"]:
        raise DataError(f"{json_path}: no images listed")
    return coco


def _coco_structure_problem(coco: Any) -> str | None:
    """What makes ``coco`` unusable as an instances json, or None (bad image entries and annotations are
    reported and skipped one by one, not here)."""
    if not isinstance(coco, dict):
        return "top level is not an object"
    for key in ("images", "categories"):
        if not isinstance(coco.get(key), list):
            return f"{key!r} is missing or not a list"
    if not isinstance(coco.get("annotations", []), list):
        return "'annotations' is not a list"
    seen = set()
    for cat in coco["categories"]:
        if not (isinstance(cat, dict) and _is_int(cat.get("id")) and "name" in cat):
            return f"category {cat!r} lacks an integer id or a name"
        if cat["id"] in seen:
            return f"category id {cat['id']} is used twice"
        seen.add(cat["id"])
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _coco_images(
    entries: list[Any], images_dir: Path, json_file: str, issues: list[Issue]
) -> tuple[dict[int, RawImage], dict[int, Issue]]:
    """The image entries by id, and the ids whose images are skipped (their issue, to count their boxes)."""
    root = images_dir.resolve()
    images: dict[int, RawImage] = {}
    skipped: dict[int, Issue] = {}
    for entry in entries:
        name = entry.get("file_name") if isinstance(entry, dict) else None
        image_id = entry.get("id") if isinstance(entry, dict) else None
        if not (isinstance(name, str) and name and _is_int(image_id)):
            issue = Issue("image", name if isinstance(name, str) and name else json_file, MALFORMED_IMAGE_ENTRY,
                          detail=f"image entry {entry!r:.120}: needs an integer 'id' and a 'file_name'")
            issues.append(issue)
            if _is_int(image_id) and image_id not in images:    # its annotations are counted on the issue
                images[image_id] = RawImage(images_dir, issue.file, None, None, [], json_file)
                skipped[image_id] = issue
            continue
        path = resolve_below(images_dir / name, root)
        if isinstance(path, tuple):
            file = name
        else:
            file = display_path(path, root, resolved=True)
        if image_id in images:
            first = images[image_id]
            if image_id not in skipped:
                skipped[image_id] = Issue("image", first.file, DUPLICATE_IMAGE_ID,
                                          detail=f"image id {image_id} is also the id of {file}")
                issues.append(skipped[image_id])
            issues.append(Issue("image", file, DUPLICATE_IMAGE_ID,
                                detail=f"image id {image_id} is also the id of {first.file}"))
            continue
        width, height = _recorded_size(entry)
        images[image_id] = RawImage(path if isinstance(path, Path) else images_dir / name, file, width, height,
                                    [], json_file)
        if isinstance(path, tuple):
            skipped[image_id] = Issue("image", file, path[0], detail=path[1])
            issues.append(skipped[image_id])
    return images, skipped


def _recorded_size(entry: dict[str, Any]) -> tuple[int | None, int | None]:
    try:
        return int(entry["width"]), int(entry["height"])
    except (KeyError, TypeError, ValueError):
        return None, None


def _coco_box(
    ann: dict[str, Any], cat_index: dict[int, int], images: dict[int, RawImage], json_file: str,
    issues: list[Issue],
) -> RawBox | None:
    """One annotation -> RawBox; None (with an issue) for crowd and unusable annotations."""
    problem = _coco_ann_problem(ann, cat_index, images)
    if problem is None:
        bbox = _bbox(ann.get("bbox"))
        if bbox is not None:
            x, y, w, h = bbox
            return RawBox(cat_index[ann["category_id"]], (x, y, x + w, y + h), ann_id=ann.get("id"))
        bad = ann.get("bbox")
        problem = (MALFORMED_BBOX, f"annotation id {ann.get('id')}: bbox {bad!r:.80} is not 4 numbers")
    issues.append(Issue("box", json_file, problem[0], detail=problem[1], boxes=1))
    return None


def _coco_ann_problem(
    ann: dict[str, Any], cat_index: dict[int, int], images: dict[int, RawImage]
) -> tuple[str, str] | None:
    """(reason, detail) when an annotation cannot be used as a box (crowd, unknown image/class)."""
    ann_id = ann.get("id")
    image_id, category_id = ann.get("image_id"), ann.get("category_id")
    image = images.get(image_id) if _is_int(image_id) else None
    if image is None:
        return UNKNOWN_IMAGE, f"annotation id {ann_id}: image id {image_id!r:.40} not in images"
    where = f"annotation id {ann_id} of {image.file}"
    if ann.get("iscrowd", 0):
        return CROWD, where
    if not _is_int(category_id) or category_id not in cat_index:
        return UNKNOWN_CATEGORY, f"{where}: category id {category_id!r:.40} not in categories"
    return None


def _bbox(raw: Any) -> tuple[float, float, float, float] | None:
    """``[x, y, w, h]`` as 4 floats, or None unless it is a list of 4 JSON numbers."""
    if not isinstance(raw, list | tuple) or len(raw) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
        return None
    x, y, w, h = (float(v) for v in raw)
    return x, y, w, h
