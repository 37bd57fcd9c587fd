"""Data at scale (issue 12 item 3), the parts a benchmark cannot check: validation in worker processes
gives exactly what validation in threads gives, and the training dataset's records packed into flat
arrays are the records it was given.

The figures (prepare time and RSS, hashing, loader memory per worker at 1k/10k/100k) are in
``bench/scale.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import yolox.data.validate as validate_module
from yolox.config import AugmentParams, DataParams
from yolox.data.dataset import TrainDataset
from yolox.data.readers import read_yolo
from yolox.data.records import PackedRecords


def test_process_pool_validation_equals_thread_validation(coco128_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    raw, _ = read_yolo(coco128_dir)
    images = raw.splits["train"][:70]                       # two chunks of CHUNK_IMAGES
    params = DataParams(min_box_size=8.0)                   # some boxes skipped, so issues are compared too
    threads = validate_module.validate_images(images, raw.num_classes, params, workers=2)
    monkeypatch.setattr(validate_module, "PROCESS_POOL_MIN_IMAGES", 1)
    procs = validate_module.validate_images(images, raw.num_classes, params, workers=2)
    assert threads.issues and [i.to_json() for i in procs.issues] == [i.to_json() for i in threads.issues]
    assert procs.notes == threads.notes
    assert len(procs.records) == len(threads.records) == 70
    for a, b in zip(procs.records, threads.records, strict=True):
        assert (a.image_id, a.path, a.width, a.height) == (b.image_id, b.path, b.width, b.height)
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.labels, b.labels)


def test_packed_records_are_the_records(coco128_dataset) -> None:
    records = coco128_dataset.records
    packed = PackedRecords(records)
    assert len(packed) == len(records) and packed[-1].image_id == records[-1].image_id
    for rec, got in zip(records, packed, strict=True):
        assert (got.image_id, got.path, got.width, got.height) == (rec.image_id, rec.path, rec.width, rec.height)
        assert got.boxes.dtype == np.float32 and np.array_equal(got.boxes, rec.boxes)
        assert got.labels.dtype == np.int64 and np.array_equal(got.labels, rec.labels)
        assert not got.boxes.flags.writeable                 # views into the shared arrays
    assert list(packed.num_boxes()) == [len(r.labels) for r in records]
    with pytest.raises(IndexError):
        packed[len(records)]
    # what a loader worker holds of the dataset: a handful of arrays, not one object per image
    train = TrainDataset(coco128_dataset, AugmentParams(), 128, seed=0)
    assert train.records is train.augment.records and isinstance(train.records, PackedRecords)
    assert not any(isinstance(v, list) and len(v) == len(records) for v in vars(train).values())
    assert all(isinstance(v, np.ndarray) for v in vars(train.records).values())
    _, _, n, image_id = train[5]
    assert image_id == records[5].image_id and n >= 0
