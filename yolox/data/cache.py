"""Decoded training images held in RAM, shared by the loader's worker processes.

JPEG decoding is most of a training sample's cost (on coco128 at the nano recipe, ``cv2.imread`` is ~60 % of
``TrainDataset.__getitem__``; ``bench/data.py``). When the decoded images of the train split fit in
``train.cache_ram_mb``, :class:`DecodedImageCache` decodes each once, in the main process, into one
read-only NumPy buffer, before the loader forks its workers: the workers then read the same physical pages
(copy-on-write pages that nobody writes), so the cache costs its size once, not once per worker.

What is cached is exactly what :func:`yolox.data.augment.read_image` returns (full size, BGR uint8; it is
the reader the cache is given), so the samples are bit-identical with and without the cache
(``tests/data/test_augment.py``). The authors' ``--cache ram`` stores images already resized to the input size;
that cannot serve multi-scale batches drawn at other sides without a second resize (other pixels), hence
full size here.

An image that cannot be decoded, or whose decoded size differs from its record, is not cached; reading it
at sample time then raises the usual :class:`yolox.errors.DataError` naming the file. With a start method
other than ``fork`` (the workers would receive a pickled copy of the buffer each), the cache is dropped
when pickled and the workers decode from disk.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from yolox.data.records import PackedRecords
from yolox.errors import DataError

log = logging.getLogger("yolox.data")

MB = 1 << 20


class DecodedImageCache:
    """Every image of ``records`` decoded once into one shared, read-only uint8 buffer.

    Args:
        records: the train split (``sizes`` gives each image's width and height in pixels).
        read: how a sample reads an image file ((H, W, 3) uint8; raises :class:`DataError` if it cannot):
            :func:`yolox.data.augment.read_image`, so the cache holds exactly what a sample would read.
        budget_mb: the cache is built only if all decoded images (``sum(w * h * 3)`` bytes) fit in this
            many MiB; 0 turns it off.
        threads: decoding threads (``cv2.imread`` releases the GIL); default: the CPUs available.

    Attributes:
        enabled: False when the images do not fit (or ``budget_mb`` is 0): :meth:`get` then returns None.
        nbytes: bytes held (0 when disabled).
        seconds: time the decoding took.
    """

    def __init__(self, records: PackedRecords, read: Callable[[Path], np.ndarray], budget_mb: int,
                 threads: int | None = None) -> None:
        sizes = records.sizes.astype(np.int64)                                   # (N, 2) [width, height]
        item_bytes = sizes[:, 0] * sizes[:, 1] * 3
        total = int(item_bytes.sum())
        self.enabled = budget_mb > 0 and 0 < total <= budget_mb * MB
        self.nbytes, self.seconds = 0, 0.0
        self._sizes = sizes
        self._offsets = np.concatenate([[0], np.cumsum(item_bytes)]).astype(np.int64)
        self._ok = np.zeros(len(records), bool)
        self._buffer = np.zeros(0, np.uint8)
        if not self.enabled:
            if budget_mb > 0 and total:
                log.info("image cache off: the %d decoded training images need %.0f MiB, over "
                         "train.cache_ram_mb = %d", len(records), total / MB, budget_mb)
            return
        t0 = time.perf_counter()
        self._buffer = np.empty(total, np.uint8)

        def decode(i: int) -> None:
            try:
                img = read(records[i].path)
            except DataError:
                return          # not cached: read at sample time, which reports the file
            w, h = sizes[i]
            if img.shape != (h, w, 3):
                return
            self._buffer[self._offsets[i]:self._offsets[i + 1]] = img.reshape(-1)
            self._ok[i] = True

        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(decode, range(len(records))))
        self._buffer.setflags(write=False)
        self._ok.setflags(write=False)
        self.nbytes, self.seconds = total, time.perf_counter() - t0
        log.info("image cache: %d training images decoded into %.0f MiB of RAM in %.1f s (shared by the "
                 "loader workers)", int(self._ok.sum()), total / MB, self.seconds)

    def get(self, index: int) -> np.ndarray | None:
        """Image ``index`` as (H, W, 3) uint8 BGR, a read-only view of the buffer; None if not cached."""
        if not self._ok[index]:
            return None
        w, h = self._sizes[index]
        return self._buffer[self._offsets[index]:self._offsets[index + 1]].reshape(int(h), int(w), 3)

    def __getstate__(self) -> dict:
        """Pickled (spawn/forkserver workers): without the buffer, so each worker does not get a copy."""
        state = self.__dict__.copy()
        state.update(enabled=False, nbytes=0, _buffer=np.zeros(0, np.uint8),
                     _ok=np.zeros(len(self._ok), bool))
        return state
