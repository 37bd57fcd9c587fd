"""The prepare stage on the real coco128 data and on small broken copies of it."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO

from yolox.config import DataParams
from yolox.data import prepare as prepare_module
from yolox.data.prepare import PrepareResult, prepare_dataset, seeded_split, split_of
from yolox.data.readers import read_coco, read_yolo
from yolox.data.records import ImageRecord, load_prepared
from yolox.errors import AssetError, ConfigError, DataError
from yolox.models.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES

COCO128_IMAGES = 128
COCO128_LABEL_LINES = 941  # all lines of labels/train2017/*.txt
COCO128_ORPHAN_LABELS = {"000000000656.txt": 3, "000000000659.txt": 9}  # label files without an image
COCO128_BOXES = COCO128_LABEL_LINES - sum(COCO128_ORPHAN_LABELS.values())  # 929, as its README says
COCO128_SEED0_VAL = 17  # val images of coco128 at val_fraction 0.2, split_seed 0 (a hash threshold)
COCO128_BACKGROUND = {"000000000250.jpg", "000000000508.jpg"}  # images without a label file


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def prepared(coco128_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PrepareResult:
    """coco128 prepared once with the default params (seeded 80/20 split)."""
    return prepare_dataset(DataParams(source="coco128"), tmp_path_factory.mktemp("coco128") / "prepared")


# ------------------------------------------------------------------------------------ coco128


def test_coco128_counts(prepared: PrepareResult) -> None:
    assert prepared.num_train_images + prepared.num_val_images == COCO128_IMAGES
    assert prepared.num_val_images == COCO128_SEED0_VAL  # the images whose seed-0 hash is below 0.2
    assert prepared.num_train_boxes + prepared.num_val_boxes == COCO128_BOXES == 929
    assert prepared.num_skipped_images == 0
    assert prepared.num_skipped_boxes == 12
    assert prepared.names == list(COCO_CLASSES)

    report = _read_json(prepared.report_path)
    assert report["counts"]["train"]["images"] == prepared.num_train_images
    assert report["counts"]["val"]["boxes"] == prepared.num_val_boxes
    assert report["counts"]["skipped"] == {"images": 0, "boxes": 12, "label_files": 2}
    orphans = {Path(i["file"]).name: i["boxes"] for i in report["skipped"]}
    assert orphans == COCO128_ORPHAN_LABELS
    assert {i["reason"] for i in report["skipped"]} == {"no image for this label file"}
    assert report["notes"]["missing label file (background image)"] == len(COCO128_BACKGROUND)
    per_class = {c["name"]: c["train_boxes"] + c["val_boxes"] for c in report["classes"]}
    assert sum(per_class.values()) == COCO128_BOXES
    assert per_class["person"] == 254


def test_prepared_layout_loads_with_pycocotools(prepared: PrepareResult) -> None:
    out = prepared.out_dir
    assert sorted(p.name for p in out.iterdir()) == ["annotations", "dataset.yaml", "images", "report.json"]
    assert len(list((out / "images").iterdir())) == COCO128_IMAGES
    train = COCO(str(out / "annotations" / "train.json"))
    val = COCO(str(out / "annotations" / "val.json"))
    assert len(train.getImgIds()) == prepared.num_train_images
    assert len(val.getAnnIds()) == prepared.num_val_boxes
    assert train.getCatIds() == list(COCO_CATEGORY_IDS)
    ids = sorted(train.getImgIds() + val.getImgIds())
    assert ids == list(range(1, COCO128_IMAGES + 1))
    by_id = {**train.imgs, **val.imgs}
    names = [by_id[i]["file_name"] for i in ids]
    assert names == sorted(names)  # ids follow the sorted file names
    assert all((out / "images" / n).is_file() for n in names)
    spec = yaml.safe_load((out / "dataset.yaml").read_text())
    assert spec["nc"] == 80 and spec["names"][0] == "person" and spec["val"] == "annotations/val.json"


def test_prepared_boxes_match_the_label_files(prepared: PrepareResult, coco128_dir: Path) -> None:
    records = {r.path.name: r for s in ("train", "val") for r in load_prepared(prepared.out_dir, s).records}
    assert len(records) == COCO128_IMAGES
    for name in COCO128_BACKGROUND:
        assert len(records[name].labels) == 0  # background images are kept
    for name in ("000000000009.jpg", "000000000074.jpg"):
        rec = records[name]
        lines = np.loadtxt(coco128_dir / "labels" / "train2017" / name.replace(".jpg", ".txt"), ndmin=2)
        cx, cy, w, h = (lines[:, 1:] * [rec.width, rec.height, rec.width, rec.height]).T
        expected = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        expected = np.clip(expected, 0, [rec.width, rec.height, rec.width, rec.height])
        np.testing.assert_allclose(rec.boxes, expected, atol=1e-3)
        np.testing.assert_array_equal(rec.labels, lines[:, 0].astype(np.int64))


def test_output_is_deterministic_and_replaced_whole(prepared: PrepareResult, tmp_path: Path) -> None:
    again = prepare_dataset(DataParams(source="coco128"), tmp_path / "prepared")
    for rel in ("annotations/train.json", "annotations/val.json", "dataset.yaml", "report.json"):
        assert (again.out_dir / rel).read_bytes() == (prepared.out_dir / rel).read_bytes(), rel
    assert sorted(os.listdir(again.out_dir / "images")) == sorted(os.listdir(prepared.out_dir / "images"))

    stale = again.out_dir / "images" / "stale.jpg"
    stale.write_bytes(b"left over from an older run")
    third = prepare_dataset(DataParams(source="coco128"), tmp_path / "prepared")
    assert not stale.exists()
    assert (third.out_dir / "report.json").read_bytes() == (prepared.out_dir / "report.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no .tmp-/.old- folders left


def test_same_data_same_version_whatever_the_source_spelling(prepared: PrepareResult, coco128_dir: Path,
                                                             tmp_path: Path) -> None:
    """By name (`yolox pipeline`: coco128 from the mirror) or as a copied folder (`dvc repro`: data/raw), at any
    output path: the same bytes, so the same DVC hash (the run's data_version names a dvc.lock entry)."""
    import shutil

    from yolox.lineage import data_version

    raw = tmp_path / "data" / "raw"
    shutil.copytree(coco128_dir, raw)
    copied = prepare_dataset(DataParams(source=str(raw), prepared_dir="elsewhere"), tmp_path / "other" / "prepared")
    report = _read_json(copied.report_path)
    assert "source" not in report and "prepared_dir" not in report["params"] and str(tmp_path) not in json.dumps(report)
    for rel in ("annotations/train.json", "annotations/val.json", "dataset.yaml", "report.json"):
        assert (copied.out_dir / rel).read_bytes() == (prepared.out_dir / rel).read_bytes(), rel
    assert data_version(copied.out_dir) == data_version(prepared.out_dir)


def test_val_fraction_and_seed(coco128_dir: Path, tmp_path: Path) -> None:
    source = str(coco128_dir)
    half = prepare_dataset(DataParams(source=source, val_fraction=0.5, split_seed=3), tmp_path / "a")
    assert (half.num_train_images, half.num_val_images) == (60, 68)   # a hash threshold: about half
    other = prepare_dataset(DataParams(source=source, val_fraction=0.5, split_seed=4), tmp_path / "b")
    val_a = {i["file_name"] for i in _read_json(half.out_dir / "annotations/val.json")["images"]}
    val_b = {i["file_name"] for i in _read_json(other.out_dir / "annotations/val.json")["images"]}
    assert val_a != val_b
    assert _read_json(half.report_path)["split"] == "seeded"


def test_seeded_split_ignores_listing_order() -> None:
    records = [ImageRecord(i + 1, Path(f"/x/{i:04d}.jpg"), 64, 64) for i in range(50)]
    train, val = seeded_split(records, 0.2, seed=7)
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    _, val2 = seeded_split(shuffled, 0.2, seed=7)
    assert len(val) == 9 and len(train) == 41
    assert {r.path for r in val} == {r.path for r in val2}
    assert {r.path.name for r in val} == {r.path.name for r in records if split_of(r.path.name, 0.2, 7) == "val"}
    # Dropping one train image moves no other image between the splits.
    _, val3 = seeded_split([r for r in records if r is not train[0]], 0.2, seed=7)
    assert {r.path for r in val3} == {r.path for r in val}
    # Each split keeps at least one image.
    assert [len(s) for s in seeded_split(records[:2], 0.01, 0)] == [1, 1]
    assert [len(s) for s in seeded_split(records[:2], 0.99, 0)] == [1, 1]


def test_seeded_split_is_stable_as_the_data_grows() -> None:
    """Growth replayed from 100 to 5,000 images in steps of 100 (the nightly case): no image ever moves
    between train and val, and val stays about val_fraction of the data."""
    names = [f"img_{i:05d}_{(i * 7919) % 10007}.jpg" for i in range(5000)]
    first_split: dict[str, str] = {}
    for n in range(100, 5001, 100):
        records = [ImageRecord(i + 1, Path(f"/data/{name}"), 64, 64) for i, name in enumerate(names[:n])]
        train, val = seeded_split(records, 0.2, seed=0)
        for split, recs in (("train", train), ("val", val)):
            for r in recs:
                assert first_split.setdefault(r.path.name, split) == split, f"{r.path.name} moved at N={n}"
        if n >= 1000:
            assert 0.17 < len(val) / n < 0.23
    assert len(first_split) == 5000


def test_prepared_split_is_stable_as_coco128_grows(coco128_dir: Path, tmp_path: Path) -> None:
    """The real prepare on coco128's first 64 images, then all 128: every image of the first run keeps its split."""
    images = sorted((coco128_dir / "images" / "train2017").iterdir())
    splits = {}
    for n in (64, 128):
        root = tmp_path / f"grow{n}"
        (root / "images" / "train2017").mkdir(parents=True)
        (root / "labels" / "train2017").mkdir(parents=True)
        for image in images[:n]:
            os.link(image, root / "images" / "train2017" / image.name)
            label = coco128_dir / "labels" / "train2017" / f"{image.stem}.txt"
            if label.is_file():
                os.link(label, root / "labels" / "train2017" / label.name)
        shutil.copy(coco128_dir / "dataset.yaml", root / "dataset.yaml")
        out = prepare_dataset(DataParams(source=str(root)), tmp_path / f"prep{n}").out_dir
        splits[n] = {i["file_name"]: split for split in ("train", "val")
                     for i in _read_json(out / "annotations" / f"{split}.json")["images"]}
    assert len(splits[64]) == 64 and len(splits[128]) == 128
    assert all(splits[128][name] == split for name, split in splits[64].items())
    assert 0 < sum(s == "val" for s in splits[64].values()) < sum(s == "val" for s in splits[128].values())


# ------------------------------------------------------------------------------ broken YOLO data


def _copy_yolo(coco128_dir: Path, dest: Path, names: list[str]) -> Path:
    """A YOLO dataset in ``dest`` with the coco128 images ``names`` (and their label files)."""
    (dest / "images" / "train").mkdir(parents=True)
    (dest / "labels" / "train").mkdir(parents=True)
    for name in names:
        shutil.copy(coco128_dir / "images" / "train2017" / name, dest / "images" / "train" / name)
        label = coco128_dir / "labels" / "train2017" / name.replace(".jpg", ".txt")
        if label.exists():
            shutil.copy(label, dest / "labels" / "train" / label.name)
    spec = yaml.safe_load((coco128_dir / "dataset.yaml").read_text())
    spec["train"] = "images/train"
    (dest / "dataset.yaml").write_text(yaml.safe_dump(spec))
    return dest


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_broken_yolo_dataset_is_reported_and_the_rest_prepared(coco128_dir: Path, tmp_path: Path) -> None:
    names = ["000000000009.jpg", "000000000025.jpg", "000000000030.jpg", "000000000034.jpg",
             "000000000036.jpg", "000000000042.jpg", "000000000049.jpg", "000000000061.jpg"]
    root = _copy_yolo(coco128_dir, tmp_path / "broken", names)
    images, labels = root / "images" / "train", root / "labels" / "train"
    total_lines = sum(_lines(p) for p in labels.glob("*.txt"))

    truncated = images / "000000000009.jpg"  # cut in half: OpenCV would decode it with a grey bottom
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (images / "000000000025.jpg").write_bytes(b"this is not a JPEG file\n")
    lost_with_images = _lines(labels / "000000000009.txt") + _lines(labels / "000000000025.txt")

    bad = labels / "000000000030.txt"
    first_bad = _lines(bad) + 1
    with bad.open("a") as f:
        f.write("0 nan 0.5 0.1 0.1\n")  # non-finite
        f.write("0 0.5 0.5 -0.1 0.2\n")  # negative width
        f.write("0 1.5 1.5 0.2 0.2\n")  # entirely outside
        f.write("80 0.5 0.5 0.1 0.1\n")  # class 80 of 0..79
        f.write("0 0.5 0.5 0.1\n")  # 4 fields
        f.write("0 0.5 0.5 0.0001 0.1\n")  # 0.06 px wide, below min_box_size
        f.write("0 0.95 0.5 0.2 0.2\n")  # half outside: clipped and kept
    (labels / "000000000034.txt").unlink()  # image without labels: a background image
    (labels / "999999999999.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # label file without image
    cv2.imwrite(str(images / "000000000099.png"), np.zeros((20, 40, 3), np.uint8))  # too small
    (labels / "000000000099.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    lost_with_images += 1
    total_lines += 1
    removed_lines = _lines(coco128_dir / "labels" / "train2017" / "000000000034.txt")

    result = prepare_dataset(DataParams(source=str(root / "dataset.yaml")), tmp_path / "out")
    report = _read_json(result.report_path)
    skipped = {(i["file"], i.get("line"), i["reason"]) for i in report["skipped"]}
    bad_file = "labels/train/000000000030.txt"
    assert skipped == {
        ("images/train/000000000009.jpg", None, "truncated JPEG"),
        ("images/train/000000000025.jpg", None, "not a decodable image"),
        ("images/train/000000000099.png", None, "image too small"),
        (bad_file, first_bad, "non-finite coordinates"),
        (bad_file, first_bad + 1, "non-positive size"),
        (bad_file, first_bad + 2, "outside the image"),
        (bad_file, first_bad + 3, "unknown class"),
        (bad_file, first_bad + 4, "bad label line"),
        (bad_file, first_bad + 5, "box too small"),
        ("labels/train/999999999999.txt", None, "no image for this label file"),
    }
    assert result.num_skipped_images == 3
    assert result.num_skipped_boxes == lost_with_images + 6 + 1
    assert result.num_train_images + result.num_val_images == len(names) - 2
    kept = total_lines - removed_lines - lost_with_images + 1  # + the clipped box
    assert result.num_train_boxes + result.num_val_boxes == kept
    assert report["notes"]["missing label file (background image)"] == 1
    assert report["notes"]["boxes clipped to the image (by more than 0.5 px)"] >= 1
    assert report["skipped_by_reason"]["truncated JPEG"]["boxes"] == _lines(
        coco128_dir / "labels" / "train2017" / "000000000009.txt")
    records = {r.path.name: r for s in ("train", "val") for r in load_prepared(result.out_dir, s).records}
    assert len(records["000000000034.jpg"].labels) == 0
    clipped = records["000000000030.jpg"]
    assert clipped.boxes[:, 2].max() == clipped.width  # the half-outside box ends at the border


def test_yolo_val_split_and_own_class_names(coco128_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "pets"
    for split, names in (("train", ["000000000009.jpg", "000000000025.jpg"]), ("val", ["000000000030.jpg"])):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for name in names:
            shutil.copy(coco128_dir / "images" / "train2017" / name, root / "images" / split / name)
            (root / "labels" / split / name.replace(".jpg", ".txt")).write_text(
                "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n")
    (root / "dataset.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog]\n")

    result = prepare_dataset(DataParams(source=str(root)), tmp_path / "out")
    assert (result.num_train_images, result.num_val_images) == (2, 1)
    assert (result.num_train_boxes, result.num_val_boxes) == (4, 2)
    val = _read_json(result.out_dir / "annotations" / "val.json")
    assert val["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [i["file_name"] for i in val["images"]] == ["000000000030.jpg"]
    assert _read_json(result.report_path)["split"] == "source val split"
    with pytest.raises(ConfigError, match="own val split"):
        prepare_dataset(DataParams(source=str(root), val_source=str(root)), tmp_path / "out2")


def test_yolo_val_same_as_train_is_ignored(coco128_dir: Path, tmp_path: Path) -> None:
    yaml_path = tmp_path / "coco128.yaml"
    yaml_path.write_text(f"path: {coco128_dir}\ntrain: images/train2017\nval: images/train2017\n"
                         f"names: {list(COCO_CLASSES)}\n")
    raw, _ = read_yolo(yaml_path)
    assert list(raw.splits) == ["train"] and len(raw.splits["train"]) == COCO128_IMAGES
    assert raw.category_ids == list(COCO_CATEGORY_IDS)
    assert raw.notes["val split is the train folder (ignored)"] == 1


# ---------------------------------------------------------------------------------- COCO sources


def test_coco_round_trip_gives_the_same_dataset(prepared: PrepareResult, tmp_path: Path) -> None:
    ann = prepared.out_dir / "annotations"
    params = DataParams(source=str(ann / "train.json"), val_source=str(ann / "val.json"),
                        images=str(prepared.out_dir / "images"))
    again = prepare_dataset(params, tmp_path / "again")
    for split in ("train.json", "val.json"):
        assert (again.out_dir / "annotations" / split).read_bytes() == (ann / split).read_bytes()
    assert (again.num_train_boxes, again.num_val_boxes) == (prepared.num_train_boxes, prepared.num_val_boxes)
    assert again.num_skipped_boxes == again.num_skipped_images == 0

    # One json alone: a new seeded split of the same images and boxes.
    params = DataParams(source=str(ann / "train.json"), images=str(prepared.out_dir / "images"))
    alone = prepare_dataset(params, tmp_path / "alone")
    assert alone.num_train_images + alone.num_val_images == prepared.num_train_images
    boxes = {r.path.name: r.boxes for s in ("train", "val") for r in load_prepared(alone.out_dir, s).records}
    for rec in load_prepared(prepared.out_dir, "train").records:
        np.testing.assert_array_equal(boxes[rec.path.name], rec.boxes)


def test_coco_wrong_width_and_crowd_are_skipped(prepared: PrepareResult, tmp_path: Path) -> None:
    coco = _read_json(prepared.out_dir / "annotations" / "train.json")
    coco["images"] = coco["images"][:6]
    kept_ids = {im["id"] for im in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in kept_ids]
    wrong = coco["images"][0]
    wrong["width"] += 1
    lost = sum(1 for a in coco["annotations"] if a["image_id"] == wrong["id"])
    crowd = dict(coco["annotations"][-1], id=10**6, iscrowd=1)
    coco["annotations"].append(crowd)
    src = tmp_path / "instances_small.json"
    src.write_text(json.dumps(coco))

    result = prepare_dataset(DataParams(source=str(src), images=str(prepared.out_dir / "images")),
                             tmp_path / "out")
    report = _read_json(result.report_path)
    by_reason = {i["reason"]: i for i in report["skipped"]}
    assert set(by_reason) == {"size mismatch", "crowd"}
    assert by_reason["size mismatch"]["file"] == wrong["file_name"]
    assert by_reason["size mismatch"]["boxes"] == lost
    assert f"annotation id {10**6}" in by_reason["crowd"]["detail"]
    assert result.num_skipped_images == 1 and result.num_skipped_boxes == lost + 1
    assert result.num_train_images + result.num_val_images == 5
    assert result.num_train_boxes + result.num_val_boxes == len(coco["annotations"]) - 1 - lost


def test_read_coco_keeps_category_ids_and_raw_boxes(tmp_path: Path) -> None:
    coco = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 50}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 12, "bbox": [-5, 10, 20, 30], "iscrowd": 0},
                        {"id": 2, "image_id": 7, "category_id": 99, "bbox": [0, 0, 1, 1]}],
        "categories": [{"id": 12, "name": "b"}, {"id": 3, "name": "a"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    raw, issues = read_coco(path, None)
    assert raw.names == ["a", "b"] and raw.category_ids == [3, 12]
    (image,) = raw.splits["train"]
    assert image.path == (tmp_path / "a.jpg").resolve() and (image.width, image.height) == (100, 50)
    assert [(b.label, b.xyxy) for b in image.boxes] == [(1, (-5.0, 10.0, 15.0, 40.0))]  # not clipped yet
    assert [i.reason for i in issues] == ["unknown class"]


# -------------------------------------------------------------------------- errors and writing


def test_missing_source_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "dataset.yaml"
    with pytest.raises(AssetError, match=str(missing)):
        prepare_dataset(DataParams(source=str(missing)), tmp_path / "out")


def test_unreadable_sources_raise_data_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=str(empty / "dataset.yaml")):
        prepare_dataset(DataParams(source=str(empty)), tmp_path / "out")

    (empty / "images" / "train").mkdir(parents=True)
    (empty / "dataset.yaml").write_text("path: .\ntrain: images/train\nnames: [a]\n")
    with pytest.raises(DataError, match="no images"):
        prepare_dataset(DataParams(source=str(empty)), tmp_path / "out")

    bad_json = tmp_path / "instances.json"
    bad_json.write_text("{not json")
    with pytest.raises(DataError, match=str(bad_json)):
        prepare_dataset(DataParams(source=str(bad_json)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_copies_when_hard_links_fail(
    coco128_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy_yolo(coco128_dir, tmp_path / "small", ["000000000009.jpg", "000000000025.jpg"])

    def no_link(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(prepare_module.os, "link", no_link)
    result = prepare_dataset(DataParams(source=str(root)), tmp_path / "out")
    copy = result.out_dir / "images" / "000000000009.jpg"
    assert copy.read_bytes() == (root / "images" / "train" / "000000000009.jpg").read_bytes()
    assert copy.stat().st_nlink == 1


def test_failed_run_keeps_the_previous_output(coco128_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy_yolo(coco128_dir, tmp_path / "small", ["000000000009.jpg", "000000000025.jpg"])
    out = tmp_path / "out"
    prepare_dataset(DataParams(source=str(root)), out)
    before = (out / "annotations" / "train.json").read_bytes()

    def crash(src: Path, dst: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "link_or_copy", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(DataParams(source=str(root), split_seed=5), out)
    assert (out / "annotations" / "train.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "small"]
