"""The ``prepare`` stage: raw dataset -> validated, split, prepared dataset on disk.

Reads the source (YOLO or COCO, :mod:`yolox.data.readers`; Pascal VOC, :mod:`yolox.data.voc`), validates
every image and box (:mod:`yolox.data.validate`), splits train/val and writes the layout described in
:mod:`yolox.data.records`. The output is byte-for-byte deterministic for the same input and params
(DVC hashes it): every listing is sorted, image ids are ``1..N`` by sorted file name, and no file holds
a timestamp or the output path.

Split, in order of precedence: the source's own ``val`` split (a YOLO ``val:`` folder, VOC ``ImageSets``);
else ``params.val_source``; else a seeded split of the valid images. The seeded split is a hash threshold, not
a rank: an image goes to val when a seeded hash of its file name, read as a number in [0, 1), is below
``val_fraction`` (:func:`split_of`). An image's split depends only on its own file name and ``split_seed``, so
a dataset that grows night after night never moves an image between train and val (a champion is never scored
on an image it trained on), whatever the listing order.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from yolox.assets import resolve_dataset
from yolox.config import DataParams
from yolox.data.readers import Issue, RawDataset, RawImage, read_coco, read_yolo
from yolox.data.records import DetectionDataset, ImageRecord, load_prepared
from yolox.data.validate import validate_images
from yolox.data.voc import is_voc_source, read_voc
from yolox.errors import ConfigError, DataError

log = logging.getLogger("yolox.data")

DUPLICATE_FILE_NAME = "duplicate file name"
SOURCE_FIELDS = ("source", "images", "val_source", "prepared_dir")
"""Data params that say WHERE the data is, not what it is: left out of ``report.json``, so the prepared bytes
(and their DVC hash, the run's ``data_version``) are the same whichever path or name prepared them."""


@dataclass(frozen=True)
class PrepareResult:
    """What ``prepare`` wrote: the folder, counts per split, skipped items and the class names."""

    out_dir: Path
    num_train_images: int
    num_val_images: int
    num_train_boxes: int
    num_val_boxes: int
    num_skipped_images: int
    num_skipped_boxes: int
    report_path: Path
    names: list[str]


def prepare_dataset(params: DataParams, out_dir: Path | None = None) -> PrepareResult:
    """Read, validate, split and write a prepared dataset.

    Args:
        params: ``source`` (a dataset name such as ``"coco128"``, a YOLO ``dataset.yaml`` or folder, or
            a COCO ``.json``), ``images`` (image folder of a COCO source, also used by a COCO
            ``val_source``; default each json's folder), ``val_source``,
            ``val_fraction``, ``split_seed``, ``min_image_size`` and ``min_box_size`` (pixels).
        out_dir: output folder; default ``params.prepared_dir``. An existing one is replaced only once
            the new one is complete (written to ``<out_dir>.tmp-<pid>`` first).

    Returns:
        The output folder, image and box counts per split, skipped images and boxes, the path of
        ``report.json`` and the class names.

    Raises:
        AssetError: ``source``/``val_source`` is neither an existing path nor a known dataset name.
        DataError: a source cannot be read at all (no ``dataset.yaml``, bad json, no images), the
            val source has other classes, or a split has no valid image.
        ConfigError: ``images`` is set for a YOLO source, or ``val_source`` is set while the source
            has its own val split.
    """
    out_dir = Path(out_dir if out_dir is not None else params.prepared_dir)
    source = resolve_dataset(params.source)
    if params.images and not is_coco_json(source):
        raise ConfigError(
            f"data.images ({params.images!r}) is only used with a COCO .json source, not {source}: remove it"
        )
    raw, issues = read_source(source, params.images, names=params.names)
    splits = dict(raw.splits)
    notes = Counter(raw.notes)
    method = "source val split" if "val" in splits else "seeded"
    if params.val_source is not None:
        splits["val"] = _read_val_source(params.val_source, params, raw, issues, notes)
        method = "val_source"
    issues.extend(_drop_duplicate_names(splits))
    records = _validate_splits(splits, raw.num_classes, params, issues, notes)
    if "val" not in records:
        _require_images(records, issues, params.source, ("train",), at_least=2)
        records["train"], records["val"] = seeded_split(
            records["train"], params.val_fraction, params.split_seed
        )
    _require_images(records, issues, params.source, ("train", "val"), at_least=1)
    train, val = _number_images(records["train"], records["val"])
    report = build_report(params, method, raw, train, val, issues, notes)
    write_prepared(out_dir, raw.names, raw.category_ids, {"train": train, "val": val}, report)
    result = _result(out_dir, raw.names, train, val, issues)
    log.info(
        "prepared %s -> %s: train %d images / %d boxes, val %d images / %d boxes, skipped %d images / "
        "%d boxes (details in %s)", params.source, out_dir, result.num_train_images, result.num_train_boxes,
        result.num_val_images, result.num_val_boxes, result.num_skipped_images, result.num_skipped_boxes,
        result.report_path,
    )
    return result


def is_coco_json(path: Path) -> bool:
    """True for a COCO source (a ``.json`` file), False for a YOLO one (``dataset.yaml`` or folder)."""
    return path.suffix.lower() == ".json"


def read_source(path: Path, images: str | None = None, only: str | None = None,
                names: list[str] | None = None) -> tuple[RawDataset, list[Issue]]:
    """Read a resolved source: a ``.json`` file as COCO (images in ``images``, default the json's
    folder); a Pascal VOC folder (:func:`yolox.data.voc.is_voc_source`: ``annotations/`` or
    ``Annotations/`` holding .xml files, in it or in its one ``VOC*`` folder, and no ``dataset.yaml``) with
    :func:`yolox.data.voc.read_voc` (all the splits it defines; ``images`` and ``only`` are not used);
    anything else as YOLO (``images`` is not used; ``only``: read just that split, see
    :func:`yolox.data.readers.read_yolo`). ``names`` (``data.names``): a VOC source's class list (objects of
    other classes are reported skips; default the names found); a YOLO or COCO source declares its own, which
    must then be these.

    Returns:
        The raw dataset (class names, category ids, images per split, notes) and the issues met reading it.

    Raises:
        DataError: the source cannot be read at all. ConfigError: ``names`` differ from a YOLO/COCO source's.
    """
    if is_voc_source(path) and not is_coco_json(path):
        return read_voc(path, list(names) if names else None)
    raw, issues = read_coco(path, Path(images) if images else None) if is_coco_json(path) else read_yolo(path, only)
    if names and list(names) != list(raw.names):
        raise ConfigError(f"data.names {list(names)[:5]} differ from the classes {path} declares "
                          f"{list(raw.names)[:5]}: remove data.names (it is for VOC sources) or fix it")
    return raw, issues


def _read_val_source(
    val_source: str, params: DataParams, raw: RawDataset, issues: list[Issue], notes: Counter[str]
) -> list[RawImage]:
    """All images of ``val_source`` (which must have the classes of the source ``raw``)."""
    if "val" in raw.splits:
        raise ConfigError(
            f"data.val_source ({val_source!r}) is set but {params.source!r} has its own val split: "
            "remove one of them"
        )
    val_raw, val_issues = read_source(resolve_dataset(val_source), params.images, names=params.names)
    if (val_raw.names, val_raw.category_ids) != (raw.names, raw.category_ids):
        raise DataError(
            f"{val_source}: its classes differ from those of {params.source} "
            f"({val_raw.num_classes} vs {raw.num_classes} classes, or other names/category ids)"
        )
    issues.extend(val_issues)
    notes.update(val_raw.notes)
    return [image for split in val_raw.splits.values() for image in split]


def _drop_duplicate_names(splits: dict[str, list[RawImage]]) -> list[Issue]:
    """Sort each split (in place) by file name; drop images whose file name is already taken (train first).

    Prepared images live in one flat folder, so file names must be unique across splits.
    """
    issues = []
    seen: dict[str, RawImage] = {}
    for name in sorted(splits, key=lambda s: s != "train"):
        kept = []
        for image in sorted(splits[name], key=lambda im: (im.path.name, str(im.path))):
            first = seen.get(image.path.name)
            if first is not None:
                issues.append(Issue("image", image.file, DUPLICATE_FILE_NAME, boxes=len(image.boxes),
                                    detail=f"{first.file} has the same file name"))
                continue
            seen[image.path.name] = image
            kept.append(image)
        splits[name] = kept
    return issues


def seeded_split(
    records: list[ImageRecord], val_fraction: float, seed: int
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Split records into (train, val), each image by its own file name (:func:`split_of`).

    About ``N * val_fraction`` images go to val (a binomial count, not a fixed one: that is what keeps every
    image's split fixed as the dataset grows). Only when the threshold leaves a split empty (tiny datasets)
    does the image with the lowest (for val) or highest (for train) hash move, so both splits have an image.

    Raises:
        DataError: fewer than 2 records (both splits need an image).
    """
    if len(records) < 2:
        raise DataError(f"only {len(records)} valid image(s): at least 2 are needed for a train/val split")
    val_names = {r.path.name for r in records if split_of(r.path.name, val_fraction, seed) == "val"}
    ranked = sorted(records, key=lambda r: (split_hash(r.path.name, seed), r.path.name))
    if not val_names:
        val_names = {ranked[0].path.name}
    elif len(val_names) == len(records):
        val_names.discard(ranked[-1].path.name)
    train = [r for r in records if r.path.name not in val_names]
    val = [r for r in records if r.path.name in val_names]
    return train, val


def split_hash(file_name: str, seed: int) -> float:
    """A seeded hash of a file name as a number in [0, 1): the first 64 bits of
    ``sha256("<seed>:<file_name>")`` divided by 2**64 (uniform over names, stable across machines)."""
    digest = hashlib.sha256(f"{seed}:{file_name}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(file_name: str, val_fraction: float, seed: int) -> str:
    """``"val"`` when :func:`split_hash` of the file name is below ``val_fraction``, else ``"train"``: a pure
    function of the name and the seed, so adding or removing other images never changes it."""
    return "val" if split_hash(file_name, seed) < val_fraction else "train"


def _validate_splits(
    splits: dict[str, list[RawImage]], num_classes: int, params: DataParams, issues: list[Issue],
    notes: Counter[str],
) -> dict[str, list[ImageRecord]]:
    """Validate each split (with a progress bar); adds the issues and notes found."""
    records = {}
    for name, images in splits.items():
        checked = validate_images(images, num_classes, params, description=f"validating {name} images")
        records[name] = checked.records
        issues.extend(checked.issues)
        notes.update(checked.notes)
    return records


def _require_images(
    records: dict[str, list[ImageRecord]], issues: list[Issue], source: str, splits: tuple[str, ...],
    at_least: int,
) -> None:
    """Raise DataError naming the source when a split has fewer than ``at_least`` valid images."""
    for split in splits:
        if len(records[split]) < at_least:
            reasons = dict(Counter(i.reason for i in issues if i.kind == "image"))
            raise DataError(
                f"{source}: {len(records[split])} valid {split} image(s), at least {at_least} needed "
                f"(skipped images by reason: {reasons})"
            )


def _number_images(
    train: list[ImageRecord], val: list[ImageRecord]
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Image ids 1..N by sorted file name over both splits; each split sorted by id."""
    order = sorted(r.path.name for r in train + val)
    ids = {name: i for i, name in enumerate(order, start=1)}

    def numbered(records: list[ImageRecord]) -> list[ImageRecord]:
        return sorted((replace(r, image_id=ids[r.path.name]) for r in records), key=lambda r: r.image_id)

    return numbered(train), numbered(val)


def build_report(
    params: DataParams, method: str, raw: RawDataset, train: list[ImageRecord], val: list[ImageRecord],
    issues: list[Issue], notes: Counter[str],
) -> dict[str, Any]:
    """The content of ``report.json``: params, counts per split and class, every skipped item."""
    ordered = sorted(issues, key=lambda i: (i.file, i.line or 0))
    by_reason: dict[str, dict[str, int]] = {}
    for issue in sorted(ordered, key=lambda i: i.reason):
        entry = by_reason.setdefault(issue.reason, {"items": 0, "boxes": 0})
        entry["items"] += 1
        entry["boxes"] += issue.boxes
    return {
        "split": method,
        "params": {k: v for k, v in params.model_dump(mode="json").items() if k not in SOURCE_FIELDS},
        "counts": {
            "train": _split_counts(train),
            "val": _split_counts(val),
            "skipped": _skipped_counts(issues),
        },
        "classes": _class_counts(raw, train, val),
        "notes": dict(sorted(notes.items())),
        "skipped_by_reason": by_reason,
        "skipped": [issue.to_json() for issue in ordered],
    }


def _split_counts(records: list[ImageRecord]) -> dict[str, int]:
    return {
        "images": len(records),
        "boxes": sum(len(r.labels) for r in records),
        "background_images": sum(1 for r in records if len(r.labels) == 0),
    }


def _skipped_counts(issues: list[Issue]) -> dict[str, int]:
    return {
        "images": sum(1 for i in issues if i.kind == "image"),
        "boxes": sum(i.boxes for i in issues),
        "label_files": sum(1 for i in issues if i.kind == "label_file"),
    }


def _class_counts(raw: RawDataset, train: list[ImageRecord], val: list[ImageRecord]) -> list[dict[str, Any]]:
    counts = {split: Counter(int(c) for r in recs for c in r.labels) for split, recs in
              (("train", train), ("val", val))}
    return [
        {"index": i, "id": cid, "name": name,
         "train_boxes": counts["train"][i], "val_boxes": counts["val"][i]}
        for i, (cid, name) in enumerate(zip(raw.category_ids, raw.names, strict=True))
    ]


def _result(
    out_dir: Path, names: list[str], train: list[ImageRecord], val: list[ImageRecord], issues: list[Issue]
) -> PrepareResult:
    skipped = _skipped_counts(issues)
    return PrepareResult(
        out_dir=out_dir,
        num_train_images=len(train),
        num_val_images=len(val),
        num_train_boxes=sum(len(r.labels) for r in train),
        num_val_boxes=sum(len(r.labels) for r in val),
        num_skipped_images=skipped["images"],
        num_skipped_boxes=skipped["boxes"],
        report_path=out_dir / "report.json",
        names=list(names),
    )


# ---------------------------------------------------------------------------------------- writing


def write_prepared(
    out_dir: Path, names: list[str], category_ids: list[int], splits: dict[str, list[ImageRecord]],
    report: dict[str, Any],
) -> dict[str, list[ImageRecord]]:
    """Write the prepared layout (see :mod:`yolox.data.records`) into ``out_dir``, replacing it whole.

    Everything is written to ``<out_dir>.tmp-<pid>`` first and then swapped in, so an interrupted or
    failed run leaves the previous output (or none), never a half-written one.

    Args:
        out_dir: the prepared dataset folder.
        names, category_ids: classes, written to the json files and ``dataset.yaml``.
        splits: ``{"train": records, "val": records}``; record paths are the source image files, file
            names unique over all splits.
        report: the content of ``report.json``.

    Returns:
        The records of each split with their paths in ``<out_dir>/images``.

    Raises:
        DataError: the disk is full or over quota (the message names ``out_dir``, the space the dataset
            needs and the space free), or another error writing it (rights, a read-only disk); the
            partial output is removed and the previous one is untouched.
    """
    tmp = out_dir.parent / f"{out_dir.name}.tmp-{os.getpid()}"
    final_images = out_dir.resolve() / "images"
    shutil.rmtree(tmp, ignore_errors=True)
    current, copied = "images", False     # what is being written (for the message), any image copied
    try:
        try:
            (tmp / "images").mkdir(parents=True)
            (tmp / "annotations").mkdir()
            written = {}
            for split, records in splits.items():
                for record in records:
                    current = f"images/{record.path.name}"
                    copied = not link_or_copy(record.path, tmp / current) or copied
                written[split] = [replace(r, path=final_images / r.path.name) for r in records]
                coco = DetectionDataset(names, category_ids, written[split]).to_coco(final_images)
                current = f"annotations/{split}.json"
                _dump_json(coco, tmp / current)
            current = "dataset.yaml"
            (tmp / current).write_text(_yaml_text(names, category_ids), encoding="utf-8")
            current = "report.json"
            _dump_json(report, tmp / current, indent=2)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            images_copied = copied or current.startswith("images")
            raise _write_error(err, out_dir, current, names, category_ids, splits, report, images_copied) from None
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def _write_error(
    err: OSError, out_dir: Path, current: str, names: list[str], category_ids: list[int],
    splits: dict[str, list[ImageRecord]], report: dict[str, Any], images_copied: bool,
) -> DataError:
    """The DataError for an OSError met writing ``current`` (a path inside the dataset) into ``out_dir``.

    A full disk (or quota) names the space the whole dataset needs, estimated from the bytes to write: the
    json and yaml files, and the images when they are copied (hard links, used when the source is on the
    same disk, take no space).
    """
    kept = "the previous one is unchanged" if out_dir.exists() else "nothing was written"
    if err.errno not in (errno.ENOSPC, errno.EDQUOT):
        where = f"{current}: {err.strerror or err}" + (f" ({err.filename})" if err.filename else "")
        return DataError(f"{out_dir}: cannot write the prepared dataset ({where}); check that the folder is "
                         f"writable, or choose another --out ({kept})")
    need = len(_json_text(report, indent=2).encode()) + len(_yaml_text(names, category_ids).encode())
    for records in splits.values():
        named = [replace(r, path=Path(r.path.name)) for r in records]     # file_name as written
        need += len(_json_text(DetectionDataset(names, category_ids, named).to_coco()).encode())
        if images_copied:
            need += sum(_file_size(r.path) for r in records)
    disk = next(p for p in (out_dir.parent.resolve(), *out_dir.parent.resolve().parents) if p.exists())
    problem = "no space left on device" if err.errno == errno.ENOSPC else "disk quota exceeded"
    return DataError(
        f"{out_dir}: {problem} writing the prepared dataset (at {current}): it needs about {_size(need)}, "
        f"{_size(shutil.disk_usage(disk).free)} free on the disk of {disk}; free some space or choose another "
        f"--out ({kept})"
    )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _size(num_bytes: float) -> str:
    """Bytes in kB, MB or GB (powers of 1000), e.g. ``1.3 MB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{max(1, round(num_bytes / 1e3))} kB"


def _swap_in(new: Path, target: Path) -> None:
    """Put folder ``new`` in place of ``target`` (renames; the old folder is deleted last)."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.parent / f"{target.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(new, target)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()


def _json_text(obj: Any, indent: int | None = None) -> str:
    return json.dumps(obj, indent=indent, ensure_ascii=False) + "\n"


def _dump_json(obj: Any, path: Path, indent: int | None = None) -> None:
    path.write_text(_json_text(obj, indent), encoding="utf-8")


def snapshot_prepared(src: Path, dst: Path) -> Path:
    """A copy of the prepared dataset ``src`` at ``dst`` made of hard links (copies where linking fails): a run
    reads its own snapshot, so a later prepare swapping a new dataset into ``src`` cannot change or remove the
    files under it (prepare never writes into a file in place: it writes new files and swaps folders). Cheap: no
    image bytes are copied on one disk. Written to ``<dst>.tmp-<pid>`` and renamed, so ``dst`` is whole or absent.

    Raises:
        DataError: ``src`` is not a folder, or ``dst`` cannot be written (the message names both).
    """
    if not src.is_dir():
        raise DataError(f"{src}: no prepared dataset to snapshot; run yolox prepare first")
    tmp = dst.parent / f"{dst.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, tmp, copy_function=link_or_copy, symlinks=True)
        os.replace(tmp, dst)
    except OSError as err:
        raise DataError(f"cannot snapshot prepared dataset {src} into {dst}: {err.strerror or err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def link_or_copy(src: Path, dst: Path) -> bool:
    """Hard-link ``src`` to ``dst``; copy it (with its metadata) when linking fails (other disk, rights).

    Returns:
        True when linked, False when copied.

    Raises:
        OSError: the copy failed too (e.g. ``ENOSPC``, the disk is full).
    """
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
        return False
    return True


def _yaml_text(names: list[str], category_ids: list[int]) -> str:
    spec = {
        "path": ".",
        "images": "images",
        "train": "annotations/train.json",
        "val": "annotations/val.json",
        "nc": len(names),
        "names": dict(enumerate(names)),
        "category_ids": list(category_ids),
    }
    header = "# Prepared by `yolox prepare`: COCO json per split, file_name relative to images/\n"
    return header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)


def load_dataset(source: str | Path, split: str | None = "val", images: str | None = None,
                 params: DataParams | None = None) -> DetectionDataset:
    """One split of any dataset, validated in memory (nothing written): a prepared dataset folder, a
    YOLO ``dataset.yaml`` or folder, a COCO ``.json`` (with ``images``), a Pascal VOC folder, or a dataset name.
    ``split`` None: every image of every split (e.g. a fixed regression set, ``gate.golden``).

    Bad images and boxes are skipped and logged (as ``prepare`` does). Image ids are 1..N by file name.

    Raises:
        AssetError: not a path nor a known name. DataError: unreadable, or ``split`` not in the source.
    """
    path = resolve_dataset(str(source))
    if split is None:
        return _load_all_splits(path, images, params)
    if path.is_dir() and (path / "annotations").is_dir() and (path / "dataset.yaml").is_file():  # prepared
        have = sorted(p.stem for p in (path / "annotations").glob("*.json"))
        if split not in have:
            raise DataError(f"{path} is a prepared dataset with the splits {', '.join(have)}: no {split!r} split "
                            "(use --split " + " or --split ".join(have) + ")")
        return load_prepared(path, split)
    params = params or DataParams(source=str(source))
    raw, issues = read_source(path, images, None if is_coco_json(path) else split, params.names)
    if is_coco_json(path) and split not in raw.splits:
        split = next(iter(raw.splits))  # a COCO json holds one split, whatever its name
    if split not in raw.splits:
        raise DataError(f"{path}: no {split!r} split (has: {', '.join(sorted(raw.splits))})")
    result = validate_images(raw.splits[split], raw.num_classes, params, f"reading {split} images")
    for issue in [*issues, *result.issues]:
        log.warning("skipped %s %s: %s", issue.kind, issue.file, issue.reason)
    records = sorted(result.records, key=lambda r: str(r.path))
    for i, rec in enumerate(records, start=1):
        rec.image_id = i
    return DetectionDataset(raw.names, raw.category_ids, records)


def _load_all_splits(path: Path, images: str | None, params: DataParams | None) -> DetectionDataset:
    """Every image of every split of the dataset at ``path`` (see :func:`load_dataset`), ids 1..N by path."""
    if path.is_dir() and (path / "annotations").is_dir() and (path / "dataset.yaml").is_file():  # prepared
        parts = [load_prepared(path, p.stem) for p in sorted((path / "annotations").glob("*.json"))]
        names, category_ids = parts[0].names, parts[0].category_ids
        records = [r for part in parts for r in part.records]
    else:
        params = params or DataParams(source=str(path))
        raw, issues = read_source(path, images, names=params.names)
        records = []
        for split, raw_images in sorted(raw.splits.items()):
            result = validate_images(raw_images, raw.num_classes, params, f"reading {split} images")
            issues.extend(result.issues)
            records.extend(result.records)
        for issue in issues:
            log.warning("skipped %s %s: %s", issue.kind, issue.file, issue.reason)
        names, category_ids = raw.names, raw.category_ids
    records = sorted(records, key=lambda r: str(r.path))
    for i, rec in enumerate(records, start=1):
        rec.image_id = i
    if not records:
        raise DataError(f"{path}: no valid image")
    return DetectionDataset(names, category_ids, records)
