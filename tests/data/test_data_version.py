"""The data version (issue 12 item 3): DVC's ``.dir`` hash of a folder (:func:`yolox.lineage.data_version`),
through DVC's state and a remembered listing, equals the hash computed from scratch, and changes with any
file.

The reference is ``dvc_data``'s build with a throw-away object database and no state (every file read).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from yolox.lineage import data_version, state_dir


def reference_hash(path: Path) -> str:
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db.local import LocalHashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as tmp:
        _, _, obj = build(LocalHashFileDB(fs, tmp), str(path.resolve()), fs, "md5", dry_run=True)
    return str(obj.hash_info.value)


@pytest.fixture
def folder(coco128_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("YOLOX_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for image in sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[:6]:
        os.link(image, root / "images" / image.name)       # hard links, as prepare writes them
        label = coco128_dir / "labels" / "train2017" / f"{image.stem}.txt"
        if label.is_file():
            shutil.copy(label, root / "labels" / label.name)
    return root


def test_warm_hash_is_the_cold_hash_and_reads_no_file(folder: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import dvc_data.hashfile.build as build_module

    expected = reference_hash(folder)
    assert data_version(folder) == expected
    assert state_dir() == tmp_path / "cache" / "dvc-state"
    assert any((tmp_path / "cache" / "dvc-state").iterdir())

    def no_build(*args, **kwargs):
        raise AssertionError("an unchanged folder was hashed again")

    monkeypatch.setattr(build_module, "build", no_build)
    assert data_version(folder) == expected


def test_any_change_changes_the_hash(folder: Path) -> None:
    original = data_version(folder)
    label = min((folder / "labels").iterdir())
    text = label.read_text()
    label.write_text(text.replace("0.", "1.", 1))           # same size, new content and mtime
    changed = data_version(folder)
    assert changed != original and changed == reference_hash(folder)
    label.write_text(text)
    assert data_version(folder) == original == reference_hash(folder)
    (folder / "images" / "extra.txt").write_text("x")       # a new file
    added = data_version(folder)
    assert added not in (original, changed) and added == reference_hash(folder)
    (folder / "images" / "extra.txt").unlink()
    os.rename(label, label.with_name("renamed.txt"))         # a renamed file: same inode, mtime and size
    renamed = data_version(folder)
    assert renamed != original and renamed == reference_hash(folder)
