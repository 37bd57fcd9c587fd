"""Reader of Pascal VOC datasets: one XML annotation file per image.

Layouts (found by :func:`find_voc_root`; folder names in either spelling):

1. ``images/*.jpg`` + ``annotations/*.xml`` (e.g. the Raccoon dataset): every image is ``train``
   (the caller makes the seeded split).
2. A VOCdevkit year folder: ``JPEGImages/`` + ``Annotations/`` + optional ``ImageSets/Main/*.txt`` (one
   image id per line). ``train.txt`` and ``val.txt`` together give the ``train`` and ``val`` splits; else
   ``trainval.txt`` (or ``train.txt`` alone) gives ``train``; ids of ``test.txt`` are not used (counted in
   the notes), nor are ids listed nowhere. Without those lists every annotation is ``train``. The source is
   the year folder (``VOC2007/``) or a folder holding exactly one ``VOC*`` year folder (``VOCdevkit/``).

An image and its annotation file are paired by stem (``a.jpg`` <-> ``a.xml``), as the devkit pairs
``JPEGImages/<id>.jpg`` with ``Annotations/<id>.xml``. An image without an annotation file is a background
image (counted in the notes); an annotation file without an image is reported.

Boxes: ``<bndbox>`` holds ``xmin ymin xmax ymax`` as 1-based pixel indices (the devkit's convention:
the top-left pixel is (1, 1)). They are returned as ``xyxy`` in 0-based pixels by subtracting 1 from all
four, as the authors' YOLOX VOC loader does (and adds 1 back when it writes VOC results), so a box from
this reader is the one their VOC models were trained on: ``1 1 10 20`` -> ``(0, 0, 9, 19)``. Values may be
written as floats (``"123.0"``); a fraction is kept (``10.5`` -> ``9.5``; the authors truncate it).

What is skipped, each as an :class:`~yolox.data.readers.Issue` (nothing is dropped silently, and no bad
file stops the rest of the dataset from being read):

- an object marked ``<difficult>1</difficult>`` (:data:`DIFFICULT`): the devkit's evaluation ignores
  these objects, and a box the annotators could barely see is a poor training target (the authors'
  loader keeps them; this reader reports them instead, so their count is in ``report.json``);
- an object without a ``<name>`` (:data:`MALFORMED_OBJECT`), with a missing or non-numeric ``<bndbox>``
  coordinate (:data:`~yolox.data.readers.MALFORMED_BBOX`), or of a class not in ``names``
  (:data:`~yolox.data.readers.UNKNOWN_CATEGORY`);
- an image whose annotation file cannot be used, with all its boxes: larger than :data:`MAX_XML_BYTES`,
  unreadable, not well-formed XML or not an ``<annotation>`` (:data:`MALFORMED_XML`), declaring entities
  or external references (:data:`UNSAFE_XML`: parsed with ``defusedxml``, which refuses them, so neither
  an entity expansion bomb nor a reference to another file is ever followed), or whose ``<filename>``
  names an image of another stem (:data:`FILENAME_MISMATCH`);
- an annotation file without an image (:data:`~yolox.data.readers.NO_IMAGE_FOR_LABEL`), an image that
  shares its stem with another (:data:`DUPLICATE_STEM`), an ``ImageSets`` id without image nor annotation
  (:data:`UNKNOWN_ID`), and any file that leaves the dataset root (see
  :func:`~yolox.data.readers.resolve_below`).

``<filename>`` is informative in VOC (labelImg writes it when the image is labelled; it goes stale when
files are renamed), so it does not pair files. When it names another stem, though, the boxes may have been
drawn on another image (a copied annotation file): the image is skipped rather than trained on with boxes
that may not be its own; fixing or removing ``<filename>`` brings it back. One that differs from the
image's name only in extension or letter case is noted, and the image is used.

``<size>`` is not trusted: the image header gives the size (a different ``<size>`` is noted). Boxes are
not checked here: :mod:`yolox.data.validate` checks them (inside the image, positive size, finite).

Classes: ``names`` when given, else the sorted ``<name>`` values of all annotation files read (difficult
objects included); category ids by :func:`~yolox.data.readers.category_ids_for`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as StdET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from yolox.data.readers import (
    IMAGE_SUFFIXES,
    LINKED_FOLDER_NOTE,
    MALFORMED_BBOX,
    MISSING_LABEL_NOTE,
    NO_IMAGE_FOR_LABEL,
    NON_IMAGE_FILE_NOTE,
    UNKNOWN_CATEGORY,
    Issue,
    RawBox,
    RawDataset,
    RawImage,
    UnusableImage,
    category_ids_for,
    display_path,
    header_size,
    printable,
    resolve_below,
)
from yolox.errors import DataError

MAX_XML_BYTES = 10_000_000
"""Largest annotation file read (bytes); a VOC annotation is about 1 kB, a larger one is reported, unread."""
MAX_LIST_BYTES = 10_000_000
"""Largest ``ImageSets/Main/*.txt`` read (bytes)."""

# Reasons (the strings appear in report.json).
MALFORMED_XML = "malformed annotation file"
UNSAFE_XML = "unsafe annotation file"
XML_TOO_LARGE = "annotation file too large"
UNREADABLE_XML = "unreadable annotation file"
FILENAME_MISMATCH = "<filename> names another image"
DIFFICULT = "difficult object"
MALFORMED_OBJECT = "malformed object"
DUPLICATE_STEM = "another image has the same stem"
UNKNOWN_ID = "listed id without image or annotation"
IN_TRAIN_AND_VAL = "listed in train and val"

# Notes (counts of non-error observations).
SIZE_NOTE = "<size> differs from the image header (header used)"
FILENAME_CASE_NOTE = "<filename> differs from the image name in extension or case only (image used)"
TEST_SET_NOTE = "ImageSets/Main/test.txt images not used"
UNLISTED_NOTE = "images or annotations listed in no ImageSets/Main file (not used)"
NO_SPLIT_LIST_NOTE = "ImageSets/Main has no train.txt nor trainval.txt (ignored)"
OTHER_FILE_NOTE = "files other than .xml in the annotation folder ignored"
SUBFOLDER_NOTE = "sub-folders of the image and annotation folders not read"

_ANNOTATION_DIRS = ("Annotations", "annotations")
_IMAGE_DIRS = ("JPEGImages", "images")
_CORNERS = ("xmin", "ymin", "xmax", "ymax")
_OBJECT_TAG = re.compile(rb"<object[\s>]")


@dataclass(frozen=True)
class VocLayout:
    """The folders of a VOC dataset, all resolved: ``root`` (no file may leave it), ``images``,
    ``annotations``, and ``sets`` (``ImageSets/Main``) or None."""

    root: Path
    images: Path
    annotations: Path
    sets: Path | None


@dataclass
class _Annotation:
    """One annotation file as parsed: report name, ``<filename>``, ``<size>``, ``<object>`` elements, and
    ``problem`` (reason, detail) when it cannot be used; ``count``: boxes lost with it (its objects)."""

    file: str
    filename: str = ""
    size: tuple[float | None, float | None] = (None, None)
    objects: list[StdET.Element] = field(default_factory=list)
    problem: tuple[str, str] | None = None
    count: int = 0


def is_voc_source(path: Path) -> bool:
    """True for a folder that looks like a VOC dataset: no ``dataset.yaml``, and ``annotations/`` or
    ``Annotations/`` holding .xml files, in it or in one of its ``VOC*`` sub-folders."""
    path = Path(path)
    if not path.is_dir() or (path / "dataset.yaml").exists():
        return False
    return _annotation_dir(path) is not None or any(
        c.is_dir() and _annotation_dir(c) is not None for c in path.glob("VOC*")
    )


def find_voc_root(source: Path) -> Path:
    """The VOC folder of ``source``: ``source`` itself when it holds ``annotations/`` or ``Annotations/``
    with .xml files, else its one ``VOC*`` sub-folder that does.

    Raises:
        DataError: no such folder, or several ``VOC*`` sub-folders (the message names them).
    """
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"{source}: not a folder; a Pascal VOC source is a folder with annotations/*.xml")
    if _annotation_dir(source) is not None:
        return source
    years = [c for c in sorted(source.glob("VOC*")) if c.is_dir() and _annotation_dir(c) is not None]
    if len(years) > 1:
        raise DataError(f"{source} holds several VOC folders ({', '.join(c.name for c in years)}): "
                        "give one of them as the source")
    if not years:
        raise DataError(f"{source}: no annotations/ or Annotations/ folder with .xml files (Pascal VOC), "
                        "in it or in a VOC* sub-folder")
    return years[0]


def _annotation_dir(folder: Path) -> Path | None:
    for name in _ANNOTATION_DIRS:
        candidate = folder / name
        if candidate.is_dir() and any(p.suffix.lower() == ".xml" for p in candidate.iterdir()):
            return candidate
    return None


def voc_layout(source: Path) -> VocLayout:
    """The folders of the VOC dataset at ``source`` (see :func:`find_voc_root`), resolved.

    Raises:
        DataError: not a VOC folder, no ``images/`` or ``JPEGImages/`` beside the annotations, or a
            folder that resolves outside the VOC folder.
    """
    voc = find_voc_root(source)
    root = voc.resolve()
    annotations = _inside(_annotation_dir(voc) or voc, root)
    image_dir = next((voc / n for n in _IMAGE_DIRS if (voc / n).is_dir()), None)
    if image_dir is None:
        raise DataError(f"{voc}: no JPEGImages/ or images/ folder beside {annotations.name}/")
    sets = voc / "ImageSets" / "Main"
    sets_dir = _inside(sets, root) if sets.is_dir() else None
    return VocLayout(root, _inside(image_dir, root), annotations, sets_dir)


def _inside(folder: Path, root: Path) -> Path:
    resolved = resolve_below(folder, root)
    if isinstance(resolved, tuple):
        raise DataError(f"{folder} {resolved[1]}")
    return resolved


def read_voc(source: Path, names: list[str] | None = None) -> tuple[RawDataset, list[Issue]]:
    """Read a Pascal VOC dataset (layouts, box convention and skips in the module docstring).

    Args:
        source: the VOC folder (``images/`` + ``annotations/``, or a devkit year folder), or a folder
            holding exactly one ``VOC*`` year folder.
        names: the class names (index order); default the sorted ``<name>`` values found.

    Returns:
        The raw dataset: ``train``, and ``val`` when ``ImageSets/Main`` has ``train.txt`` and ``val.txt``;
        boxes ``xyxy`` in 0-based image pixels, unchecked; each image's size from its header (pixels, EXIF
        rotation applied). And the issues met while reading.

    Raises:
        DataError: not a VOC folder (see :func:`voc_layout`), an ``ImageSets`` list that cannot be read,
            ``names`` empty or repeating a name, or no class at all (no ``names`` and no named object).
    """
    layout = voc_layout(Path(source))
    issues: list[Issue] = []
    notes: Counter[str] = Counter()
    images = _list_stems(layout.images, IMAGE_SUFFIXES, notes, NON_IMAGE_FILE_NOTE)
    xmls = _list_stems(layout.annotations, (".xml",), notes, OTHER_FILE_NOTE)
    ids = _split_ids(layout, images.keys() | xmls.keys(), issues, notes)
    parsed = {i: _read_annotation(xmls[i], layout.root, issues) for s in ids.values() for i in s if i in xmls}
    if names is None:
        names = sorted({n for ann in parsed.values() for n in map(_name, ann.objects) if n})
        if not names:
            raise DataError(f"{layout.root}: no <object> with a <name> in any readable annotation file: "
                            "no class to learn (is this the right folder?)")
    elif not names or len(set(names)) != len(names):
        raise DataError(f"names {names!r}: give each class name once, at least one")
    index = {n: i for i, n in enumerate(names)}
    splits = {
        split: [im for i in split_ids
                if (im := _read_image(i, images.get(i, []), parsed.get(i), layout, index, issues, notes))]
        for split, split_ids in ids.items()
    }
    return RawDataset(list(names), category_ids_for(list(names)), splits, notes), issues


def _list_stems(folder: Path, suffixes: tuple[str, ...], notes: Counter[str], other_note: str
                ) -> dict[str, list[Path]]:
    """Files of ``folder`` (not its sub-folders) with one of ``suffixes``, by stem, sorted by name; links
    and broken links included (the reader reports the bad ones); other files counted in ``other_note``."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            notes[LINKED_FOLDER_NOTE if path.is_symlink() else SUBFOLDER_NOTE] += 1
        elif path.suffix.lower() in suffixes and (path.is_file() or path.is_symlink()):
            found.setdefault(path.stem, []).append(path)
        else:
            notes[other_note] += 1
    return found


def _split_ids(layout: VocLayout, known: set[str], issues: list[Issue], notes: Counter[str]
               ) -> dict[str, list[str]]:
    """The ids (stems) of each split: from ``ImageSets/Main`` when it has the lists, else all, as train."""
    lists = {} if layout.sets is None else {
        name: layout.sets / f"{name}.txt" for name in ("train", "val", "trainval", "test")
        if (layout.sets / f"{name}.txt").is_file()
    }
    if "train" in lists and "val" in lists:
        chosen = {"train": lists["train"], "val": lists["val"]}
    elif "trainval" in lists or "train" in lists:
        chosen = {"train": lists.get("trainval", lists.get("train"))}
    else:
        if layout.sets is not None:
            notes[NO_SPLIT_LIST_NOTE] += 1
        return {"train": sorted(known)}
    ids = {split: _read_ids(path, layout.root, known, issues) for split, path in chosen.items()}
    if "val" in ids:
        both = set(ids["train"]) & set(ids["val"])
        ids["val"] = [i for i in ids["val"] if i not in both]
        val_file = display_path(chosen["val"], layout.root)
        issues.extend(Issue("image", val_file, IN_TRAIN_AND_VAL, detail=f"id {i!r:.80}: kept in train only")
                      for i in sorted(both))
    listed = {i for split_ids in ids.values() for i in split_ids}
    test = set(_read_ids(lists["test"], layout.root, known, None)) - listed if "test" in lists else set()
    if test:
        notes[TEST_SET_NOTE] += len(test)
    if known - listed - test:
        notes[UNLISTED_NOTE] += len(known - listed - test)
    return ids


def _read_ids(path: Path, root: Path, known: set[str], issues: list[Issue] | None) -> list[str]:
    """The ids of an ``ImageSets`` list (first word of each line, in order, once each) that name an image
    or an annotation file; the others are reported in ``issues`` (when given).

    Raises:
        DataError: the file leaves ``root``, is larger than :data:`MAX_LIST_BYTES`, or is unreadable.
    """
    resolved = _inside(path, root)
    file = display_path(resolved, root, resolved=True)
    try:
        if resolved.stat().st_size > MAX_LIST_BYTES:
            raise DataError(f"{path}: larger than {MAX_LIST_BYTES} bytes: not an image id list")
        text = resolved.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read this image id list ({err})") from None
    ids: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if words[0] in known:
            ids.setdefault(words[0])
        elif issues is not None:
            issues.append(Issue("image", file, UNKNOWN_ID, line=number,
                                detail=f"id {words[0]!r:.80}: no image nor annotation file of that name"))
    return list(ids)


def _read_annotation(paths: list[Path], root: Path, issues: list[Issue]) -> _Annotation:
    """Parse the annotation file of a stem (listed in the resolved annotation folder) with ``defusedxml``; a
    file that cannot be used is returned with its ``problem``. Extra files of the same stem (``a.XML`` beside
    ``a.xml``) are reported."""
    path, *extra = paths
    for other in extra:
        issues.append(Issue("label_file", display_path(other, root, resolved=True), DUPLICATE_STEM,
                            detail=f"{path.name} is the annotation file of this stem"))
    file = display_path(path, root, resolved=True)
    resolved = resolve_below(path, root, listed=True)
    if isinstance(resolved, tuple):
        return _Annotation(file, problem=resolved)
    try:
        if not resolved.is_file():
            return _Annotation(file, problem=(UNREADABLE_XML, "not a regular file"))
        size = resolved.stat().st_size
        if size > MAX_XML_BYTES:
            why = f"{size} bytes, more than the {MAX_XML_BYTES} read at most"
            return _Annotation(file, problem=(XML_TOO_LARGE, why))
        with resolved.open("rb") as f:
            data = f.read(MAX_XML_BYTES + 1)
    except OSError as err:
        return _Annotation(file, problem=(UNREADABLE_XML, err.strerror or type(err).__name__))
    count = len(_OBJECT_TAG.findall(data))
    try:
        tree = SafeET.fromstring(data)
    except DefusedXmlException as err:
        why = f"refused ({err}): entities and external references can expand without bound or read files"
        return _Annotation(file, problem=(UNSAFE_XML, why), count=count)
    except (StdET.ParseError, ValueError, LookupError) as err:
        return _Annotation(file, problem=(MALFORMED_XML, f"{type(err).__name__}: {err}"), count=count)
    if tree.tag != "annotation":
        why = f"root element <{tree.tag:.40}>, expected <annotation>"
        return _Annotation(file, problem=(MALFORMED_XML, why), count=count)
    objects = tree.findall("object")
    size_tags = (_number(tree.findtext("size/width")), _number(tree.findtext("size/height")))
    filename = (tree.findtext("filename") or "").strip().replace("\\", "/").rsplit("/", 1)[-1]
    return _Annotation(file, filename, size_tags, objects, count=len(objects))


def _read_image(
    stem: str, paths: list[Path], ann: _Annotation | None, layout: VocLayout, index: dict[str, int],
    issues: list[Issue], notes: Counter[str],
) -> RawImage | None:
    """The image of ``stem`` with its boxes; None, with an issue counting its boxes, when it is unusable."""
    lost = ann.count if ann is not None else 0
    if not paths:
        assert ann is not None     # every id names an image or an annotation file
        reason, detail = ann.problem or (NO_IMAGE_FOR_LABEL, f"no image {stem}.* in {layout.images.name}/")
        issues.append(Issue("label_file", ann.file, reason, detail=detail, boxes=lost))
        return None
    listed = _pick_image(paths, ann, layout.root, issues)
    image_path = resolve_below(listed, layout.root, listed=True)
    if isinstance(image_path, tuple):
        issues.append(Issue("image", display_path(listed, layout.root, resolved=True), image_path[0],
                            detail=image_path[1], boxes=lost))
        return None
    file = display_path(image_path, layout.root, resolved=True)
    problem = _annotation_problem(listed.name, ann, notes)
    if problem is not None:
        issues.append(Issue("image", file, problem[0], detail=problem[1], boxes=lost))
        return None
    try:
        width, height = header_size(image_path)
    except UnusableImage as err:
        issues.append(Issue("image", file, err.reason, detail=err.detail, boxes=lost))
        return None
    if ann is None:
        notes[MISSING_LABEL_NOTE] += 1
        return RawImage(image_path, file, width, height)
    if None not in ann.size and ann.size != (width, height):
        notes[SIZE_NOTE] += 1
    return RawImage(image_path, file, width, height, _boxes(ann, index, issues), ann.file)


def _pick_image(paths: list[Path], ann: _Annotation | None, root: Path, issues: list[Issue]) -> Path:
    """The image of a stem: the one ``<filename>`` names, else the first by name; the others are reported."""
    named = [p for p in paths if ann is not None and p.name == ann.filename]
    chosen = (named or paths)[0]
    for other in paths:
        if other != chosen:
            issues.append(Issue("image", display_path(other, root, resolved=True), DUPLICATE_STEM,
                                detail=f"{chosen.name} is the image of this stem"))
    return chosen


def _annotation_problem(
    image_name: str, ann: _Annotation | None, notes: Counter[str]
) -> tuple[str, str] | None:
    """(reason, detail) when an image's annotation file cannot be used (or its ``<filename>`` names an image
    of another stem); the detail names the annotation file."""
    if ann is None:
        return None
    if ann.problem is not None:
        return ann.problem[0], f"its annotation file {printable(ann.file)}: {ann.problem[1]}"
    if ann.filename and ann.filename != image_name:
        if Path(ann.filename).stem.casefold() != Path(image_name).stem.casefold():
            return FILENAME_MISMATCH, (
                f"its annotation file {printable(ann.file)} says <filename>{ann.filename:.80}</filename>: "
                "its boxes may belong to that image; correct or remove <filename> to use this image")
        notes[FILENAME_CASE_NOTE] += 1
    return None


def _boxes(ann: _Annotation, index: dict[str, int], issues: list[Issue]) -> list[RawBox]:
    """The objects of an annotation file as boxes (``xyxy``, 0-based pixels); skipped ones are reported."""
    boxes = []
    for number, obj in enumerate(ann.objects, start=1):
        box = _object_box(obj, index)
        if isinstance(box, RawBox):
            boxes.append(box)
        else:
            detail = f"object {number} ({_name(obj) or 'no name':.40}): {box[1]}"
            issues.append(Issue("box", ann.file, box[0], detail=detail, boxes=1))
    return boxes


def _object_box(obj: StdET.Element, index: dict[str, int]) -> RawBox | tuple[str, str]:
    """One ``<object>`` as a box, or (reason, detail) when it is skipped."""
    name = _name(obj)
    if not name:
        return MALFORMED_OBJECT, "no <name>"
    if _number(obj.findtext("difficult")) == 1:
        return DIFFICULT, "marked <difficult>1</difficult>"
    if name not in index:
        return UNKNOWN_CATEGORY, f"class {name!r:.40} is not in names"
    corners = _corners(obj)
    if isinstance(corners, str):
        return MALFORMED_BBOX, corners
    x0, y0, x1, y1 = (v - 1.0 for v in corners)      # 1-based pixel indices -> 0-based
    return RawBox(index[name], (x0, y0, x1, y1))


def _corners(obj: StdET.Element) -> tuple[float, float, float, float] | str:
    """``<bndbox>`` xmin ymin xmax ymax as floats (as written), or what is wrong with it."""
    box = obj.find("bndbox")
    if box is None:
        return "no <bndbox>"
    values = []
    for tag in _CORNERS:
        text = box.findtext(tag)
        value = _number(text)
        if value is None:
            return f"<{tag}> is missing" if text is None else f"<{tag}> {text.strip()!r:.40} is not a number"
        values.append(value)
    x0, y0, x1, y1 = values
    return x0, y0, x1, y1


def _name(obj: StdET.Element) -> str:
    return (obj.findtext("name") or "").strip()


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
