"""In-memory detection dataset: the one representation every reader produces and every stage reads.

Boxes are ``xyxy`` in the original image's pixels (float32); labels are contiguous class indices
``0..C-1`` (int64); ``category_ids[i]`` is the COCO category id written for class ``i`` (the original
COCO ids for COCO-derived data, so results compare with anything evaluated on COCO).

A prepared dataset on disk (written by :func:`yolox.data.prepare.prepare_dataset`) is::

    <prepared_dir>/
      images/<file>                 validated images (hard links or copies)
      annotations/train.json        COCO format, file_name relative to images/
      annotations/val.json
      dataset.yaml                  class names, splits (for people and other tools)
      report.json                   counts and every skipped image/box with its reason
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from yolox.errors import DataError


@dataclass
class ImageRecord:
    """One image and its boxes.

    Attributes:
        image_id: COCO image id (unique within the dataset, >= 1).
        path: absolute path of the image file.
        width, height: image size (pixels).
        boxes: (N, 4) float32, xyxy in image pixels.
        labels: (N,) int64 contiguous class indices.
    """

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))


@dataclass
class DetectionDataset:
    """Class names, their COCO category ids, and image records."""

    names: list[str]
    category_ids: list[int]
    records: list[ImageRecord]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_coco(self, images_root: Path | None = None) -> dict[str, Any]:
        """COCO ``instances`` dict. ``file_name`` is relative to ``images_root`` when given, else absolute.

        Boxes are written as COCO ``[x, y, w, h]`` pixels with ``area = w * h`` and ``iscrowd = 0``.
        """
        images, annotations = [], []
        ann_id = 1
        for rec in self.records:
            name = str(rec.path.relative_to(images_root)) if images_root else str(rec.path)
            images.append({"id": rec.image_id, "file_name": name, "width": rec.width, "height": rec.height})
            for box, label in zip(rec.boxes.tolist(), rec.labels.tolist()):
                x0, y0, x1, y1 = box
                w, h = x1 - x0, y1 - y0
                annotations.append({
                    "id": ann_id, "image_id": rec.image_id, "category_id": self.category_ids[label],
                    "bbox": [x0, y0, w, h], "area": w * h, "iscrowd": 0,
                })
                ann_id += 1
        categories = [{"id": cid, "name": n} for cid, n in zip(self.category_ids, self.names)]
        return {"images": images, "annotations": annotations, "categories": categories}


class PackedRecords(Sequence[ImageRecord]):
    """Image records held in a few flat NumPy arrays instead of one Python object (and two arrays) per
    image: a training loader's worker processes, forked from the main process, share these pages with it
    and never write to them, whereas a list of records would be copied page by page into every worker as
    reference counts and the garbage collector touch its objects (memory per worker growing with the
    dataset). Indexing builds the :class:`ImageRecord` on the fly (``boxes``/``labels`` are read-only views).

    Arrays: ``image_ids (N,) int64``, ``sizes (N, 2) int32 [width, height]`` pixels, ``offsets (N + 1,)
    int64`` into ``boxes (M, 4) float32`` xyxy pixels and ``labels (M,) int64``, and the paths as one
    UTF-8 buffer ``path_bytes (P,) uint8`` with ``path_offsets (N + 1,) int64``.
    """

    def __init__(self, records: Sequence[ImageRecord]) -> None:
        n = len(records)
        self.image_ids = np.fromiter((r.image_id for r in records), np.int64, n)
        self.sizes = np.array([(r.width, r.height) for r in records], np.int32).reshape(n, 2)
        counts = np.fromiter((len(r.labels) for r in records), np.int64, n)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.boxes = np.concatenate([np.asarray(r.boxes, np.float32).reshape(-1, 4) for r in records]
                                    or [np.zeros((0, 4), np.float32)])
        self.labels = np.concatenate([np.asarray(r.labels, np.int64).reshape(-1) for r in records]
                                     or [np.zeros((0,), np.int64)])
        encoded = [str(r.path).encode("utf-8", "surrogateescape") for r in records]
        self.path_offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64)
        self.path_bytes = np.frombuffer(b"".join(encoded), np.uint8)
        for array in (self.image_ids, self.sizes, self.offsets, self.boxes, self.labels, self.path_offsets):
            array.setflags(write=False)

    def __len__(self) -> int:
        return len(self.image_ids)

    @overload
    def __getitem__(self, index: int) -> ImageRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[ImageRecord]: ...

    def __getitem__(self, index: int | slice) -> ImageRecord | list[ImageRecord]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        i = int(index) + n if index < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"record {index} of {n}")
        a, b = self.offsets[i], self.offsets[i + 1]
        path = bytes(self.path_bytes[self.path_offsets[i]:self.path_offsets[i + 1]])
        return ImageRecord(int(self.image_ids[i]), Path(path.decode("utf-8", "surrogateescape")),
                           int(self.sizes[i, 0]), int(self.sizes[i, 1]), self.boxes[a:b], self.labels[a:b])

    def num_boxes(self) -> np.ndarray:
        """(N,) int64: boxes per image."""
        return np.diff(self.offsets)


def load_coco_json(json_path: Path, images_root: Path) -> DetectionDataset:
    """Read a COCO json whose boxes are already validated (a prepared split) into a DetectionDataset.

    Crowd annotations are ignored. Classes are the json's categories in ascending id order.

    Raises:
        DataError: the file is missing or not a COCO instances json.
    """
    json_path = Path(json_path)
    try:
        coco = json.loads(json_path.read_text())
        cats = sorted(coco["categories"], key=lambda c: c["id"])
        images = coco["images"]
        anns = coco.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{json_path}: not a readable COCO instances json ({err})") from None
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    # all boxes in three arrays, grouped by image (stable: each image's boxes keep their json order); each
    # record's boxes/labels are slices of them (one pass over the annotations, no list per image)
    kept = [a for a in anns if not a.get("iscrowd", 0)]
    owner = np.fromiter((a["image_id"] for a in kept), np.int64, len(kept))
    order = np.argsort(owner, kind="stable")
    boxes_all = np.array([kept[i]["bbox"] for i in order.tolist()], np.float32).reshape(-1, 4)
    boxes_all[:, 2:] += boxes_all[:, :2]
    labels_all = np.fromiter((cat_index[kept[i]["category_id"]] for i in order.tolist()), np.int64, len(kept))
    owner = owner[order]
    boxes_all.setflags(write=False)     # the records' boxes and labels are views of these: read-only
    labels_all.setflags(write=False)
    ids = np.array([im["id"] for im in images], np.int64)
    starts, ends = np.searchsorted(owner, ids, "left"), np.searchsorted(owner, ids, "right")
    root = Path(images_root).resolve()
    records = []
    for im, a, b in zip(images, starts.tolist(), ends.tolist()):
        path = _resolved_child(root, im["file_name"])
        if path is None:
            raise DataError(f"{json_path}: image {im['file_name']!r} resolves outside {root}: the dataset was "
                            "altered or is not a prepared one; run `yolox prepare` again")
        records.append(ImageRecord(im["id"], path, int(im["width"]), int(im["height"]), boxes_all[a:b],
                                   labels_all[a:b]))
    return DetectionDataset([c["name"] for c in cats], [c["id"] for c in cats], records)


def _resolved_child(root: Path, name: str) -> Path | None:
    """``(root / name).resolve()`` for a resolved ``root``, or None when that leaves ``root`` (``..``, an
    absolute name, a symbolic link out); a plain join for a file name without folders that is not a link
    (a prepared dataset's: one ``lstat`` instead of one per path component)."""
    path = root / name
    if "/" not in name and "\\" not in name and not path.is_symlink():
        return path
    try:
        resolved = path.resolve()
    except RuntimeError:          # a loop of links: it cannot be read, wherever it is
        return path
    return resolved if resolved.is_relative_to(root) else None


def load_prepared(prepared_dir: str | Path, split: str) -> DetectionDataset:
    """Load one split (``train`` or ``val``) of a prepared dataset.

    Raises:
        DataError: the folder is not a prepared dataset (names the missing file and says to run prepare).
    """
    root = Path(prepared_dir)
    path = root / "annotations" / f"{split}.json"
    if not path.is_file():
        raise DataError(f"{path} not found: is {root} a prepared dataset? Run `yolox prepare` first.")
    return load_coco_json(path, root / "images")


def val_set_id(dataset: DetectionDataset) -> str:
    """Fingerprint of a val split: sha256 over class names, every image's file name, size, boxes and
    labels, and the image bytes (``sha256:<16 hex>``). Same files -> same id, wherever they live."""
    h = hashlib.sha256(json.dumps([dataset.names, dataset.category_ids]).encode())
    for rec in sorted(dataset.records, key=lambda r: r.path.name):
        h.update(json.dumps([rec.path.name, rec.width, rec.height, rec.boxes.round(3).tolist(),
                             rec.labels.tolist()]).encode())
        h.update(hashlib.sha256(Path(rec.path).read_bytes()).digest())
    return "sha256:" + h.hexdigest()[:16]
