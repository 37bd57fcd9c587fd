"""Training and evaluation datasets and loaders over a :class:`~yolox.data.records.DetectionDataset`.

Multi-scale training (the authors: every 10 iterations the input side is redrawn from multiples of 32
in [input - 5*32, input + 5*32]; nano and tiny 320-640) is done by the BATCH SAMPLER:
:class:`MultiScaleBatchSampler` yields, for each batch, a list of :class:`SampleKey`
``(index, size, mosaic)`` with one size for the whole batch, so the workers build every sample
directly at that size (no resize of the finished batch, no state to push into worker processes) and
every batch holds images of one size. The size of batch ``b`` of epoch ``e`` is drawn from a generator
seeded with ``(seed, e, b // every)``: deterministic, and the same on every rank without
communication. The mosaic switch travels the same way: :meth:`TrainDataset.set_mosaic` is read by the
sampler when it makes the next batch's keys (batches already prefetched by the workers, at most
``workers * prefetch_factor``, keep the old setting), which is what makes it work with persistent
workers.

The augmentation's random state travels the same way too (the training loader's sampler has a
``sample_seed``): each key carries a seed drawn from ``(sample_seed, epoch, batch)`` and the dataset
reseeds its augmentation with it before making the sample. So every sample of a run is a pure function
of (seed, rank, epoch, position in the epoch): independent of the number of workers, of which worker
makes it, of persistent workers' state, and of what happened in earlier epochs; which is what makes a
resumed run (``yolox train --resume``) draw exactly the augmentations of an uninterrupted one.

Sample of :class:`TrainDataset`: ``(image (3, S, S) float32 BGR 0-255, targets (max_labels, 5) float32
rows [class, cx, cy, w, h] in input pixels padded with zeros, number of valid rows, image_id)``.
Batch of :func:`collate`: ``(images (B, 3, S, S) float32, targets (B, max_labels, 5) float32,
num_targets (B,) int64, image_ids (B,) int64)``.
"""

from __future__ import annotations

import math
import os
import random
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
)

from yolox.config import CACHE_RAM_MB, AugmentParams
from yolox.data.augment import SMALL_MODELS, TrainAugment, recipe_for_model
from yolox.data.records import DetectionDataset
from yolox.errors import DataError
from yolox.files import write_bytes

MULTISCALE_EVERY = 10
"""Iterations between two draws of the multi-scale input side (the authors' value)."""


def multiscale_sizes(model_name: str, input_size: int, range_: int) -> list[int]:
    """Input sides (pixels, multiples of 32) of multi-scale training.

    ``[input_size - range_*32, ..., input_size + range_*32]`` (step 32, at least 32); yolox-nano and
    yolox-tiny use the authors' fixed 320..640. ``range_ == 0`` turns multi-scale off: ``[input_size]``.
    """
    if range_ <= 0:
        return [input_size]
    if model_name in SMALL_MODELS:
        lo, hi = 320, 640
    else:
        lo, hi = input_size - range_ * 32, input_size + range_ * 32
    return list(range(max(lo, 32), hi + 1, 32))


class SampleKey(NamedTuple):
    """What a batch sampler asks :class:`TrainDataset` for: record ``index`` at side ``size`` (pixels),
    with the mosaic draw allowed or not, and the seed to reset the augmentation with first (None: keep
    the dataset's running random state)."""

    index: int
    size: int
    mosaic: bool
    seed: int | None = None


def _chw_float(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 tensor, same values (cv2.split: 2x faster than a transpose)."""
    out = np.empty((3, img.shape[0], img.shape[1]), np.float32)
    for c, channel in enumerate(cv2.split(img)):
        out[c] = channel
    return torch.from_numpy(out)


class TrainDataset(Dataset):
    """Augmented training samples (see the module docstring for the sample layout).

    Args:
        dataset: the train split.
        params: the augmentation recipe; passed through :func:`recipe_for_model` when ``model_name``
            is given.
        input_size: side S (pixels) of samples fetched by plain int index; the loader's batch sampler
            passes its own size with each :class:`SampleKey`.
        model_name: e.g. ``"yolox-nano"`` (per-size defaults), or None to use ``params`` as given.
        seed: seed of the augmentation's random state (workers reseed it, see :func:`seed_worker`;
            keys carrying their own seed reseed it per sample).
        cache_mb: decoded images held in RAM if they all fit in this many MiB (``train.cache_ram_mb``;
            :mod:`yolox.data.cache`); built here, before the loader forks its workers, which share it.
    """

    def __init__(self, dataset: DetectionDataset, params: AugmentParams, input_size: int,
                 model_name: str | None = None, seed: int = 0, cache_mb: int = CACHE_RAM_MB) -> None:
        self.names = list(dataset.names)
        self.params = recipe_for_model(model_name, params) if model_name else params
        self.seed = int(seed)
        self.augment = TrainAugment(dataset, self.params, seed, cache_mb)
        self.records = self.augment.records   # PackedRecords: no per-image objects for the workers to copy
        self.input_size = int(input_size)
        self.max_labels = self.params.max_labels

    def __len__(self) -> int:
        return len(self.records)

    @property
    def mosaic_enabled(self) -> bool:
        return self.augment.mosaic_enabled

    def set_mosaic(self, enabled: bool) -> None:
        """Switch Mosaic (and MixUp) on or off; off = the authors' last "no-aug" epochs."""
        self.augment.mosaic_enabled = bool(enabled)

    def set_input_size(self, size: int) -> None:
        """Side (pixels) of samples fetched by int index and of batches when multi-scale is off."""
        self.input_size = int(size)

    def reseed(self, seed: int) -> None:
        """Reset the augmentation's random state."""
        self.augment.reseed(seed)

    def __getitem__(self, key: int | SampleKey | tuple
                    ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """One sample: ``(image (3, S, S) float32 BGR 0-255, targets (max_labels, 5) float32
        [class, cx, cy, w, h] in input pixels, zero rows after the valid ones, num_valid, image_id)``.

        ``key``: a record index, or a :class:`SampleKey` (or a plain ``(index, size, mosaic[, seed])``)."""
        if isinstance(key, tuple):
            index, size, mosaic, seed = SampleKey(*key)
        else:
            index, size, mosaic, seed = int(key), self.input_size, self.augment.mosaic_enabled, None
        if seed is not None:
            self.augment.reseed(seed)
        img, boxes, labels = self.augment(index, size, mosaic)
        n = len(boxes)
        targets = np.zeros((self.max_labels, 5), np.float32)
        if n:
            targets[:n, 0] = labels
            targets[:n, 1] = (boxes[:, 0] + boxes[:, 2]) * 0.5
            targets[:n, 2] = (boxes[:, 1] + boxes[:, 3]) * 0.5
            targets[:n, 3] = boxes[:, 2] - boxes[:, 0]
            targets[:n, 4] = boxes[:, 3] - boxes[:, 1]
        return _chw_float(img), torch.from_numpy(targets), n, int(self.records.image_ids[index])


def epoch_permutation(n: int, seed: int, k: int) -> list[int]:
    """Permutation ``k`` of ``range(n)``: ``torch.randperm`` with a generator seeded from ``(seed, k)`` (the
    order a RandomSampler reseeded that way gives)."""
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))
    return torch.randperm(n, generator=generator).tolist()


class FullBatchStream(Sampler[int]):
    """Indices for batches that are always full, as the authors' sampler draws them (their ``InfiniteSampler``
    under a batch sampler: an endless stream of shuffled passes over the data, cut into batches, an epoch being
    ``ceil((N // world) / batch)`` batches).

    The stream is permutation 0, then 1, 2, ... of ``range(N)`` (:func:`epoch_permutation` of ``(seed, k)``).
    Epoch ``e`` takes the next ``iters * batch * world`` positions of it, and rank ``r`` every ``world``-th of
    those from the ``r``-th, so an epoch whose last batch would hold a sliver of the data (``N mod batch``
    images, stepped at the full lr) continues into the next pass instead. A pure function of (seed, epoch,
    rank): resumable mid-epoch, the same on every rank without communication. When ``N`` is a multiple of
    ``batch * world``, epoch ``e`` is exactly permutation ``e`` (with one process: what the ragged sampler gives).

    Args:
        n: dataset size. batch_size: images per batch of one process. seed: the run's shuffling seed.
        rank, world_size: this process and how many train.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"FullBatchStream needs n >= 1 and batch_size >= 1 (got {n}, {batch_size})")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.iters = max(1, math.ceil((self.n // self.world_size) / self.batch_size))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration draws (the batch sampler sets it before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.iters * self.batch_size

    def __iter__(self) -> Iterator[int]:
        per_epoch = self.iters * self.batch_size * self.world_size
        first = self.epoch * per_epoch
        positions = range(first + self.rank, first + per_epoch, self.world_size)
        perms: dict[int, list[int]] = {}
        for q in positions:
            k = q // self.n
            if k not in perms:
                perms[k] = epoch_permutation(self.n, self.seed, k)
            yield perms[k][q % self.n]


class MultiScaleBatchSampler(Sampler[list[SampleKey]]):
    """Batches of :class:`SampleKey` with one input side per batch, redrawn every ``every`` batches.

    Args:
        sampler: yields record indices (RandomSampler, DistributedSampler, ...).
        batch_size: images per batch (per process).
        drop_last: drop the last incomplete batch.
        dataset: its ``input_size`` (when ``sizes`` is None or has one entry) and ``mosaic_enabled``
            are read for each batch.
        sizes: candidate sides (pixels); None or one entry = no multi-scale.
        every: batches between two size draws.
        seed: seed of the size draws (same on every rank) and, when ``sampler`` has a torch
            ``generator`` (RandomSampler), of each epoch's order: reseeded from ``(seed, epoch)``.
        sample_seed: when given, each key carries an augmentation seed drawn from
            ``(sample_seed, epoch, batch)`` (see the module docstring); this rank's seed.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool, dataset: TrainDataset,
                 sizes: Sequence[int] | None = None, every: int = MULTISCALE_EVERY, seed: int = 0,
                 sample_seed: int | None = None) -> None:
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.dataset = dataset
        self.sizes = list(sizes) if sizes else []
        self.every = max(int(every), 1)
        self.seed = int(seed)
        self.sample_seed = None if sample_seed is None else int(sample_seed)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Set the epoch of the next iteration (also forwarded to a DistributedSampler) and the batch it
        starts at: a run resumed mid-epoch skips the ``start`` batches it already trained on, without
        making them (the others keep their index, so their sizes and seeds are the uninterrupted run's)."""
        self.epoch, self.start = int(epoch), int(start)

    def size_of(self, epoch: int, batch: int) -> int:
        """The input side (pixels) of batch ``batch`` of epoch ``epoch``."""
        if len(self.sizes) <= 1:
            return self.sizes[0] if self.sizes else self.dataset.input_size
        draw = np.random.default_rng([self.seed, epoch, batch // self.every])
        return self.sizes[int(draw.integers(len(self.sizes)))]

    def sample_seeds(self, epoch: int, batch: int, n: int) -> list[int | None]:
        """The augmentation seeds of the ``n`` samples of batch ``batch`` of epoch ``epoch`` (Nones
        without ``sample_seed``)."""
        if self.sample_seed is None:
            return [None] * n
        return np.random.SeedSequence([self.sample_seed, epoch, batch]).generate_state(n).tolist()

    def _keys(self, indices: list[int], epoch: int, batch: int) -> list[SampleKey]:
        size, mosaic = self.size_of(epoch, batch), self.dataset.mosaic_enabled
        seeds = self.sample_seeds(epoch, batch, len(indices))
        return [SampleKey(i, size, mosaic, s) for i, s in zip(indices, seeds)]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        epoch, start = self.epoch, self.start
        self.epoch, self.start = epoch + 1, 0
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        generator = getattr(self.sampler, "generator", None)
        if isinstance(generator, torch.Generator):  # RandomSampler: the epoch's order from (seed, epoch)
            generator.manual_seed(int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]))
        batch: list[int] = []
        b = 0
        for idx in self.sampler:
            batch.append(int(idx))
            if len(batch) == self.batch_size:
                if b >= start:
                    yield self._keys(batch, epoch, b)
                b += 1
                batch = []
        if batch and not self.drop_last and b >= start:
            yield self._keys(batch, epoch, b)

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor, int, int]]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack training samples: ``(images (B, 3, S, S) float32, targets (B, max_labels, 5) float32,
    num_targets (B,) int64, image_ids (B,) int64)``. All samples must share S (the batch sampler's job)."""
    images, targets, counts, ids = zip(*batch)
    return (_stack(images), _stack(targets), torch.tensor(counts, dtype=torch.int64),
            torch.tensor(ids, dtype=torch.int64))


def _stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack``; in a loader worker, straight into shared memory (as torch's default collate):
    no extra copy to send the batch, and no batch-sized buffer left on the worker's heap."""
    if torch.utils.data.get_worker_info() is None:
        return torch.stack(tensors)
    first = tensors[0]
    storage = first.untyped_storage()._new_shared(len(tensors) * first.numel() * first.element_size())
    out = first.new_empty(0).set_(storage, 0, (len(tensors), *first.shape))
    return torch.stack(tensors, out=out)


def worker_seed(dataset_seed: int, worker_id: int) -> int:
    """The seed of data-loader worker ``worker_id`` of a loader whose dataset has seed ``dataset_seed``."""
    return int(np.random.SeedSequence([dataset_seed, 1 + worker_id]).generate_state(1)[0])


WORKER_STOP_GRACE_S = 20
"""Seconds a data-loader worker stays after a SIGTERM (see :func:`seed_worker`): time for the training process
to finish its step and shut the loader down itself."""


def _leave_worker(signum: int, frame: object) -> None:
    os._exit(0)


def _defer_worker_stop(signum: int, frame: object) -> None:
    """A loader worker's SIGTERM: leave after :data:`WORKER_STOP_GRACE_S` unless shut down before."""
    if signal.getsignal(signal.SIGALRM) is not _leave_worker:
        signal.signal(signal.SIGALRM, _leave_worker)
        signal.alarm(WORKER_STOP_GRACE_S)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed torch, ``random``, NumPy and the dataset's augmentation with
    :func:`worker_seed` of the dataset's seed (a pure function of (seed, rank, worker id); else the
    worker's torch seed), and run OpenCV single-threaded (the workers are the parallelism).

    With per-sample seeds (the training loader) the augmentation is reseeded for every sample anyway;
    this keeps anything else a worker draws reproducible too.

    SIGINT is ignored and SIGTERM deferred: Ctrl-C reaches the whole foreground process group and a
    launcher stops a worker's whole group, but stopping is the training process's job (it finishes its
    step, saves a checkpoint, then shuts its loader down); a worker killed under it would fail the step.
    A SIGTERM starts :data:`WORKER_STOP_GRACE_S` seconds after which the worker leaves by itself (exit
    status 0, which the loader does not take for a crash): a process that exits with its loader still
    alive (multiprocessing terminates, then joins, its daemonic workers) is not left waiting forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _defer_worker_stop)
    info = torch.utils.data.get_worker_info()
    base = getattr(info.dataset, "seed", None) if info is not None else None
    seed = worker_seed(base, worker_id) if base is not None else torch.initial_seed() % 2**32
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    cv2.setNumThreads(0)
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """The augmentation seed of process ``rank`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def loader_seeds(seed: int, rank: int, workers: int) -> dict[str, object]:
    """What seeds the training loader of process ``rank`` (recorded in checkpoints): the shuffling seed
    (per epoch: see the trainer), this rank's per-sample augmentation seed and each worker's seed."""
    rs = rank_seed(seed, rank)
    return {"seed": int(seed), "rank": int(rank), "sample_seed": rs,
            "worker_seeds": [worker_seed(rs, w) for w in range(workers)]}


def build_train_loader(dataset: DetectionDataset, params: AugmentParams, model_name: str, input_size: int,
                       batch_size: int, workers: int, seed: int, rank: int = 0, world_size: int = 1,
                       distributed: bool = False, multiscale: bool = True,
                       multiscale_every: int = MULTISCALE_EVERY, drop_last: bool = False,
                       cache_mb: int = CACHE_RAM_MB, full_batches: bool = False) -> DataLoader:
    """The training loader: augmentation (per-model recipe), multi-scale batches, seeded workers.

    Args:
        dataset: the train split.
        params: augmentation params (``recipe_for_model(model_name, params)`` is applied).
        model_name: the model (per-size augmentation defaults and multi-scale range).
        input_size: base input side (pixels).
        batch_size: images per batch of THIS process (``TrainParams.batch_size // world_size``).
        workers: worker processes (0 = load in the main process); persistent when > 0.
        seed: seeds the shuffling (per epoch, same on all ranks), the size draws and, mixed with
            ``rank``, the augmentation of each sample (:func:`loader_seeds`).
        rank, world_size, distributed: with ``distributed``, a DistributedSampler gives this rank its
            share of each epoch.
        multiscale: draw the side from :func:`multiscale_sizes` every ``multiscale_every`` batches;
            else every batch is at ``dataset.input_size`` (changeable with ``set_input_size``).
        cache_mb: ``train.cache_ram_mb`` (:class:`TrainDataset`).
        full_batches: ``train.full_batches``: every batch full, drawn from :class:`FullBatchStream` (the
            authors' sampling); else each epoch is one pass (RandomSampler or DistributedSampler) whose last
            batch holds the remainder unless ``drop_last``.

    Returns:
        A DataLoader of :func:`collate` batches. Its ``dataset`` is the :class:`TrainDataset`
        (``loader.dataset.set_mosaic(False)`` for the no-aug phase); call
        ``loader.batch_sampler.set_epoch(epoch)`` before each epoch (else epochs count up on their own).
    """
    if not dataset.records:
        raise DataError("the training dataset has no images: check the prepared train split")
    rs = rank_seed(seed, rank)
    train_set = TrainDataset(dataset, params, input_size, model_name, seed=rs, cache_mb=cache_mb)
    if full_batches:
        sampler: Sampler[int] = FullBatchStream(len(train_set), batch_size, seed, rank if distributed else 0,
                                                world_size if distributed else 1)
        drop_last = True    # the stream's length is a whole number of batches: nothing is dropped
    elif distributed:
        sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                     drop_last=drop_last)
    else:
        sampler = RandomSampler(train_set, generator=torch.Generator().manual_seed(seed))
    sizes = multiscale_sizes(model_name, input_size, params.multiscale_range) if multiscale else None
    batch_sampler = MultiScaleBatchSampler(sampler, batch_size, drop_last, train_set, sizes,
                                           multiscale_every, seed, sample_seed=rs)
    return DataLoader(
        train_set, batch_sampler=batch_sampler, num_workers=workers, collate_fn=collate,
        pin_memory=torch.cuda.is_available(), worker_init_fn=seed_worker, persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(rs),
    )


def _class_color(label: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(label + 1)
    return tuple(int(c) for c in rng.integers(64, 256, 3))  # type: ignore[return-value]


def augment_preview(dataset: DetectionDataset, params: AugmentParams, model_name: str, input_size: int,
                    n: int = 16, seed: int = 0, out_path: str | Path = "augment_preview.png") -> Path:
    """Save a PNG grid of ``n`` augmented training samples with their boxes and class names drawn, written
    atomically to ``out_path`` (:func:`yolox.files.write_bytes`; the image format by its suffix).

    Samples are drawn as in training (``recipe_for_model(model_name, params)``, mosaic on, at
    ``input_size``), from random records chosen with ``seed``. Returns the written path.

    Raises:
        DataError: the dataset is empty, or the PNG cannot be written (names the path).
    """
    if not dataset.records:
        raise DataError("cannot preview augmentations of an empty dataset")
    augment = TrainAugment(dataset, recipe_for_model(model_name, params), seed)
    pick = np.random.default_rng(seed).integers(0, len(dataset.records), n)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    gap, s = 4, input_size
    grid = np.full((rows * (s + gap) - gap, cols * (s + gap) - gap, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for k, index in enumerate(pick.tolist()):
        img, boxes, labels = augment(index, s)
        img = np.ascontiguousarray(img)
        for box, label in zip(boxes.tolist(), labels.tolist()):
            color = _class_color(label)
            x0, y0, x1, y1 = (round(v) for v in box)
            cv2.rectangle(img, (x0, y0), (x1, y1), color, 2)
            name = dataset.names[label] if 0 <= label < len(dataset.names) else str(label)
            (tw, th), _ = cv2.getTextSize(name, font, 0.45, 1)
            ty = max(y0, th + 4)
            cv2.rectangle(img, (x0, ty - th - 4), (x0 + tw + 2, ty), color, -1)
            cv2.putText(img, name, (x0 + 1, ty - 3), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        r, c = divmod(k, cols)
        grid[r * (s + gap): r * (s + gap) + s, c * (s + gap): c * (s + gap) + s] = img
    out = Path(out_path)
    problem = f"cannot write the augmentation preview to {out}: check the folder and the suffix"
    try:
        ok, encoded = cv2.imencode(out.suffix, grid)  # the codec by the suffix, as cv2.imwrite picks it
    except cv2.error:  # no encoder for that suffix
        ok = False
    if not ok:
        raise DataError(problem)
    try:
        write_bytes(out, encoded.tobytes())
    except OSError as err:
        raise DataError(f"{problem} ({err.strerror or err})") from None
    return out
