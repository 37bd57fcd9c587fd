"""The prepare stage: a raw dataset validated, split and written as a prepared dataset (:class:`PreparedData`,
its data version the DVC hash of the folder), and a run's own snapshot of it (:func:`own_data`)."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from yolox.config import PipelineParams
from yolox.data.prepare import prepare_dataset, snapshot_prepared
from yolox.files import project_lock
from yolox.lineage import data_version

log = logging.getLogger("yolox.data")


@dataclass(frozen=True)
class PreparedData:
    """A prepared dataset on disk and its version (the DVC directory hash of the folder)."""

    path: Path
    data_version: str
    report: Path
    names: tuple[str, ...]
    train_images: int
    val_images: int
    train_boxes: int
    val_boxes: int
    skipped_images: int
    skipped_boxes: int

    def counts(self) -> dict[str, int]:
        return {"data/train_images": self.train_images, "data/val_images": self.val_images,
                "data/train_boxes": self.train_boxes, "data/val_boxes": self.val_boxes,
                "data/skipped_images": self.skipped_images, "data/skipped_boxes": self.skipped_boxes}


def prepare(params: PipelineParams, out_dir: str | Path | None = None, snapshot: str | Path | None = None
            ) -> PreparedData:
    """Validate and write ``params.data.source`` as a prepared dataset (``out_dir``, default
    ``params.data.prepared_dir``) and compute its data version.

    Two prepares of one folder never overlap: the lock file ``<out_dir>.lock`` beside it serialises them (a
    second one waits, saying for whom). With ``snapshot`` (a run's own folder), the prepared dataset is also
    hard-linked there while the lock is held (:func:`yolox.data.prepare.snapshot_prepared`) and the result
    describes the snapshot: the run reads its own data, whatever a later prepare swaps into ``out_dir``.

    Raises:
        AssetError, DataError, ConfigError: see :func:`yolox.data.prepare.prepare_dataset`.
    """
    out = Path(out_dir or params.data.prepared_dir)
    with project_lock(out.with_name(out.name + ".lock"), f"prepared dataset {out}",
                      on_wait=lambda who: log.info("waiting for %s, which is preparing %s", who, out)):
        r = prepare_dataset(params.data, out)
        path, report = r.out_dir, r.report_path
        if snapshot is not None:
            path = snapshot_prepared(r.out_dir, Path(snapshot))
            report = path / r.report_path.relative_to(r.out_dir)
    return PreparedData(path, data_version(path), report, tuple(r.names), r.num_train_images,
                        r.num_val_images, r.num_train_boxes, r.num_val_boxes, r.num_skipped_images,
                        r.num_skipped_boxes)


def own_data(params: PipelineParams, prepared: PreparedData, snapshot: Path) -> PreparedData:
    """``prepared`` (the shared ``data.prepared_dir``, or a cached prepare's result) as the run's own snapshot at
    ``snapshot`` (hard links, taken under the prepared folder's lock: :func:`prepare`), checked to hold the same
    data version. When another run re-prepared other data in between (or the cached folder is gone), the data is
    prepared again with the snapshot taken under the same lock, and that result is the run's.

    Raises:
        DataError: see :func:`prepare`.
    """
    out = Path(prepared.path)
    with project_lock(out.with_name(out.name + ".lock"), f"prepared dataset {out}"):
        if out.is_dir():
            snapshot_prepared(out, snapshot)
    if snapshot.is_dir() and data_version(snapshot) == prepared.data_version:
        return replace(prepared, path=snapshot, report=snapshot / Path(prepared.report).relative_to(out))
    log.warning("%s changed since it was prepared for this run (another run prepared other data): preparing again",
                out)
    shutil.rmtree(snapshot, ignore_errors=True)
    return prepare(params, out, snapshot=snapshot)
