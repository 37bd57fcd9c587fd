"""The data version of a prepared dataset: its DVC directory hash (``<md5>.dir``), as ``dvc add`` or a
``dvc.lock`` entry records it, so an MLflow run's ``data_version`` tag names a DVC object a worker can pull."""

from __future__ import annotations

import tempfile
from pathlib import Path


def dvc_dir_hash(path: str | Path) -> str:
    """DVC's md5 hash of a folder (e.g. ``f62b...77.dir``), computed without writing to any cache."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db.local import LocalHashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as tmp:
        odb = LocalHashFileDB(fs, tmp)
        _, _, obj = build(odb, str(Path(path).resolve()), fs, "md5", dry_run=True)
    return str(obj.hash_info.value)
