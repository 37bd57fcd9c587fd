"""Training augmentation, datasets and loaders, on the real coco128 images and labels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yolox.config import AugmentParams
from yolox.data.augment import TrainAugment, YoloxHSV, read_image, recipe_for_model
from yolox.data.dataset import (
    MultiScaleBatchSampler,
    SampleKey,
    TrainDataset,
    augment_preview,
    build_train_loader,
    multiscale_sizes,
)
from yolox.data.records import DetectionDataset, ImageRecord

# Everything off but what a test switches on.
QUIET = {"mosaic_prob": 0.0, "enable_mixup": False, "hsv_prob": 0.0, "flip_prob": 0.0}


@pytest.fixture(scope="module")
def coco128(coco128_dataset: DetectionDataset) -> DetectionDataset:
    """coco128 straight from its YOLO labels (conftest.py's ``coco128_dataset``)."""
    return coco128_dataset


def _subset(ds: DetectionDataset, records: list[ImageRecord]) -> DetectionDataset:
    return DetectionDataset(ds.names, ds.category_ids, records)


def _check_boxes(boxes: np.ndarray, labels: np.ndarray, size: int, params: AugmentParams) -> None:
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
    assert labels.dtype == np.int64
    assert len(boxes) <= params.max_labels
    if len(boxes):
        assert (boxes >= 0).all() and (boxes <= size).all()
        assert ((boxes[:, 2] - boxes[:, 0]) >= params.min_box_size - 1e-4).all()
        assert ((boxes[:, 3] - boxes[:, 1]) >= params.min_box_size - 1e-4).all()


# --- augmentation ------------------------------------------------------------------------------------

def test_recipe_for_model_defaults() -> None:
    nano = recipe_for_model("yolox-nano", AugmentParams())
    assert (nano.enable_mixup, nano.mosaic_scale, nano.mosaic_prob) == (False, (0.5, 1.5), 0.5)
    tiny = recipe_for_model("yolox-tiny", AugmentParams())
    assert (tiny.enable_mixup, tiny.mosaic_scale, tiny.mosaic_prob) == (False, (0.5, 1.5), 1.0)
    s = recipe_for_model("yolox-s", AugmentParams())
    assert (s.enable_mixup, s.mosaic_scale, s.mosaic_prob) == (True, (0.1, 2.0), 1.0)
    explicit = recipe_for_model("yolox-nano", AugmentParams(enable_mixup=True, mosaic_prob=1.0))
    assert (explicit.enable_mixup, explicit.mosaic_prob, explicit.mosaic_scale) == (True, 1.0, (0.5, 1.5))


@pytest.mark.parametrize("model,size", [("yolox-nano", 416), ("yolox-s", 640)])
def test_augmented_boxes_stay_valid(coco128: DetectionDataset, model: str, size: int) -> None:
    params = recipe_for_model(model, AugmentParams())
    aug = TrainAugment(coco128, params, seed=1)
    total = 0
    for i in range(0, 128, 4):
        img, boxes, labels = aug(i, size)
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        _check_boxes(boxes, labels, size, params)
        total += len(boxes)
    assert total > 50

    few = AugmentParams(max_labels=3, min_box_size=8.0, mosaic_prob=1.0)
    aug = TrainAugment(coco128, few, seed=2)
    counts = [len(aug(i, 416)[1]) for i in range(10)]
    assert max(counts) == 3
    for i in range(10):
        _check_boxes(*aug(i, 416)[1:], 416, few)


def test_flip_mirrors_boxes_exactly(coco128: DetectionDataset) -> None:
    params = AugmentParams(**{**QUIET, "flip_prob": 1.0})
    aug = TrainAugment(coco128, params, seed=0)
    for i in (0, 1, 7, 20):
        rec = coco128.records[i]
        img, boxes, labels = aug(i, 416)
        r = min(416 / rec.height, 416 / rec.width)
        nw, nh = int(rec.width * r), int(rec.height * r)
        exp = rec.boxes * np.float32(r)
        exp = np.stack([nw - exp[:, 2], exp[:, 1], nw - exp[:, 0], exp[:, 3]], 1)
        keep = ((exp[:, 2] - exp[:, 0]) >= params.min_box_size) & ((exp[:, 3] - exp[:, 1]) >= params.min_box_size)
        np.testing.assert_allclose(boxes, exp[keep], atol=1e-3)
        np.testing.assert_array_equal(labels, rec.labels[keep])
        resized = cv2.resize(cv2.imread(str(rec.path)), (nw, nh), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(img[:nh, :nw], cv2.flip(resized, 1))
        assert (img[nh:] == 114).all() and (img[:, nw:] == 114).all()


def test_hsv_is_the_authors_formula(coco128: DetectionDataset) -> None:
    img = cv2.imread(str(coco128.records[5].path))
    gains = np.array([4, -17, 23], np.int16)
    got = YoloxHSV().apply(img, gains=gains)
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] + gains[1], 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + gains[2], 0, 255)
    np.testing.assert_array_equal(got, cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR))
    assert YoloxHSV().apply(img, gains=np.zeros(3, np.int16)) is img


def test_mosaic_mixes_several_images(coco128: DetectionDataset) -> None:
    # Label every box with the index of its source record, so the output tells where boxes come from.
    src = [r for r in coco128.records if len(r.boxes)][:12]
    records = [ImageRecord(r.image_id, r.path, r.width, r.height, r.boxes, np.full(len(r.boxes), k, np.int64))
               for k, r in enumerate(src)]
    params = AugmentParams(mosaic_prob=1.0, mosaic_scale=(0.5, 0.5), degrees=0.0, translate=0.0, shear=0.0,
                           enable_mixup=False, hsv_prob=0.0, flip_prob=0.0)
    aug = TrainAugment(_subset(coco128, records), params, seed=3)
    sources = []
    for i in range(10):
        _, boxes, labels = aug(i, 416)
        _check_boxes(boxes, labels, 416, params)
        sources.append(len(set(labels.tolist())))
    assert min(sources) >= 2 and max(sources) >= 3, sources


def test_mixup_adds_boxes_of_another_image(coco128: DetectionDataset) -> None:
    src = [r for r in coco128.records if len(r.boxes)][:12]
    records = [ImageRecord(r.image_id, r.path, r.width, r.height, r.boxes, np.full(len(r.boxes), k, np.int64))
               for k, r in enumerate(src)]
    base = {"mosaic_prob": 1.0, "mosaic_scale": (0.5, 0.5), "degrees": 0.0, "translate": 0.0, "shear": 0.0,
            "hsv_prob": 0.0, "flip_prob": 0.0}
    plain = TrainAugment(_subset(coco128, records), AugmentParams(**base, enable_mixup=False), seed=4)
    mixed = TrainAugment(_subset(coco128, records), AugmentParams(**base, mixup_prob=1.0), seed=4)
    more = 0
    for i in range(8):
        plain.reseed(i)
        mixed.reseed(i)  # same draws up to the mixup: the same mosaic
        img0, b0, l0 = plain(i, 416)
        img1, b1, l1 = mixed(i, 416)
        _check_boxes(b1, l1, 416, mixed.params)
        np.testing.assert_array_equal(b1[:len(b0)], b0)
        np.testing.assert_array_equal(l1[:len(l0)], l0)
        assert not np.array_equal(img0, img1)
        more += len(b1) > len(b0)
    assert more >= 6


def test_background_images_give_zero_targets(coco128: DetectionDataset) -> None:
    empty = [ImageRecord(r.image_id, r.path, r.width, r.height) for r in coco128.records[:6]]
    ds = _subset(coco128, empty)
    for params in (AugmentParams(**QUIET), AugmentParams(mosaic_prob=1.0)):
        train = TrainDataset(ds, params, 416, seed=0)
        for i in range(len(empty)):
            image, targets, n, image_id = train[i]
            assert image.shape == (3, 416, 416) and image.dtype == torch.float32
            assert n == 0 and targets.shape == (params.max_labels, 5) and not targets.any()
            assert image_id == empty[i].image_id


def test_same_seed_same_samples(coco128: DetectionDataset) -> None:
    params = AugmentParams()  # s recipe: mosaic + mixup + hsv + flip
    a, b, c = (TrainDataset(coco128, params, 416, "yolox-s", seed=s) for s in (7, 7, 8))
    differs = False
    for key in [SampleKey(i, 416, True) for i in (0, 5, 9)] + [SampleKey(3, 320, False)]:
        ia, ta, na, _ = a[key]
        ib, tb, nb, _ = b[key]
        ic, _, _, _ = c[key]
        assert torch.equal(ia, ib) and torch.equal(ta, tb) and na == nb
        differs |= not torch.equal(ia, ic)
    assert differs


def test_image_cache_gives_the_same_samples(coco128: DetectionDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded images in RAM (the default when they fit) change no pixel nor box of any recipe's samples,
    through the loader's forked workers too; the read-only buffer cannot be written by an augmentation."""
    cached = TrainDataset(coco128, AugmentParams(), 416, "yolox-s", seed=3)
    plain = TrainDataset(coco128, AugmentParams(), 416, "yolox-s", seed=3, cache_mb=0)
    assert cached.augment.cache.enabled and cached.augment.cache.nbytes == int(
        (cached.records.sizes.astype(np.int64).prod(1) * 3).sum())
    assert not plain.augment.cache.enabled and plain.augment.cache.get(0) is None
    direct = cv2.imread(str(coco128.records[7].path))
    view = cached.augment.cache.get(7)
    assert np.array_equal(view, direct) and not view.flags.writeable
    keys = [SampleKey(i, s, m) for i, s, m in ((0, 416, True), (5, 640, True), (9, 320, True), (3, 352, False),
                                               (11, 416, False), (60, 480, True))]
    expected = [plain[key] for key in keys]

    def no_file_reads(path):
        raise AssertionError(f"{path} read from disk although it is cached")

    with monkeypatch.context() as patch:
        patch.setattr("yolox.data.augment.read_image", no_file_reads)
        for key, b in zip(keys, expected):
            a = cached[key]
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]

    def first_batch(cache_mb: int) -> tuple[torch.Tensor, ...]:
        loader = build_train_loader(coco128, AugmentParams(), "yolox-nano", 416, batch_size=4, workers=2,
                                    seed=5, cache_mb=cache_mb)
        it = iter(loader)
        out = next(it)
        del it, loader
        return out

    assert all(torch.equal(x, y) for x, y in zip(first_batch(0), first_batch(1024)))


def test_image_cache_budget_and_unreadable_images(coco128: DetectionDataset, tmp_path: Path) -> None:
    """Over budget: no cache (nothing decoded ahead). An image that cannot be decoded is not cached and
    is reported, naming the file, when a sample needs it; the others come from the cache."""
    from yolox.data.cache import DecodedImageCache
    from yolox.data.records import PackedRecords
    from yolox.errors import DataError

    records = PackedRecords(coco128.records[:4])
    need = int((records.sizes.astype(np.int64).prod(1) * 3).sum())
    assert not DecodedImageCache(records, read_image, budget_mb=need // (1 << 20) - 1).enabled
    assert DecodedImageCache(records, read_image, budget_mb=need // (1 << 20) + 1).enabled
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(coco128.records[1].path.read_bytes()[:200])     # a truncated JPEG header
    recs = [coco128.records[0], ImageRecord(2, broken, coco128.records[1].width, coco128.records[1].height,
                                            coco128.records[1].boxes, coco128.records[1].labels)]
    ds = TrainDataset(_subset(coco128, recs), AugmentParams(), 320, "yolox-nano", seed=0)
    cache = ds.augment.cache
    assert cache.enabled and cache.get(0) is not None and cache.get(1) is None
    assert ds[SampleKey(0, 320, False)][2] > 0
    with pytest.raises(DataError, match="broken.jpg"):
        ds[SampleKey(1, 320, False)]


def test_image_cache_is_not_pickled() -> None:
    """Spawned workers get no copy of the buffer (they decode from disk instead)."""
    import pickle

    from yolox.data.cache import DecodedImageCache

    cache = DecodedImageCache.__new__(DecodedImageCache)
    cache.__dict__.update(enabled=True, nbytes=12, seconds=0.0, _sizes=np.array([[2, 2]]),
                          _offsets=np.array([0, 12]), _ok=np.array([True]), _buffer=np.arange(12, dtype=np.uint8))
    copy = pickle.loads(pickle.dumps(cache))
    assert cache.get(0).shape == (2, 2, 3)
    assert not copy.enabled and copy.get(0) is None and copy._buffer.size == 0


def test_targets_are_cxcywh_of_the_boxes(coco128: DetectionDataset) -> None:
    params = AugmentParams(**{**QUIET, "flip_prob": 1.0})
    train = TrainDataset(coco128, params, 416, seed=0)
    _, boxes, labels = TrainAugment(coco128, params, seed=0)(2, 416)
    _, targets, n, _ = train[2]
    assert n == len(boxes)
    t = targets.numpy()
    np.testing.assert_array_equal(t[:n, 0], labels.astype(np.float32))
    np.testing.assert_allclose(t[:n, 1:3], (boxes[:, :2] + boxes[:, 2:]) / 2, atol=1e-4)
    np.testing.assert_allclose(t[:n, 3:5], boxes[:, 2:] - boxes[:, :2], atol=1e-4)
    assert not t[n:].any()


# --- multi-scale, loader, preview --------------------------------------------------------------------

def test_multiscale_sizes() -> None:
    assert multiscale_sizes("yolox-nano", 416, 5) == list(range(320, 641, 32))
    assert multiscale_sizes("yolox-tiny", 416, 5) == list(range(320, 641, 32))
    assert multiscale_sizes("yolox-s", 640, 5) == list(range(480, 801, 32))
    assert multiscale_sizes("yolox-nano", 416, 0) == [416]


def test_batch_sampler_sizes_and_mosaic_switch(coco128: DetectionDataset) -> None:
    train = TrainDataset(coco128, AugmentParams(), 416, "yolox-nano")
    sizes = multiscale_sizes("yolox-nano", 416, 5)
    sampler = MultiScaleBatchSampler(range(len(train)), 2, False, train, sizes, every=10, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 64
    per_batch = [{k.size for k in b} for b in batches]
    assert all(len(s) == 1 for s in per_batch)
    drawn = [s.pop() for s in per_batch]
    assert set(drawn) <= set(sizes) and len(set(drawn)) > 1
    assert all(len(set(drawn[i:i + 10])) == 1 for i in range(0, 64, 10))
    assert all(k.mosaic for b in batches for k in b)
    train.set_mosaic(False)
    assert not any(k.mosaic for b in sampler for k in b)
    sampler.set_epoch(0)
    assert [b[0].size for b in sampler] == drawn


def test_loader_with_two_workers(coco128: DetectionDataset) -> None:
    def first_batches(n: int) -> list[tuple[torch.Tensor, ...]]:
        loader = build_train_loader(coco128, AugmentParams(), "yolox-nano", 416, batch_size=4, workers=2, seed=5)
        it = iter(loader)
        out = [next(it) for _ in range(n)]
        del it, loader
        return out

    batches = first_batches(3)
    for images, targets, counts, ids in batches:
        s = images.shape[-1]
        assert images.shape == (4, 3, s, s) and images.dtype == torch.float32 and s in range(320, 641, 32)
        assert targets.shape == (4, 120, 5) and targets.dtype == torch.float32
        assert counts.shape == (4,) and counts.dtype == torch.int64 and ids.shape == (4,)
        for t, n in zip(targets, counts):
            assert not t[n:].any() and (t[:n, 3:] >= 2.0 - 1e-4).all()
    again = first_batches(1)[0]
    assert all(torch.equal(x, y) for x, y in zip(batches[0], again))


def test_augment_preview_writes_png(coco128: DetectionDataset, tmp_path: Path) -> None:
    out = augment_preview(coco128, AugmentParams(), "yolox-s", 320, n=6, seed=0, out_path=tmp_path / "p.png")
    assert out.is_file() and out.stat().st_size > 10_000
    grid = cv2.imread(str(out))
    assert grid.shape[0] >= 2 * 320 and grid.shape[1] >= 3 * 320


def test_distributed_ranks_share_the_epoch(coco128: DetectionDataset) -> None:
    seen = []
    for rank in (0, 1):
        loader = build_train_loader(coco128, AugmentParams(), "yolox-s", 640, batch_size=8, workers=0, seed=1,
                                    rank=rank, world_size=2, distributed=True)
        assert len(loader) == 8
        seen.append({k.index for batch in loader.batch_sampler for k in batch})
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 128


def test_full_batches_as_the_authors_sampler_draws_them(coco128: DetectionDataset) -> None:
    """train.full_batches: 10 images, batch 4 -> 3 full batches an epoch (never a batch of 2 at the full lr),
    the stream of seeded passes going on across epochs: every image drawn once per pass, and the same
    batches when an epoch is drawn again (resume)."""
    ten = _subset(coco128, coco128.records[:10])

    def epoch_indices(loader, epoch: int) -> list[list[int]]:
        loader.batch_sampler.set_epoch(epoch)
        return [[k.index for k in batch] for batch in loader.batch_sampler]

    loader = build_train_loader(ten, AugmentParams(), "yolox-nano", 416, batch_size=4, workers=0, seed=3,
                                multiscale=False, full_batches=True)
    assert len(loader) == 3
    epochs = [epoch_indices(loader, e) for e in range(5)]
    assert all(len(b) == 4 for e in epochs for b in e)
    stream = [i for e in epochs for b in e for i in b]                 # 60 draws = 6 passes over the 10 images
    assert all(sorted(stream[k:k + 10]) == list(range(10)) for k in range(0, 60, 10))
    assert epoch_indices(loader, 2) == epochs[2]
    images, targets, counts, _ = next(iter(loader))
    assert images.shape[0] == targets.shape[0] == counts.shape[0] == 4
    ragged = build_train_loader(ten, AugmentParams(), "yolox-nano", 416, batch_size=4, workers=0, seed=3,
                                multiscale=False, full_batches=False)
    assert [len(b) for b in ragged.batch_sampler] == [4, 4, 2]
    # a multiple of the batch: one pass per epoch, the order the ragged sampler gives
    eight = _subset(coco128, coco128.records[:8])
    full8 = build_train_loader(eight, AugmentParams(), "yolox-nano", 416, batch_size=4, workers=0, seed=3,
                               multiscale=False, full_batches=True)
    old8 = build_train_loader(eight, AugmentParams(), "yolox-nano", 416, batch_size=4, workers=0, seed=3,
                              multiscale=False, full_batches=False)
    assert epoch_indices(full8, 1) == epoch_indices(old8, 1)
    # two ranks: 3 full batches of 2 each per epoch (ceil((10 // 2) / 2)), the ranks' shares disjoint in a pass
    shares = []
    for rank in (0, 1):
        dist = build_train_loader(ten, AugmentParams(), "yolox-nano", 416, batch_size=2, workers=0, seed=3,
                                  rank=rank, world_size=2, distributed=True, multiscale=False, full_batches=True)
        assert len(dist) == 3
        shares.append([i for b in epoch_indices(dist, 0) for i in b])
    assert all(len(s) == 6 for s in shares) and not set(shares[0][:5]) & set(shares[1][:5])
