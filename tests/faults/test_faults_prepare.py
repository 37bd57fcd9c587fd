"""Bad-input matrix of ``yolox prepare`` (issue 11): each case copies a small base of real coco128 images and
labels (YOLO layout, and the same data as a COCO json), breaks one thing, prepares it and checks the exact
outcome: the items ``report.json`` lists as skipped (kind, file, line, reason, boxes lost), and that every good
image of the same input is in the prepared json with all its good boxes (or the exact error for inputs that
cannot be prepared at all). Every prepared output is also checked to hold no path of the machine (the
prepared bytes depend on content only) and to be valid UTF-8.

Test ids are ``prepare-<kind>``. The disk-full cases at the end check that the previous prepared dataset
survives a write that runs out of space.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from yolox.config import DataParams
from yolox.data import prepare as prepare_module
from yolox.data.prepare import prepare_dataset
from yolox.errors import DataError

NAMES = ["000000000009.jpg", "000000000025.jpg", "000000000030.jpg", "000000000036.jpg", "000000000042.jpg",
         "000000000049.jpg"]
N0, N1 = NAMES[0], NAMES[1]            # N0 (8 boxes) is the image most cases break
STEM0 = N0.removesuffix(".jpg")
IMG0 = f"images/train/{N0}"             # report names, relative to the dataset root
LBL0 = f"labels/train/{STEM0}.txt"
JSON = "instances.json"


# ------------------------------------------------------------------------------------------- the base


@dataclass(frozen=True)
class Base:
    """The unbroken inputs: a YOLO dataset and a COCO json of the same images, and their boxes per image."""

    yolo: Path
    coco: Path
    boxes: dict[str, int]
    sizes: dict[str, tuple[int, int]]


@pytest.fixture(scope="module")
def base(coco128_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Base:
    top = tmp_path_factory.mktemp("base")
    yolo, coco = top / "yolo", top / "coco"
    (yolo / "images" / "train").mkdir(parents=True)
    (yolo / "labels" / "train").mkdir(parents=True)
    (coco / "images").mkdir(parents=True)
    spec = yaml.safe_load((coco128_dir / "dataset.yaml").read_text())
    (yolo / "dataset.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train",
                                                       "names": spec["names"]}))
    boxes, sizes = {}, {}
    instances: dict = {"images": [], "annotations": [],
                       "categories": [{"id": i + 1, "name": n} for i, n in spec["names"].items()]}
    for image_id, name in enumerate(NAMES, start=1):
        src = coco128_dir / "images" / "train2017" / name
        label = coco128_dir / "labels" / "train2017" / name.replace(".jpg", ".txt")
        shutil.copy(src, yolo / "images" / "train" / name)
        shutil.copy(label, yolo / "labels" / "train" / label.name)
        shutil.copy(src, coco / "images" / name)
        height, width = cv2.imread(str(src)).shape[:2]
        rows = np.loadtxt(label, ndmin=2)
        boxes[name], sizes[name] = len(rows), (width, height)
        instances["images"].append({"id": image_id, "file_name": name, "width": width, "height": height})
        for cls, cx, cy, w, h in rows.tolist():
            instances["annotations"].append({
                "id": len(instances["annotations"]) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                "bbox": [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height],
                "area": w * width * h * height, "iscrowd": 0})
    (coco / JSON).write_text(json.dumps(instances))
    return Base(yolo, coco, boxes, sizes)


# ------------------------------------------------------------------------------------------ the cases


@dataclass
class Ctx:
    """A writable copy of one base layout (``root``), and what a case needs to break it."""

    root: Path
    base: Base
    outside: Path            # a folder next to the dataset root, holding a real image and label file
    params: dict = field(default_factory=dict)
    source: Path | None = None

    def image(self, name: str = N0) -> Path:
        return self.root / "images" / "train" / name if self.is_yolo else self.root / "images" / name

    def label(self, name: str = N0) -> Path:
        return self.root / "labels" / "train" / f"{Path(name).stem}.txt"

    @property
    def is_yolo(self) -> bool:
        return (self.root / "dataset.yaml").exists()

    def append(self, *lines: str, name: str = N0) -> int:
        """Append label lines to ``name``'s label file; returns the 1-based number of the first."""
        first = len(self.label(name).read_text().splitlines()) + 1
        with self.label(name).open("a") as f:
            f.write("".join(line + "\n" for line in lines))
        return first

    def spec(self, **changes: object) -> None:
        path = self.root / "dataset.yaml"
        spec = yaml.safe_load(path.read_text())
        spec.update(changes)
        path.write_text(yaml.safe_dump(spec))

    def coco(self, edit: Callable[[dict], object]) -> None:
        path = self.root / JSON
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))

    def kept(self, *lost: str, **changed: int) -> dict[str, int]:
        """Expected boxes per prepared image: the base's, without ``lost`` images, with ``changed`` counts
        (keyword ``name_jpg`` for ``name.jpg``)."""
        boxes = {n: b for n, b in self.base.boxes.items() if n not in lost}
        boxes.update({k.replace("_jpg", ".jpg"): v for k, v in changed.items()})
        return boxes


@dataclass
class Expect:
    """A prepared outcome: ``skipped`` = report entries ``(kind, file, line, reason, boxes)``, ``boxes`` =
    every prepared image's file name -> its box count; ``notes`` must be in the report's notes."""

    skipped: list[tuple[str, str, int | None, str, int]]
    boxes: dict[str, int]
    notes: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    paths_inside: bool = False     # the input itself names an absolute path (reported as written)


@dataclass
class Fails:
    """An input that cannot be prepared at all: the error type and a regex of its message."""

    error: type[Exception]
    match: str


@dataclass(frozen=True)
class Case:
    kind: str
    layout: str
    mutate: Callable[[Ctx], Expect | Fails]


CASES: list[Case] = []


def case(kind: str, layout: str = "yolo") -> Callable[[Callable[[Ctx], Expect | Fails]], Callable]:
    def register(fn: Callable[[Ctx], Expect | Fails]) -> Callable:
        CASES.append(Case(kind, layout, fn))
        return fn
    return register


def image_skip(file: str, reason: str, boxes: int) -> tuple[str, str, None, str, int]:
    return ("image", file, None, reason, boxes)


def box_skip(file: str, line: int | None, reason: str) -> tuple[str, str, int | None, str, int]:
    return ("box", file, line, reason, 1)


# --- YOLO images -------------------------------------------------------------------------------------


@case("yolo-baseline")
def _(c: Ctx) -> Expect:
    return Expect([], c.kept())


@case("truncated-jpeg")
def _(c: Ctx) -> Expect:
    data = c.image().read_bytes()
    c.image().write_bytes(data[: len(data) // 2])
    return Expect([image_skip(IMG0, "truncated JPEG", 8)], c.kept(N0))


@case("zero-byte-image")
def _(c: Ctx) -> Expect:
    c.image().write_bytes(b"")
    return Expect([image_skip(IMG0, "not a decodable image", 8)], c.kept(N0))


@case("text-named-jpg")
def _(c: Ctx) -> Expect:
    c.image().write_text("this is not a JPEG file\n")
    return Expect([image_skip(IMG0, "not a decodable image", 8)], c.kept(N0))


@case("png-bytes-named-jpg")
def _(c: Ctx) -> Expect:
    """The content decides, not the extension: a PNG named .jpg decodes and is kept (bytes as they are)."""
    _, png = cv2.imencode(".png", cv2.imread(str(c.image())))
    c.image().write_bytes(png.tobytes())
    return Expect([], c.kept())


@case("huge-dimension-claim")
def _(c: Ctx) -> Expect:
    """A JPEG whose header claims 65500 x 65500 px (a decompression bomb): never decoded."""
    data = bytearray(c.image().read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (65500).to_bytes(2, "big") * 2     # height, width
    c.image().write_bytes(bytes(data))
    return Expect([image_skip(IMG0, "not a decodable image", 8)], c.kept(N0))


@case("coco-huge-dimension-claim", "coco")
def _(c: Ctx) -> Expect:
    """14000 x 14000 px claimed (under OpenCV's own limit: it would allocate 590 MB to decode it): refused from
    the header, before decoding, as for a YOLO source."""
    data = bytearray(c.image().read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (14000).to_bytes(2, "big") * 2
    c.image().write_bytes(bytes(data))
    c.coco(lambda d: image_entry(d).update(width=14000, height=14000))
    return Expect([image_skip(N0, "not a decodable image", 8)], c.kept(N0))


@case("grayscale-image")
def _(c: Ctx) -> Expect:
    cv2.imwrite(str(c.image()), cv2.imread(str(c.image()), cv2.IMREAD_GRAYSCALE))
    return Expect([], c.kept())


@case("cmyk-jpeg")
def _(c: Ctx) -> Expect:
    Image.open(c.image()).convert("CMYK").save(c.image())
    assert Image.open(c.image()).mode == "CMYK"
    return Expect([], c.kept())


@case("png-16-bit")
def _(c: Ctx) -> Expect:
    pixels = cv2.imread(str(c.image())).astype(np.uint16) * 257
    c.image().unlink()
    cv2.imwrite(str(c.image(f"{STEM0}.png")), pixels)
    return Expect([], c.kept(N0, **{f"{STEM0}.png": 8}))


@case("png-with-alpha")
def _(c: Ctx) -> Expect:
    pixels = cv2.cvtColor(cv2.imread(str(c.image())), cv2.COLOR_BGR2BGRA)
    c.image().unlink()
    cv2.imwrite(str(c.image(f"{STEM0}.png")), pixels)
    return Expect([], c.kept(N0, **{f"{STEM0}.png": 8}))


@case("webp-image")
def _(c: Ctx) -> Expect:
    pixels = cv2.imread(str(c.image()))
    c.image().unlink()
    cv2.imwrite(str(c.image(f"{STEM0}.webp")), pixels)
    return Expect([], c.kept(N0, **{f"{STEM0}.webp": 8}))


@case("exif-rotation")
def _(c: Ctx) -> Expect:
    """EXIF orientation 6 (turned 90 degrees): the image is used as displayed, width and height swapped."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(c.image()).save(c.image(), exif=exif.tobytes(), quality=95)
    width, height = c.base.sizes[N0]
    return Expect([], c.kept(), sizes={N0: (height, width)})


@case("upper-case-extension")
def _(c: Ctx) -> Expect:
    c.image().rename(c.image(f"{STEM0}.JPG"))
    return Expect([], c.kept(N0, **{f"{STEM0}.JPG": 8}))


@case("image-too-small")
def _(c: Ctx) -> Expect:
    cv2.imwrite(str(c.image("small.png")), np.zeros((20, 40, 3), np.uint8))
    c.label("small.png").write_text("0 0.5 0.5 0.5 0.5\n")
    return Expect([image_skip("images/train/small.png", "image too small", 1)], c.kept())


@case("non-image-file-in-images")
def _(c: Ctx) -> Expect:
    (c.image().parent / "notes.txt").write_text("not an image\n")
    (c.image().parent / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return Expect([], c.kept(), notes={"non-image files ignored": 1})


@case("image-in-subfolder")
def _(c: Ctx) -> Expect:
    (c.image().parent / "sub").mkdir()
    (c.label().parent / "sub").mkdir()
    c.image().rename(c.image().parent / "sub" / N0)
    c.label().rename(c.label().parent / "sub" / c.label().name)
    return Expect([], c.kept())


@case("duplicate-file-name")
def _(c: Ctx) -> Expect:
    (c.image().parent / "sub").mkdir()
    (c.label().parent / "sub").mkdir()
    shutil.copy(c.image(N1), c.image().parent / "sub" / N0)
    shutil.copy(c.label(N1), c.label().parent / "sub" / c.label().name)
    return Expect([image_skip(f"images/train/sub/{N0}", "duplicate file name", 2)], c.kept())


@case("duplicate-file-name-across-splits")
def _(c: Ctx) -> Expect:
    for folder in ("images", "labels"):
        (c.root / folder / "val").mkdir()
    for name in (N0, N1):
        shutil.copy(c.image(name), c.root / "images" / "val" / name)
        shutil.copy(c.label(name), c.root / "labels" / "val" / c.label(name).name)
    c.image(N1).unlink()
    c.label(N1).unlink()
    c.spec(val="images/val")
    return Expect([image_skip(f"images/val/{N0}", "duplicate file name", 8)], c.kept())


@case("unicode-file-name")
def _(c: Ctx) -> Expect:
    """A UTF-8 name with spaces and accents is kept as it is."""
    c.image().rename(c.image("café crème 1.jpg"))
    c.label().rename(c.label("café crème 1.jpg"))
    return Expect([], c.kept(N0, **{"café crème 1.jpg": 8}))


# --- YOLO labels -------------------------------------------------------------------------------------


def _bad_line(kind: str, text: str, reason: str) -> None:
    @case(kind)
    def _(c: Ctx) -> Expect:
        line = c.append(text)
        return Expect([box_skip(LBL0, line, reason)], c.kept())


_bad_line("nan-coordinate", "0 nan 0.5 0.1 0.1", "non-finite coordinates")
_bad_line("inf-coordinate", "0 0.5 inf 0.1 0.1", "non-finite coordinates")
_bad_line("negative-width", "0 0.5 0.5 -0.1 0.2", "non-positive size")
_bad_line("zero-size", "0 0.5 0.5 0 0.2", "non-positive size")
_bad_line("box-outside-image", "0 1.5 1.5 0.2 0.2", "outside the image")
_bad_line("class-out-of-range", "80 0.5 0.5 0.1 0.1", "unknown class")
_bad_line("negative-class", "-1 0.5 0.5 0.1 0.1", "unknown class")
_bad_line("non-integer-class", "1.5 0.5 0.5 0.1 0.1", "non-integer class")
_bad_line("class-name-instead-of-id", "person 0.5 0.5 0.1 0.1", "bad label line")
_bad_line("too-many-columns", "0 0.5 0.5 0.1 0.1 0.9", "bad label line")
_bad_line("too-few-columns", "0 0.5 0.5 0.1", "bad label line")
_bad_line("box-too-small", "0 0.5 0.5 0.0001 0.1", "box too small")


@case("box-partly-outside")
def _(c: Ctx) -> Expect:
    """Half outside: clipped to the image, kept, and counted in the notes."""
    c.append("0 0.95 0.5 0.2 0.2")
    return Expect([], c.kept(**{N0: 9}), notes={"boxes clipped to the image (by more than 0.5 px)": 1})


@case("duplicate-box")
def _(c: Ctx) -> Expect:
    c.append(c.label().read_text().splitlines()[0])
    return Expect([], c.kept(**{N0: 9}))


@case("numbers-in-other-notations")
def _(c: Ctx) -> Expect:
    c.append("0 5e-1 +0.5 1E-1 0.100")
    return Expect([], c.kept(**{N0: 9}))


@case("empty-lines")
def _(c: Ctx) -> Expect:
    lines = c.label().read_text().splitlines()
    c.label().write_text("\n" + "\n  \n".join(lines) + "\n\n\t\n")
    return Expect([], c.kept())


@case("trailing-whitespace")
def _(c: Ctx) -> Expect:
    c.label().write_text("".join(f"  {line} \t \n" for line in c.label().read_text().splitlines()))
    return Expect([], c.kept())


@case("crlf-line-endings")
def _(c: Ctx) -> Expect:
    c.label().write_bytes(c.label().read_bytes().replace(b"\n", b"\r\n"))
    return Expect([], c.kept())


@case("utf8-bom")
def _(c: Ctx) -> Expect:
    """A byte-order mark (Windows editors write one) is not part of the first line."""
    c.label().write_bytes(b"\xef\xbb\xbf" + c.label().read_bytes())
    return Expect([], c.kept())


@case("non-utf8-label-file")
def _(c: Ctx) -> Expect:
    """Its boxes cannot be read, so its image is skipped: kept as a background image, its objects would
    become negatives."""
    with c.label().open("ab") as f:
        f.write(b"0 0.5 0.5 0.1 0.1 \xff\xfe\n")
    return Expect([image_skip(IMG0, "unreadable label file", 9)], c.kept(N0))


@case("label-file-is-a-folder")
def _(c: Ctx) -> Expect:
    c.label().unlink()
    c.label().mkdir()
    return Expect([image_skip(IMG0, "unreadable label file", 0)], c.kept(N0))


@case("empty-label-file")
def _(c: Ctx) -> Expect:
    c.label().write_text("")
    return Expect([], c.kept(**{N0: 0}))


@case("image-without-label-file")
def _(c: Ctx) -> Expect:
    c.label().unlink()
    return Expect([], c.kept(**{N0: 0}), notes={"missing label file (background image)": 1})


@case("label-file-without-image")
def _(c: Ctx) -> Expect:
    (c.label().parent / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n\n1 0.2 0.2 0.1 0.1\n")
    return Expect([("label_file", "labels/train/ghost.txt", None, "no image for this label file", 2)], c.kept())


# --- YOLO: paths that leave the dataset root, links, names -------------------------------------------


@case("symlink-image-outside-root")
def _(c: Ctx) -> Expect:
    c.image().unlink()
    c.image().symlink_to(c.outside / N0)
    return Expect([image_skip(IMG0, "outside the dataset root", 8)], c.kept(N0))


@case("symlink-image-inside-root")
def _(c: Ctx) -> Expect:
    """A link to an image elsewhere below the root is followed (the prepared name is the target's)."""
    (c.root / "store").mkdir()
    c.image().rename(c.root / "store" / N0)
    c.image().symlink_to(Path("../../store") / N0)
    return Expect([], c.kept())


@case("symlink-label-outside-root")
def _(c: Ctx) -> Expect:
    c.label().unlink()
    c.label().symlink_to(c.outside / c.label().name)
    return Expect([image_skip(IMG0, "outside the dataset root", 0)], c.kept(N0))


@case("symlink-label-folder-outside-root")
def _(c: Ctx) -> Expect:
    """A label folder that links out: the labels in it are not read, and their images are skipped."""
    for folder in ("images", "labels"):
        (c.root / folder / "train" / "sub").mkdir()
    c.image().rename(c.root / "images" / "train" / "sub" / N0)
    c.label().unlink()
    (c.root / "labels" / "train" / "sub").rmdir()
    (c.root / "labels" / "train" / "sub").symlink_to(c.outside, target_is_directory=True)
    return Expect([image_skip(f"images/train/sub/{N0}", "outside the dataset root", 0)], c.kept(N0))


@case("symlink-orphan-label-outside-root")
def _(c: Ctx) -> Expect:
    (c.label().parent / "ghost.txt").symlink_to(c.outside / c.label().name)
    return Expect([("label_file", "labels/train/ghost.txt", None, "outside the dataset root", 0)], c.kept())


@case("symlink-loop-image")
def _(c: Ctx) -> Expect:
    c.image("loop.jpg").symlink_to("loop2.jpg")
    c.image("loop2.jpg").symlink_to("loop.jpg")
    return Expect([image_skip("images/train/loop.jpg", "broken symbolic link", 0),
                   image_skip("images/train/loop2.jpg", "broken symbolic link", 0)], c.kept())


@case("dangling-symlink-image")
def _(c: Ctx) -> Expect:
    c.image("gone.jpg").symlink_to("nowhere.jpg")
    c.label("gone.jpg").write_text("0 0.5 0.5 0.1 0.1\n")
    return Expect([image_skip("images/train/gone.jpg", "broken symbolic link", 1)], c.kept())


@case("symlink-folder-in-images")
def _(c: Ctx) -> Expect:
    """A linked folder inside a split folder is not entered (wherever it points), and the report says so."""
    (c.image().parent / "linked").symlink_to(c.outside, target_is_directory=True)
    return Expect([], c.kept(), notes={"links to folders not followed": 1})


@case("yaml-train-outside-root")
def _(c: Ctx) -> Fails:
    c.spec(train="../outside")
    return Fails(DataError, r"dataset\.yaml: train: '\.\./outside' .*outside the dataset root")


@case("yaml-train-list-entry-outside-root")
def _(c: Ctx) -> Fails:
    c.spec(train=["images/train", str(c.outside)])
    return Fails(DataError, r"dataset\.yaml: train: '.*/outside' .*outside the dataset root")


@case("yaml-train-folder-links-outside-root")
def _(c: Ctx) -> Fails:
    (c.root / "images" / "more").symlink_to(c.outside, target_is_directory=True)
    c.spec(train=["images/train", "images/more"])
    return Fails(DataError, r"dataset\.yaml: train: 'images/more' .*outside the dataset root")


@case("yaml-absolute-path-key")
def _(c: Ctx) -> Expect:
    """``path:`` declares the root, wherever it is."""
    c.spec(path=str(c.root))
    return Expect([], c.kept())


@case("non-utf8-image-name")
def _(c: Ctx) -> Expect:
    """Skipped: a COCO json holds text, not the name's bytes (see yolox.data.validate.check_image)."""
    name = os.fsdecode(b"bad\xff.jpg")
    shutil.copy(c.image(N1), c.image(name))
    shutil.copy(c.label(N1), c.label(name))
    return Expect([image_skip("images/train/bad\\xff.jpg", "file name is not valid UTF-8", 2)], c.kept())


@case("non-utf8-label-name-without-image")
def _(c: Ctx) -> Expect:
    (c.label().parent / os.fsdecode(b"ghost\xe9.txt")).write_text("0 0.5 0.5 0.1 0.1\n")
    return Expect([("label_file", "labels/train/ghost\\xe9.txt", None, "no image for this label file", 1)],
                  c.kept())


def _chmod_blocks_reads(path: Path) -> None:
    path.chmod(0)
    try:
        path.read_bytes()
    except PermissionError:
        return
    path.chmod(0o644)
    pytest.skip("running as root: chmod 000 does not stop this process reading the file")


@case("unreadable-image")
def _(c: Ctx) -> Expect:
    _chmod_blocks_reads(c.image())
    return Expect([image_skip(IMG0, "unreadable image file", 8)], c.kept(N0))


@case("unreadable-label-file")
def _(c: Ctx) -> Expect:
    _chmod_blocks_reads(c.label())
    return Expect([image_skip(IMG0, "unreadable label file", 0)], c.kept(N0))


@case("symlink-labels-folder-outside-root")
def _(c: Ctx) -> Fails:
    shutil.rmtree(c.root / "labels" / "train")
    (c.root / "labels" / "train").symlink_to(c.outside, target_is_directory=True)
    return Fails(DataError, r"0 valid train image\(s\), at least 2 needed \(skipped images by reason: "
                            r"\{'outside the dataset root': 6\}\)")


# --- YOLO: whole-dataset problems --------------------------------------------------------------------


@case("all-images-bad")
def _(c: Ctx) -> Fails:
    for name in NAMES:
        c.image(name).write_text("not an image")
    return Fails(DataError, r"0 valid train image\(s\), at least 2 needed \(skipped images by reason: "
                            r"\{'not a decodable image': 6\}\)")


@case("one-valid-image")
def _(c: Ctx) -> Fails:
    for name in NAMES[1:]:
        c.image(name).write_bytes(b"")
    return Fails(DataError, r"1 valid train image\(s\), at least 2 needed")


@case("empty-dataset")
def _(c: Ctx) -> Fails:
    for name in NAMES:
        c.image(name).unlink()
    return Fails(DataError, r"dataset\.yaml: no images \(.*\) found in .*images/train")


@case("yaml-missing-names")
def _(c: Ctx) -> Fails:
    c.spec(names=None)
    return Fails(DataError, r"dataset\.yaml: names: expected a list of class names or a mapping")


@case("yaml-names-as-list")
def _(c: Ctx) -> Expect:
    c.spec(names=[v for _, v in sorted(yaml.safe_load((c.root / "dataset.yaml").read_text())["names"].items())])
    return Expect([], c.kept())


@case("yaml-names-with-gaps")
def _(c: Ctx) -> Fails:
    c.spec(names={0: "person", 2: "car"})
    return Fails(DataError, r"names: class ids must be 0\.\.1 without gaps, got \[0, 2\]")


@case("yaml-missing-train")
def _(c: Ctx) -> Fails:
    c.spec(train=None)
    return Fails(DataError, r"dataset\.yaml: missing key 'train'")


@case("yaml-wrong-path")
def _(c: Ctx) -> Fails:
    c.spec(path="nowhere")
    return Fails(DataError, r"dataset\.yaml: train: .*nowhere/images/train is not a folder")


@case("yaml-not-yaml")
def _(c: Ctx) -> Fails:
    (c.root / "dataset.yaml").write_text("train: [images/train\nnames: {0: a\n")
    return Fails(DataError, r"dataset\.yaml: not a readable YAML file")


@case("yaml-not-a-mapping")
def _(c: Ctx) -> Fails:
    (c.root / "dataset.yaml").write_text("- images/train\n- person\n")
    return Fails(DataError, r"dataset\.yaml: expected a mapping")


# --- COCO json ---------------------------------------------------------------------------------------


def image_entry(data: dict, name: str = N0) -> dict:
    return next(im for im in data["images"] if im["file_name"] == name)


def first_ann(data: dict, name: str = N0) -> dict:
    image_id = image_entry(data, name)["id"]
    return next(a for a in data["annotations"] if a["image_id"] == image_id)


@case("coco-baseline", "coco")
def _(c: Ctx) -> Expect:
    return Expect([], c.kept())


def _coco_error(kind: str, edit: Callable[[dict], object], match: str) -> None:
    @case(kind, "coco")
    def _(c: Ctx) -> Fails:
        c.coco(edit)
        return Fails(DataError, match)


_coco_error("coco-missing-images-key", lambda d: d.pop("images"), r"instances\.json: .*'images' is missing or not a list")
_coco_error("coco-images-not-a-list", lambda d: d.update(images={}), r"'images' is missing or not a list")
_coco_error("coco-missing-categories", lambda d: d.pop("categories"), r"'categories' is missing or not a list")
_coco_error("coco-category-without-id", lambda d: d["categories"][0].pop("id"), r"lacks an integer id or a name")
_coco_error("coco-duplicate-category-id", lambda d: d["categories"][1].update(id=1),
            r"instances\.json: .*category id 1 is used twice")
_coco_error("coco-no-images", lambda d: d.update(images=[]), r"instances\.json: no images listed")


@case("coco-not-json", "coco")
def _(c: Ctx) -> Fails:
    (c.root / JSON).write_text('{"images": [')
    return Fails(DataError, r"instances\.json: not a readable COCO instances json \(JSONDecodeError")


def _coco_case(kind: str, edit: Callable[[dict], object], expect: Callable[[Ctx], Expect]) -> None:
    @case(kind, "coco")
    def _(c: Ctx) -> Expect:
        c.coco(edit)
        return expect(c)


def _ann_edit(**changes: object) -> Callable[[dict], None]:
    return lambda d: first_ann(d).update(changes)


def _bad_ann(reason: str) -> Callable[[Ctx], Expect]:
    return lambda c: Expect([box_skip(JSON, None, reason)], c.kept(**{N0: 7}))


_coco_case("coco-unknown-category", _ann_edit(category_id=999), _bad_ann("unknown class"))
_coco_case("coco-category-id-not-a-number", _ann_edit(category_id=[1]), _bad_ann("unknown class"))
_coco_case("coco-annotation-of-unknown-image", _ann_edit(image_id=999), _bad_ann("annotation of unknown image"))
_coco_case("coco-annotation-image-id-not-a-number", _ann_edit(image_id={"id": 1}),
           _bad_ann("annotation of unknown image"))
_coco_case("coco-bbox-wrong-length", _ann_edit(bbox=[10, 10, 50]), _bad_ann("malformed bbox"))
_coco_case("coco-bbox-strings", _ann_edit(bbox=["10", "10", "50", "50"]), _bad_ann("malformed bbox"))
_coco_case("coco-bbox-nan", _ann_edit(bbox=[float("nan"), 10, 50, 50]), _bad_ann("non-finite coordinates"))
_coco_case("coco-bbox-negative-size", _ann_edit(bbox=[10, 10, -5, 20]), _bad_ann("non-positive size"))
_coco_case("coco-bbox-outside-image", _ann_edit(bbox=[5000, 10, 20, 20]), _bad_ann("outside the image"))
_coco_case("coco-iscrowd", _ann_edit(iscrowd=1), _bad_ann("crowd"))
_coco_case("coco-segmentation-only", lambda d: first_ann(d).pop("bbox") and first_ann(d).update(
    segmentation=[[10, 10, 60, 10, 60, 60]]), _bad_ann("malformed bbox"))
_coco_case("coco-area-zero", _ann_edit(area=0), lambda c: Expect([], c.kept()))
_coco_case("coco-annotation-not-an-object", lambda d: d["annotations"].append("x"),
           lambda c: Expect([box_skip(JSON, None, "malformed annotation")], c.kept()))
_coco_case("coco-missing-width-and-height", lambda d: [im.pop(k) for im in d["images"] for k in ("width", "height")],
           lambda c: Expect([], c.kept()))
_coco_case("coco-wrong-width", lambda d: image_entry(d).update(width=image_entry(d)["width"] + 1),
           lambda c: Expect([image_skip(N0, "size mismatch", 8)], c.kept(N0)))
_coco_case("coco-image-without-file-name", lambda d: image_entry(d).pop("file_name"),
           lambda c: Expect([image_skip(JSON, "malformed image entry", 8)], c.kept(N0)))
_coco_case("coco-file-name-not-a-string", lambda d: image_entry(d).update(file_name=123),
           lambda c: Expect([image_skip(JSON, "malformed image entry", 8)], c.kept(N0)))
_coco_case("coco-file-name-empty", lambda d: image_entry(d).update(file_name=""),
           lambda c: Expect([image_skip(JSON, "malformed image entry", 8)], c.kept(N0)))
_coco_case("coco-image-without-id", lambda d: image_entry(d).pop("id"),
           lambda c: Expect([image_skip(N0, "malformed image entry", 0)]
                            + [box_skip(JSON, None, "annotation of unknown image")] * 8, c.kept(N0)))


@case("coco-duplicate-image-id", "coco")
def _(c: Ctx) -> Expect:
    """Two images with one id: which boxes belong to which is unknown, so both are skipped."""
    def edit(d: dict) -> None:
        old, new = image_entry(d, N1)["id"], image_entry(d, N0)["id"]
        image_entry(d, N1)["id"] = new
        for ann in d["annotations"]:
            if ann["image_id"] == old:
                ann["image_id"] = new
    c.coco(edit)
    return Expect([image_skip(N0, "duplicate image id", 10), image_skip(N1, "duplicate image id", 0)],
                  c.kept(N0, N1))


@case("coco-duplicate-file-name", "coco")
def _(c: Ctx) -> Expect:
    def edit(d: dict) -> None:
        d["images"].append(dict(image_entry(d), id=999))
        d["annotations"].append(dict(first_ann(d), id=9999, image_id=999))
    c.coco(edit)
    return Expect([image_skip(N0, "duplicate file name", 1)], c.kept())


@case("coco-missing-image-file", "coco")
def _(c: Ctx) -> Expect:
    c.image().unlink()
    return Expect([image_skip(N0, "missing image file", 8)], c.kept(N0))


@case("coco-file-name-is-a-folder", "coco")
def _(c: Ctx) -> Expect:
    c.image().unlink()
    c.image().mkdir()
    return Expect([image_skip(N0, "missing image file", 8)], c.kept(N0))


@case("coco-images-folder-missing", "coco")
def _(c: Ctx) -> Fails:
    c.params["images"] = str(c.root / "nowhere")
    return Fails(DataError, r"0 valid train image\(s\).*\{'missing image file': 6\}")


@case("coco-file-name-traversal", "coco")
def _(c: Ctx) -> Expect:
    shutil.copy(c.image(), c.root / N0)                   # a real image, one folder above the images folder
    c.coco(lambda d: image_entry(d).update(file_name=f"../{N0}"))
    return Expect([image_skip(f"../{N0}", "outside the dataset root", 8)], c.kept(N0))


@case("coco-file-name-absolute-outside", "coco")
def _(c: Ctx) -> Expect:
    target = str(c.outside / N0)
    c.coco(lambda d: image_entry(d).update(file_name=target))
    return Expect([image_skip(target, "outside the dataset root", 8)], c.kept(N0), paths_inside=True)


@case("coco-file-name-absolute-inside", "coco")
def _(c: Ctx) -> Expect:
    """An absolute name below the images folder is that image."""
    target = str(c.image())
    c.coco(lambda d: image_entry(d).update(file_name=target))
    return Expect([], c.kept())


@case("coco-file-name-dotdot-inside", "coco")
def _(c: Ctx) -> Expect:
    c.coco(lambda d: image_entry(d).update(file_name=f"sub/../{N0}"))
    return Expect([], c.kept())


@case("coco-file-name-in-subfolder", "coco")
def _(c: Ctx) -> Expect:
    (c.root / "images" / "sub").mkdir()
    c.image().rename(c.root / "images" / "sub" / N0)
    c.coco(lambda d: image_entry(d).update(file_name=f"sub/{N0}"))
    return Expect([], c.kept())


@case("coco-symlink-image-outside-root", "coco")
def _(c: Ctx) -> Expect:
    c.image().unlink()
    c.image().symlink_to(c.outside / N0)
    return Expect([image_skip(N0, "outside the dataset root", 8)], c.kept(N0))


@case("coco-symlink-loop", "coco")
def _(c: Ctx) -> Expect:
    c.image().unlink()
    c.image().symlink_to(N0)
    return Expect([image_skip(N0, "broken symbolic link", 8)], c.kept(N0))


@case("coco-file-name-nul-byte", "coco")
def _(c: Ctx) -> Expect:
    c.coco(lambda d: image_entry(d).update(file_name=f"{STEM0}\0.jpg"))
    return Expect([image_skip(f"{STEM0}\0.jpg", "invalid file name", 8)], c.kept(N0))


@case("coco-file-name-non-utf8", "coco")
def _(c: Ctx) -> Expect:
    """The json names a file whose name is not UTF-8 (escaped as a lone surrogate, as Python writes it)."""
    name = os.fsdecode(b"bad\xff.jpg")
    c.image().rename(c.image(name))
    c.coco(lambda d: image_entry(d).update(file_name=name))
    return Expect([image_skip("bad\\xff.jpg", "file name is not valid UTF-8", 8)], c.kept(N0))


@case("coco-file-name-lone-surrogate", "coco")
def _(c: Ctx) -> Expect:
    """A surrogate that no file name can hold."""
    c.coco(lambda d: image_entry(d).update(file_name="bad\ud800.jpg"))
    return Expect([image_skip("bad\\ud800.jpg", "invalid file name", 8)], c.kept(N0))


# ------------------------------------------------------------------------------------------- the test


@pytest.mark.parametrize("case", CASES, ids=[f"prepare-{c.kind}" for c in CASES])
def test_prepare_fault(case: Case, base: Base, tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    shutil.copytree(base.yolo if case.layout == "yolo" else base.coco, root)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(base.yolo / "images" / "train" / N0, outside / N0)
    shutil.copy(base.yolo / "labels" / "train" / f"{STEM0}.txt", outside / f"{STEM0}.txt")
    ctx = Ctx(root, base, outside)
    expect = case.mutate(ctx)
    if case.layout == "yolo":
        params = DataParams(source=str(root / "dataset.yaml"), **ctx.params)
    else:
        params = DataParams(source=str(root / JSON), **{"images": str(root / "images"), **ctx.params})
    out = tmp_path / "out"

    if isinstance(expect, Fails):
        with pytest.raises(expect.error, match=expect.match):
            prepare_dataset(params, out)
        assert not out.exists()
        return

    result = prepare_dataset(params, out)
    texts = {p: p.read_bytes().decode("utf-8") for p in (out / "report.json", *(out / "annotations").iterdir())}
    report = json.loads(texts[out / "report.json"])
    skipped = [(i["kind"], i["file"], i.get("line"), i["reason"], i["boxes"]) for i in report["skipped"]]
    assert sorted(skipped, key=str) == sorted(expect.skipped, key=str)
    assert result.num_skipped_boxes == sum(s[-1] for s in expect.skipped)
    assert result.num_skipped_images == sum(1 for s in expect.skipped if s[0] == "image")

    boxes, sizes = {}, {}
    for split in ("train", "val"):
        coco = json.loads(texts[out / "annotations" / f"{split}.json"])
        per_image = {im["id"]: 0 for im in coco["images"]}
        for ann in coco["annotations"]:
            per_image[ann["image_id"]] += 1
        for im in coco["images"]:
            boxes[im["file_name"]] = per_image[im["id"]]
            sizes[im["file_name"]] = (im["width"], im["height"])
    assert boxes == expect.boxes                     # every good image, with every good box
    assert sorted(os.listdir(out / "images")) == sorted(boxes)     # nothing else was linked in
    for name, size in expect.sizes.items():
        assert sizes[name] == size
    for note, count in expect.notes.items():
        assert report["notes"].get(note) == count, report["notes"]
    if not expect.paths_inside:
        assert not any(str(tmp_path) in text for text in texts.values())   # no path of this machine inside


def test_prepared_dataset_cannot_point_outside_its_folder(base: Base, tmp_path: Path) -> None:
    """Training reads a prepared dataset by its json: one altered to name a file outside its images folder
    (``..``, an absolute name, a link) is refused, naming the json and the file."""
    from yolox.data.records import load_prepared

    out = tmp_path / "out"
    prepare_dataset(DataParams(source=str(base.yolo)), out)
    train = out / "annotations" / "train.json"
    original = json.loads(train.read_text())
    assert len(load_prepared(out, "train").records) == len(original["images"])
    (tmp_path / "secret.jpg").write_bytes(b"not yours")
    for name in ("../../secret.jpg", str(tmp_path / "secret.jpg")):
        altered = json.loads(json.dumps(original))
        altered["images"][0]["file_name"] = name
        train.write_text(json.dumps(altered))
        with pytest.raises(DataError, match=rf"train\.json: image '{re.escape(name)}' resolves outside "):
            load_prepared(out, "train")
    link = out / "images" / "link.jpg"
    link.symlink_to(tmp_path / "secret.jpg")
    altered = json.loads(json.dumps(original))
    altered["images"][0]["file_name"] = "link.jpg"
    train.write_text(json.dumps(altered))
    with pytest.raises(DataError, match=r"train\.json: image 'link\.jpg' resolves outside "):
        load_prepared(out, "train")


UNPRIVILEGED_SCRIPT = textwrap.dedent("""
    import sys
    from yolox.config import DataParams
    from yolox.data.prepare import prepare_dataset

    print(prepare_dataset(DataParams(source=sys.argv[1]), sys.argv[2]).report_path.read_text())
""")


def _worktree_env() -> dict[str, str]:
    here = str(Path(prepare_module.__file__).parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("what", ["image", "label"], ids=["prepare-unreadable-image-unprivileged",
                                                          "prepare-unreadable-label-file-unprivileged"])
def test_unreadable_files_for_an_unprivileged_user(base: Base, what: str) -> None:
    """The chmod 000 cases for real when the tests run as root (where chmod does not stop reads): prepare runs
    as user ``nobody`` (``setpriv``) on a copy of the base in a folder it may enter."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("not root (the prepare-unreadable-* cases above run for real), or no setpriv(1)")
    work = Path(tempfile.mkdtemp(prefix="yolox-unreadable-"))
    try:
        work.chmod(0o755)
        root = _small_yolo(base, work / "ds", NAMES)
        (root / "images" / "train" / N0 if what == "image" else root / "labels" / "train" / f"{STEM0}.txt").chmod(0)
        (work / "out").mkdir()
        os.chown(work / "out", 65534, 65534)
        run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                              UNPRIVILEGED_SCRIPT, str(root), str(work / "out" / "prepared")],
                             check=False, capture_output=True, text=True, env=_worktree_env(), timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        report = json.loads(run.stdout[run.stdout.index("{"):])
        skipped = [(i["kind"], i["file"], i.get("line"), i["reason"], i["boxes"]) for i in report["skipped"]]
        reason = "unreadable image file" if what == "image" else "unreadable label file"
        assert skipped == [image_skip(IMG0, reason, 8 if what == "image" else 0)]
        assert report["skipped"][0]["detail"].endswith("Permission denied")
        assert report["counts"]["train"]["boxes"] + report["counts"]["val"]["boxes"] == sum(base.boxes.values()) - 8
        assert report["counts"]["train"]["images"] + report["counts"]["val"]["images"] == len(NAMES) - 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------ disk full


def _small_yolo(base: Base, dest: Path, names: list[str]) -> Path:
    (dest / "images" / "train").mkdir(parents=True)
    (dest / "labels" / "train").mkdir(parents=True)
    for name in names:
        shutil.copy(base.yolo / "images" / "train" / name, dest / "images" / "train" / name)
        label = f"{Path(name).stem}.txt"
        shutil.copy(base.yolo / "labels" / "train" / label, dest / "labels" / "train" / label)
    shutil.copy(base.yolo / "dataset.yaml", dest / "dataset.yaml")
    return dest


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["copy", "json"], ids=["prepare-disk-full-copying-images",
                                                         "prepare-disk-full-writing-json"])
def test_disk_full_keeps_the_previous_dataset(base: Base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              where: str) -> None:
    """ENOSPC injected where prepare writes (an image copy, or a json file): a DataError naming the folder
    and the space needed; the previous prepared dataset is untouched and no partial folder is left."""
    source = _small_yolo(base, tmp_path / "src", NAMES)
    out = tmp_path / "out"
    prepare_dataset(DataParams(source=str(source)), out)
    before = _snapshot(out)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "copy":
        monkeypatch.setattr(prepare_module.os, "link", full)        # another disk: images are copied ...
        monkeypatch.setattr(prepare_module.shutil, "copy2", full)   # ... and the disk is full
    else:
        monkeypatch.setattr(prepare_module, "_dump_json", full)
    need = (r"1\.1 MB" if where == "copy" else r"\d+ kB")      # 1.1 MB of images; or just the json files
    with pytest.raises(DataError, match=rf"^{out}: no space left on device writing the prepared dataset \(at "
                                        rf"{'images' if where == 'copy' else 'annotations'}/.*\): it needs about "
                                        rf"{need}, [\d.]+ [kMG]B free on the disk of .*previous one is unchanged"
                       ) as err:
        prepare_dataset(DataParams(source=str(source), split_seed=3), out)
    assert "\n" not in str(err.value)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


TMPFS_SCRIPT = textwrap.dedent("""
    import json, subprocess, sys
    from pathlib import Path
    from yolox.config import DataParams
    from yolox.data.prepare import prepare_dataset
    from yolox.errors import DataError

    disk, small, large = (Path(a) for a in sys.argv[1:4])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    out = disk / "prepared"
    prepare_dataset(DataParams(source=str(small)), out)
    before = {str(p.relative_to(out)): p.read_bytes().hex() for p in sorted(out.rglob("*")) if p.is_file()}
    try:
        prepare_dataset(DataParams(source=str(large)), out)
        error = None
    except DataError as err:
        error = str(err)
    after = {str(p.relative_to(out)): p.read_bytes().hex() for p in sorted(out.rglob("*")) if p.is_file()}
    print(json.dumps({"error": error, "same": before == after, "left": sorted(p.name for p in disk.iterdir())}))
""")


@pytest.mark.parametrize("x", [0], ids=["prepare-disk-full-tmpfs"])
def test_disk_full_on_a_real_small_disk(base: Base, tmp_path: Path, x: int) -> None:
    """The same on a real full disk: a 1 MB tmpfs, mounted in a private mount namespace (``unshare -m``,
    so the mount disappears with the process; needs root, else skipped)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount a small tmpfs")
    probe = subprocess.run(["unshare", "-m", "true"], check=False, capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not allowed here: {probe.stderr.decode().strip()}")
    small = _small_yolo(base, tmp_path / "small", NAMES[2:4])      # ~330 kB of images: fits
    large = _small_yolo(base, tmp_path / "large", NAMES)           # ~1.3 MB: does not
    disk = tmp_path / "disk"
    disk.mkdir()
    run = subprocess.run(["unshare", "-m", sys.executable, "-c", TMPFS_SCRIPT, str(disk), str(small), str(large)],
                         check=False, capture_output=True, text=True, env=_worktree_env(), timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["error"] is not None and result["error"].startswith(f"{disk / 'prepared'}: no space left on device")
    assert re.search(r"needs about 1\.1 MB, \d+ kB free on the disk of .*disk; .*previous one is unchanged",
                     result["error"]), result["error"]
    assert result["same"] and result["left"] == ["prepared"]
