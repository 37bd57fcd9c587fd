"""Readers of raw detection datasets: YOLO text labels and COCO ``instances_*.json``.

A reader turns a dataset on disk into :class:`RawDataset`: class names, their COCO category ids and,
per split, the images with their boxes exactly as the files give them (``xyxy`` in pixels, neither
checked nor clipped). Problems that stop a line or an image from being read at all (a label line that
is not ``class cx cy w h``, a crowd annotation, a label file without an image, an image whose header
cannot be read) are returned as :class:`Issue` items next to the data; everything else is checked by
:mod:`yolox.data.validate`.

Category ids: a COCO source keeps its ids (classes in ascending id order). A YOLO source whose names
are the 80 COCO names gets the original COCO ids (:data:`COCO_CATEGORY_IDS`), any other gets
``index + 1``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from PIL import Image

from yolox.data.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from yolox.errors import DataError

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
        """The issue as a JSON-ready dict (``line`` only when set)."""
        out: dict[str, Any] = {"kind": self.kind, "file": self.file}
        if self.line is not None:
            out["line"] = self.line
        out.update({"reason": self.reason, "detail": self.detail, "boxes": self.boxes})
        return out


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
    if not source.is_file():
        raise DataError(f"{source}: no such file; a YOLO source needs a dataset.yaml (or give a COCO .json)")
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
        return [str(n) for n in raw]
    if isinstance(raw, dict) and raw:
        try:
            ids = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            raise DataError(f"{yaml_path}: names: keys must be class ids 0..C-1") from None
        if ids != list(range(len(ids))):
            raise DataError(
                f"{yaml_path}: names: class ids must be 0..{len(ids) - 1} without gaps, got {ids}"
            )
        by_id = {int(k): str(v) for k, v in raw.items()}
        return [by_id[i] for i in ids]
    raise DataError(f"{yaml_path}: names: expected a list of class names or a mapping {{id: name}}")


def _split_dirs(spec: dict[str, Any], key: str, root: Path, yaml_path: Path) -> list[Path]:
    value = spec.get(key)
    if not value:
        raise DataError(f"{yaml_path}: missing key {key!r} (an image folder relative to {root})")
    entries = value if isinstance(value, list) else [value]
    dirs = []
    for entry in entries:
        folder = (root / str(entry)).resolve()
        if not folder.is_dir():
            raise DataError(
                f"{yaml_path}: {key}: {folder} is not a folder (image list files are not supported)"
            )
        dirs.append(folder)
    return dirs


def _list_images(folder: Path, notes: Counter[str]) -> list[Path]:
    images = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
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
    for folder in dirs:
        for image_path in _list_images(folder, notes):
            label_path = label_path_for(image_path)
            used_labels.add(label_path)
            image = _read_yolo_image(image_path, label_path, root, issues, notes)
            if image is not None:
                images.append(image)
    for folder in dirs:
        _report_orphan_labels(label_dir_for(folder), used_labels, root, issues)
    return images


def _read_yolo_image(
    image_path: Path, label_path: Path, root: Path, issues: list[Issue], notes: Counter[str]
) -> RawImage | None:
    """One image and its label file; None (with an issue) when its header cannot be read."""
    image_path = _resolve_in(image_path)   # the folders are resolved already (_split_dirs)
    file = display_path(image_path, root, resolved=True)
    label_file = display_path(_resolve_in(label_path), root, resolved=True)
    lines = _read_label_lines(label_path, label_file, issues, notes)
    size = header_size(image_path)
    if size is None:
        issues.append(Issue("image", file, NOT_AN_IMAGE, detail="cannot read the image header",
                            boxes=len(lines)))
        return None
    width, height = size
    boxes = []
    for number, text in lines:
        box = _parse_label_line(text, number, width, height, label_file, issues)
        if box is not None:
            boxes.append(box)
    return RawImage(image_path, file, width, height, boxes, label_file)


def _read_label_lines(
    label_path: Path, label_file: str, issues: list[Issue], notes: Counter[str]
) -> list[tuple[int, str]]:
    """Non-blank lines of a label file with their 1-based numbers; [] when there is no file."""
    if not label_path.is_file():
        notes[MISSING_LABEL_NOTE] += 1
        return []
    try:
        text = label_path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        issues.append(Issue("label_file", label_file, UNREADABLE_LABEL_FILE, detail=str(err)))
        return []
    return [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


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
    if not label_dir.is_dir():
        return
    for path in sorted(label_dir.rglob("*.txt")):
        if path not in used:
            lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
            issues.append(Issue("label_file", display_path(path, root), NO_IMAGE_FOR_LABEL,
                                detail=f"{len(lines)} boxes not used", boxes=len(lines)))


def header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) in pixels from the image header, as decoded (EXIF rotation applied).

    Reads the header only, not the pixels. None when the file is missing or not an image.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    if orientation in _ROTATED_ORIENTATIONS:
        return height, width
    return width, height


# ----------------------------------------------------------------------------------------- COCO


def read_coco(json_path: Path, images_dir: Path | None = None) -> tuple[RawDataset, list[Issue]]:
    """Read a COCO ``instances_*.json`` (one split, returned as ``"train"``).

    Boxes ``[x, y, w, h]`` become ``xyxy`` pixels as written (not clipped); classes are the json's
    categories in ascending id order and keep their ids. Crowd annotations (``iscrowd = 1``) are
    skipped and reported with reason ``"crowd"``; annotations with an unknown category or image id,
    or a bbox that is not 4 numbers, are reported too.

    Args:
        json_path: the COCO json file.
        images_dir: folder that ``file_name`` is relative to; default the json's folder.

    Raises:
        DataError: the file is missing, not JSON, or lacks ``images``/``categories`` (names the path).
    """
    json_path = Path(json_path)
    images_dir = Path(images_dir) if images_dir is not None else json_path.parent
    coco = _load_coco(json_path)
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    names = [str(c["name"]) for c in cats]
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    json_file = json_path.name
    issues: list[Issue] = []
    images = _coco_images(coco["images"], images_dir, json_file, issues)
    for ann in coco.get("annotations", []):
        box = _coco_box(ann, cat_index, images, json_file, issues)
        if box is not None:
            images[ann["image_id"]].boxes.append(box)
    return RawDataset(names, [c["id"] for c in cats], {"train": list(images.values())}), issues


def _load_coco(json_path: Path) -> dict[str, Any]:
    if not json_path.is_file():
        raise DataError(f"{json_path}: no such file")
    try:
        coco = json.loads(json_path.read_text())
        problem = _coco_structure_problem(coco)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        problem = f"{type(err).__name__}: {err}"
    if problem:
        raise DataError(f"{json_path}: not a readable COCO instances json ({problem})")
    if not coco["images"]:
        raise DataError(f"{json_path}: no images listed")
    return coco


def _coco_structure_problem(coco: Any) -> str | None:
    """What makes ``coco`` unusable as an instances json, or None."""
    if not isinstance(coco, dict):
        return "top level is not an object"
    for key in ("images", "categories"):
        if not isinstance(coco.get(key), list):
            return f"{key!r} is missing or not a list"
    if not isinstance(coco.get("annotations", []), list):
        return "'annotations' is not a list"
    for cat in coco["categories"]:
        if not (isinstance(cat, dict) and isinstance(cat.get("id"), int) and "name" in cat):
            return f"category {cat!r} lacks an integer id or a name"
    for entry in coco["images"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("id"), int) and "file_name" in entry):
            return f"image {entry!r} lacks an integer id or a file_name"
    for ann in coco.get("annotations", []):
        if not isinstance(ann, dict):
            return f"annotation {ann!r} is not an object"
    return None


def _coco_images(
    entries: list[dict[str, Any]], images_dir: Path, json_file: str, issues: list[Issue]
) -> dict[int, RawImage]:
    images: dict[int, RawImage] = {}
    for entry in entries:
        path = (images_dir / str(entry["file_name"])).resolve()
        file = display_path(path, images_dir)
        if entry["id"] in images:
            issues.append(Issue("image", file, DUPLICATE_IMAGE_ID,
                                detail=f"image id {entry['id']} already used by {images[entry['id']].file}"))
            continue
        width, height = _recorded_size(entry)
        images[entry["id"]] = RawImage(path, file, width, height, [], json_file)
    return images


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
        problem = (MALFORMED_BBOX, f"annotation id {ann.get('id')}: bbox {bad!r} is not 4 numbers")
    issues.append(Issue("box", json_file, problem[0], detail=problem[1], boxes=1))
    return None


def _coco_ann_problem(
    ann: dict[str, Any], cat_index: dict[int, int], images: dict[int, RawImage]
) -> tuple[str, str] | None:
    """(reason, detail) when an annotation cannot be used as a box (crowd, unknown image/class)."""
    ann_id = ann.get("id")
    image = images.get(ann.get("image_id"))
    if image is None:
        return UNKNOWN_IMAGE, f"annotation id {ann_id}: image id {ann.get('image_id')!r} not in images"
    where = f"annotation id {ann_id} of {image.file}"
    if ann.get("iscrowd", 0):
        return CROWD, where
    if ann.get("category_id") not in cat_index:
        return UNKNOWN_CATEGORY, f"{where}: category id {ann.get('category_id')!r} not in categories"
    return None


def _bbox(raw: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(raw, list | tuple) or len(raw) != 4:
        return None
    try:
        x, y, w, h = (float(v) for v in raw)
    except (TypeError, ValueError):
        return None
    return x, y, w, h
