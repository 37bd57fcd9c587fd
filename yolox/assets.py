"""Datasets and released weights by name.

A name resolves, in order, to:

1. the local mirror named by the environment variable ``YOLOX_ASSETS_DIR`` (layout ``data/<name>/``
   and ``weights/<file>``), the way air-gapped machines and CI get them;
2. the download cache (``$YOLOX_CACHE_DIR``, default ``~/.cache/yolox``), filled on first use from the
   public release URL below.

Offline with neither, :class:`~yolox.errors.AssetError` says which name, where it looked and what to set.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from yolox.errors import AssetError
from yolox.files import atomic_path, write_text
from yolox.models.coco_classes import COCO_CLASSES
from yolox.models.table import MODELS

_RELEASE = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0"


@dataclass(frozen=True)
class WeightsAsset:
    """A released checkpoint: its release file name, the model it belongs to, and its URL."""

    file: str
    model: str
    url: str


WEIGHTS: dict[str, WeightsAsset] = {
    a.file: a
    for a in [
        # one release checkpoint per model of the table (yolox.models.table.MODELS)
        *(WeightsAsset(m.weights, m.name, f"{_RELEASE}/{m.weights}") for m in MODELS.values()),
        # the authors' ONNX release of nano (their demo's model; `yolox benchmark --reference yolox_nano.onnx`)
        WeightsAsset("yolox_nano.onnx", "yolox-nano", f"{_RELEASE}/yolox_nano.onnx"),
    ]
}
# Model names are accepted as weight names too: "yolox-s" -> "yolox_s.pth" (the checkpoints, not the ONNX files).
_WEIGHTS_BY_MODEL = {a.model: a for a in WEIGHTS.values() if a.file.endswith(".pth")}

DATASETS: dict[str, str] = {
    # The public 128-image COCO train subset in YOLO layout.
    "coco128": "https://github.com/ultralytics/assets/releases/download/v0.0.0/coco128.zip",
    # The Raccoon Detector Dataset (Dat Tran, MIT licence) in Pascal VOC layout: its repository's archive,
    # laid out as the mirror holds it (its 160-image training list) by _arrange_raccoon.
    "raccoon": "https://github.com/datitran/raccoon_dataset/archive/refs/heads/master.zip",
}
RACCOON_ARCHIVE_FOLDER = "raccoon_dataset-master"
"""The folder the raccoon archive holds (the repository at its ``master`` branch)."""


def assets_dir() -> Path | None:
    """The mirror folder from ``YOLOX_ASSETS_DIR``, or None when unset."""
    value = os.environ.get("YOLOX_ASSETS_DIR")
    return Path(value).expanduser().resolve() if value else None


def cache_dir() -> Path:
    """The download cache (``YOLOX_CACHE_DIR``, default ``~/.cache/yolox``)."""
    return Path(os.environ.get("YOLOX_CACHE_DIR", "~/.cache/yolox")).expanduser()


def _download(url: str, dest: Path, what: str) -> None:
    """Download ``url`` to ``dest`` atomically (:func:`yolox.files.atomic_path`): a failed or interrupted
    download leaves no partial ``dest`` and no temp file."""
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:  # fixed https URLs
                shutil.copyfileobj(resp, out)
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            mirror = os.environ.get("YOLOX_ASSETS_DIR")
            raise AssetError(
                f"cannot download {what} from {url}: {err}. Offline? Put it in a mirror folder and set "
                f"YOLOX_ASSETS_DIR (currently {mirror!r}) - layout data/<name>/ and weights/<file>."
            ) from None


def resolve_weights(value: str) -> Path:
    """Resolve a checkpoint given as a release file name, model name, or path.

    Returns:
        Path of an existing file.

    Raises:
        AssetError: unknown name, a folder, or not in the mirror/cache and cannot be downloaded.
    """
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise AssetError(f"weights {value!r} is a folder: pass a .pth checkpoint or an .onnx model file")
    asset = WEIGHTS.get(value) or _WEIGHTS_BY_MODEL.get(value)
    if asset is None:
        raise AssetError(
            f"weights {value!r}: no such file, and not a released checkpoint name "
            f"(known: {', '.join(sorted(WEIGHTS))})"
        )
    mirror = assets_dir()
    if mirror is not None and (mirror / "weights" / asset.file).is_file():
        return mirror / "weights" / asset.file
    cached = cache_dir() / "weights" / asset.file
    if not cached.is_file():
        _download(asset.url, cached, f"weights {asset.file}")
    return cached


def resolve_dataset(value: str) -> Path:
    """Resolve a dataset given as a name (e.g. ``coco128``) or a path.

    Returns:
        The path as given if it exists, else the dataset folder in the mirror or the cache.

    Raises:
        AssetError: not a path, not a known name, or not in the mirror/cache and cannot be downloaded.
    """
    path = Path(value).expanduser()
    if path.exists():
        return path
    if value not in DATASETS:
        raise AssetError(
            f"dataset {value!r}: no such file or folder, and not a known dataset name "
            f"(known: {', '.join(sorted(DATASETS))})"
        )
    mirror = assets_dir()
    if mirror is not None and (mirror / "data" / value).is_dir():
        return mirror / "data" / value
    cached = cache_dir() / "data" / value
    if not cached.is_dir():
        archive = cache_dir() / "data" / f"{value}.zip"
        _download(DATASETS[value], archive, f"dataset {value}")
        with zipfile.ZipFile(archive) as zf, tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
            zf.extractall(tmp)
            if value == "raccoon":    # Pascal VOC: no dataset.yaml (it would make the folder a YOLO source)
                _arrange_raccoon(Path(tmp) / RACCOON_ARCHIVE_FOLDER, Path(tmp) / "arranged")
                shutil.move(str(Path(tmp) / "arranged"), cached)
            else:   # the folder appears in the cache complete, with its dataset.yaml
                inner = Path(tmp) / value
                src = inner if inner.is_dir() else Path(tmp)
                _write_coco_yaml_if_missing(src)
                shutil.move(str(src), cached)
        archive.unlink(missing_ok=True)
    return cached


def _arrange_raccoon(repo: Path, dest: Path) -> None:
    """Lay out the raccoon repository archive (extracted at ``repo``) as the mirror holds it, in ``dest``:
    ``images/<stem>.jpg`` and ``annotations/<stem>.xml`` (Pascal VOC) of the images in the repository's
    training list ``data/train_labels.csv`` (160 images, 173 boxes), and ``LICENSE``. The other images of
    the repository (its 40-image test list) are left out, as in the mirror, so ``data.source: raccoon`` is
    the same data whether it comes from the mirror or the download. Without that list every image is kept.

    Raises:
        AssetError: the archive lacks ``images/`` or ``annotations/`` (its layout has changed).
    """
    if not ((repo / "images").is_dir() and (repo / "annotations").is_dir()):
        raise AssetError(f"the raccoon archive has no {RACCOON_ARCHIVE_FOLDER}/images/ and annotations/: "
                         "its layout has changed; put the dataset in a mirror folder (YOLOX_ASSETS_DIR, "
                         "data/raccoon/)")
    train_list = repo / "data" / "train_labels.csv"
    keep = None
    if train_list.is_file():
        with train_list.open(newline="", encoding="utf-8") as f:
            keep = {Path(row["filename"]).stem for row in csv.DictReader(f) if row.get("filename")}
    for folder, suffix in (("images", ".jpg"), ("annotations", ".xml")):
        (dest / folder).mkdir(parents=True)
        for path in sorted((repo / folder).glob(f"*{suffix}")):
            if keep is None or path.stem in keep:
                shutil.move(str(path), dest / folder / path.name)
    if (repo / "LICENSE").is_file():
        shutil.move(str(repo / "LICENSE"), dest / "LICENSE")


def _write_coco_yaml_if_missing(root: Path) -> None:
    """The released coco128 zip has no dataset.yaml: write one with the 80 COCO class names (atomically)."""
    if (root / "dataset.yaml").exists():
        return

    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(COCO_CLASSES))
    write_text(root / "dataset.yaml", f"path: .\ntrain: images/train2017\nnames:\n{names}\n")


def fetch_dataset(value: str, out_dir: str | Path) -> Path:
    """Copy the dataset ``value`` (name or folder, see :func:`resolve_dataset`) into ``out_dir``, replacing
    what was there: copied beside it first, then swapped in by renames, so an interrupted copy leaves the
    previous folder intact and no partial copy behind. Returns ``out_dir``.

    Raises:
        AssetError: as :func:`resolve_dataset`, or the source is not a folder.
    """
    src = resolve_dataset(value)
    if not src.is_dir():
        raise AssetError(f"dataset {value!r} resolves to {src}, which is not a folder")
    out = Path(out_dir)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    for stale in (tmp, old):   # left by a killed run of the same pid
        shutil.rmtree(stale, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, copy_function=shutil.copyfile)
        if out.exists():
            os.replace(out, old)   # the previous folder is deleted only once the new one is in place
        os.replace(tmp, out)
    except BaseException:
        if old.exists() and not out.exists():
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
    return out
