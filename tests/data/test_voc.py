"""The Pascal VOC reader (yolox.data.voc): the real raccoon data, both layouts, the box convention, and
bad or hostile annotation files (each a reported skip, the rest of the dataset still read)."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolox import assets
from yolox.config import DataParams
from yolox.data import voc
from yolox.data.prepare import load_dataset, prepare_dataset, read_source
from yolox.data.readers import (
    MALFORMED_BBOX,
    MISSING_LABEL_NOTE,
    NO_IMAGE_FOR_LABEL,
    NOT_AN_IMAGE,
    OUTSIDE_ROOT,
    UNKNOWN_CATEGORY,
    RawDataset,
)
from yolox.data.voc import is_voc_source, read_voc
from yolox.errors import DataError

RACCOON_IMAGES = 160
RACCOON_BOXES = 173  # <object>s of annotations/*.xml: none difficult, all inside their image
W, H = 64, 48  # size of the synthetic images (pixels)


def _object(name: str = "raccoon", box: tuple = (1, 1, 10, 20), difficult: int = 0) -> str:
    corners = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult>"
            f"<bndbox>{corners}</bndbox></object>")


def _xml(filename: str = "", objects: tuple[str, ...] = (), size: tuple[int, int] = (W, H)) -> str:
    return (f"<annotation><folder>images</folder><filename>{filename}</filename>"
            f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
            + "".join(objects) + "</annotation>")


def _image(path: Path, width: int = W, height: int = H) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(path.name)).integers(0, 255, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def _pair(root: Path, stem: str, xml: str | None = None, images: str = "images",
          annotations: str = "annotations") -> None:
    """``<root>/images/<stem>.jpg`` and its annotation (default: one raccoon box)."""
    _image(root / images / f"{stem}.jpg")
    (root / annotations).mkdir(parents=True, exist_ok=True)
    (root / annotations / f"{stem}.xml").write_text(xml or _xml(f"{stem}.jpg", (_object(),)))


def _simple(root: Path, stems: tuple[str, ...] = ("good1", "good2")) -> Path:
    for stem in stems:
        _pair(root, stem)
    return root


def _images_by_name(raw: RawDataset, split: str = "train") -> dict[str, list]:
    return {im.path.name: [b.xyxy for b in im.boxes] for im in raw.splits[split]}


# ---------------------------------------------------------------------------------------- raccoon


def test_real_raccoon_reads_every_image_and_box(raccoon_dir: Path) -> None:
    raw, issues = read_voc(raccoon_dir)
    assert issues == []
    assert raw.names == ["raccoon"] and raw.category_ids == [1]
    assert list(raw.splits) == ["train"]
    assert len(raw.splits["train"]) == RACCOON_IMAGES
    assert sum(len(im.boxes) for im in raw.splits["train"]) == RACCOON_BOXES
    first = next(im for im in raw.splits["train"] if im.path.name == "raccoon-1.jpg")
    # annotations/raccoon-1.xml: <size> 650x417, <bndbox> 81 88 522 408 (1-based)
    assert (first.width, first.height) == (650, 417)
    assert [b.xyxy for b in first.boxes] == [(80.0, 87.0, 521.0, 407.0)]
    assert first.file == "images/raccoon-1.jpg" and first.box_file == "annotations/raccoon-1.xml"
    assert not raw.notes


def test_prepare_raccoon_by_name(raccoon_dir: Path, tmp_path: Path) -> None:
    result = prepare_dataset(DataParams(source="raccoon"), tmp_path / "prepared")
    report = json.loads(result.report_path.read_text())
    assert result.names == ["raccoon"]
    assert result.num_train_images + result.num_val_images == RACCOON_IMAGES
    assert result.num_train_boxes + result.num_val_boxes == RACCOON_BOXES  # no box skipped
    assert result.num_skipped_images == result.num_skipped_boxes == 0
    assert report["skipped"] == [] and report["skipped_by_reason"] == {}
    assert report["split"] == "seeded"  # one folder: the seeded split makes val
    assert report["counts"]["train"]["images"] == result.num_train_images > 0 < result.num_val_images
    assert report["classes"] == [{"index": 0, "id": 1, "name": "raccoon",
                                  "train_boxes": result.num_train_boxes, "val_boxes": result.num_val_boxes}]


def test_load_dataset_reads_a_voc_folder(raccoon_dir: Path) -> None:
    dataset = load_dataset("raccoon", split="train")
    assert dataset.names == ["raccoon"]
    assert len(dataset.records) == RACCOON_IMAGES
    assert sum(len(r.labels) for r in dataset.records) == RACCOON_BOXES
    with pytest.raises(DataError, match="no 'val' split"):
        load_dataset(str(raccoon_dir), split="val")


# ------------------------------------------------------------------------------ box convention


def test_bndbox_is_one_based_and_becomes_zero_based(tmp_path: Path) -> None:
    objects = (_object(box=(1, 1, 10, 20)), _object(box=("1.0", "2.0", "10.5", " 20 ")))
    _pair(tmp_path, "a", _xml("a.jpg", objects))
    raw, issues = read_voc(tmp_path)
    assert issues == []
    assert _images_by_name(raw) == {"a.jpg": [(0.0, 0.0, 9.0, 19.0), (0.0, 1.0, 9.5, 19.0)]}


# ------------------------------------------------------------------------------------ layouts


def _devkit(parent: Path, lists: dict[str, str]) -> Path:
    """``parent/VOCdevkit/VOC2007`` with ids 000001..000008 and the given ``ImageSets/Main`` lists."""
    year = parent / "VOCdevkit" / "VOC2007"
    for k in range(1, 9):
        _pair(year, f"{k:06d}", images="JPEGImages", annotations="Annotations")
    (year / "ImageSets" / "Main").mkdir(parents=True)
    for name, text in lists.items():
        (year / "ImageSets" / "Main" / f"{name}.txt").write_text(text)
    return year


def _ids(*numbers: int) -> str:
    return "".join(f"{k:06d}\n" for k in numbers)


def test_devkit_train_and_val_lists_give_the_splits(tmp_path: Path) -> None:
    year = _devkit(tmp_path, {"train": _ids(1, 2, 3), "val": _ids(4, 5), "trainval": _ids(1, 2, 3, 4, 5),
                              "test": _ids(6, 7)})
    for source in (year, year.parent):  # the year folder, or the devkit folder holding it
        assert is_voc_source(source)
        raw, issues = read_voc(source)
        assert issues == []
        assert sorted(_images_by_name(raw, "train")) == ["000001.jpg", "000002.jpg", "000003.jpg"]
        assert sorted(_images_by_name(raw, "val")) == ["000004.jpg", "000005.jpg"]
        assert raw.notes[voc.TEST_SET_NOTE] == 2  # 6 and 7: not used
        assert raw.notes[voc.UNLISTED_NOTE] == 1  # 8: in no list

    result = prepare_dataset(DataParams(source=str(year.parent)), tmp_path / "prepared")
    report = json.loads(result.report_path.read_text())
    assert report["split"] == "source val split"
    assert (result.num_train_images, result.num_val_images) == (3, 2)
    assert report["notes"][voc.TEST_SET_NOTE] == 2


def test_devkit_trainval_only_is_one_train_split(tmp_path: Path) -> None:
    year = _devkit(tmp_path, {"trainval": _ids(1, 2, 3, 4, 5), "test": _ids(6, 7, 8)})
    raw, issues = read_voc(year)
    assert issues == []
    assert list(raw.splits) == ["train"]
    assert len(raw.splits["train"]) == 5
    assert raw.notes[voc.TEST_SET_NOTE] == 3

    result = prepare_dataset(DataParams(source=str(year)), tmp_path / "prepared")
    assert json.loads(result.report_path.read_text())["split"] == "seeded"
    assert result.num_train_images + result.num_val_images == 5


def test_devkit_without_lists_reads_every_annotation_as_train(tmp_path: Path) -> None:
    year = _devkit(tmp_path, {})
    raw, _ = read_voc(year)
    assert list(raw.splits) == ["train"] and len(raw.splits["train"]) == 8
    assert raw.notes[voc.NO_SPLIT_LIST_NOTE] == 1


def test_devkit_unknown_and_repeated_ids_are_reported(tmp_path: Path) -> None:
    year = _devkit(tmp_path, {"train": _ids(1, 2) + "../../etc/passwd\n\n", "val": _ids(2, 3)})
    raw, issues = read_voc(year)
    assert sorted(_images_by_name(raw, "train")) == ["000001.jpg", "000002.jpg"]
    assert sorted(_images_by_name(raw, "val")) == ["000003.jpg"]
    by_reason = {i.reason: i for i in issues}
    assert set(by_reason) == {voc.UNKNOWN_ID, voc.IN_TRAIN_AND_VAL}
    assert by_reason[voc.UNKNOWN_ID].file == "ImageSets/Main/train.txt"
    assert by_reason[voc.UNKNOWN_ID].line == 3
    assert by_reason[voc.IN_TRAIN_AND_VAL].file == "ImageSets/Main/val.txt"
    assert "000002" in by_reason[voc.IN_TRAIN_AND_VAL].detail


def test_layout_errors_name_the_folder(tmp_path: Path) -> None:
    for year in ("VOC2007", "VOC2012"):
        _pair(tmp_path / "two" / year, "a", images="JPEGImages", annotations="Annotations")
    with pytest.raises(DataError, match="VOC2007, VOC2012"):
        read_voc(tmp_path / "two")
    (tmp_path / "no_images" / "annotations").mkdir(parents=True)
    (tmp_path / "no_images" / "annotations" / "a.xml").write_text(_xml("a.jpg", (_object(),)))
    with pytest.raises(DataError, match="no JPEGImages/ or images/"):
        read_voc(tmp_path / "no_images")
    with pytest.raises(DataError, match="no annotations/ or Annotations/"):
        read_voc(tmp_path)


def test_read_source_dispatches_voc_folders_only(tmp_path: Path) -> None:
    source = _simple(tmp_path / "voc")
    raw, issues = read_source(source)
    assert raw.names == ["raccoon"] and len(raw.splits["train"]) == 2 and issues == []
    (tmp_path / "yolo" / "annotations").mkdir(parents=True)  # a dataset.yaml makes it a YOLO/prepared folder
    (tmp_path / "yolo" / "annotations" / "a.xml").write_text(_xml())
    (tmp_path / "yolo" / "dataset.yaml").write_text("train: images\n")
    assert not is_voc_source(tmp_path / "yolo")
    assert not is_voc_source(tmp_path / "voc" / "images" / "good1.jpg")
    dataset = load_dataset(str(source), split="train")
    assert [r.path.name for r in dataset.records] == ["good1.jpg", "good2.jpg"]
    np.testing.assert_allclose(dataset.records[0].boxes, [[0, 0, 9, 19]])


# ---------------------------------------------------------------------------------- bad files


def _laughs() -> str:
    """10**9 "lol"s once expanded (3 GB) from a 1 kB file."""
    entities = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{k} "{f"&a{k - 1};" * 10}">' for k in range(1, 10))
    return (f'<?xml version="1.0"?><!DOCTYPE annotation [{entities}]>'
            + _xml("bad.jpg", (_object(name="&a9;"),)))


def _external() -> str:
    return ('<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            + _xml("bad.jpg", (_object(name="&x;"),)))


def _write(root: Path, name: str, text: str | bytes) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _bad_pair(xml: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        _pair(root, "bad", xml)
    return make


def _link_out(name: str, target: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        _pair(root, "bad")
        outside = root.parent / f"outside-{target}"
        shutil.copy(root / name, outside)
        (root / name).unlink()
        (root / name).symlink_to(outside)
    return make


def _duplicate_stem(root: Path) -> None:
    _pair(root, "bad")
    _image(root / "images" / "bad.png")


def _orphan(root: Path) -> None:
    _write(root, "annotations/bad.xml", _xml("bad.jpg", (_object(), _object())))


def _huge(root: Path) -> None:
    _pair(root, "bad", _xml("bad.jpg", (_object(),)) + "<!--" + "x" * voc.MAX_XML_BYTES + "-->")


def _not_an_image(root: Path) -> None:
    _pair(root, "bad")
    (root / "images" / "bad.jpg").write_bytes(b"not a jpeg at all")


ok_box = _object(box=(2, 2, 12, 12))
# case: (make the bad file(s) in the dataset root, kind, reason, Issue.file, boxes lost, bad.jpg still read)
BAD_FILES = {
    "malformed xml": (_bad_pair("<annotation><object><name>raccoon</name>"), "image", voc.MALFORMED_XML,
                      "images/bad.jpg", 1),
    "not an annotation": (_bad_pair("<html><body/></html>"), "image", voc.MALFORMED_XML, "images/bad.jpg", 0),
    "unknown encoding": (_bad_pair('<?xml version="1.0" encoding="nope"?><annotation/>'), "image",
                         voc.MALFORMED_XML, "images/bad.jpg", 0),
    "too large": (_huge, "image", voc.XML_TOO_LARGE, "images/bad.jpg", 0),
    "filename of another image": (_bad_pair(_xml("good1.jpg", (_object(),))), "image", voc.FILENAME_MISMATCH,
                                  "images/bad.jpg", 1),
    "annotation without image": (_orphan, "label_file", NO_IMAGE_FOR_LABEL, "annotations/bad.xml", 2),
    "missing coordinate": (_bad_pair(_xml("bad.jpg", (_object().replace("<xmax>10</xmax>", ""), ok_box))),
                           "box", MALFORMED_BBOX, "annotations/bad.xml", 1),
    "non-numeric coordinate": (_bad_pair(_xml("bad.jpg", (_object(box=(1, "one", 10, 20)), ok_box))), "box",
                               MALFORMED_BBOX, "annotations/bad.xml", 1),
    "no bndbox": (_bad_pair(_xml("bad.jpg", ("<object><name>raccoon</name></object>", ok_box))), "box",
                  MALFORMED_BBOX, "annotations/bad.xml", 1),
    "no name": (_bad_pair(_xml("bad.jpg", (_object(name=" "), ok_box))), "box", voc.MALFORMED_OBJECT,
                "annotations/bad.xml", 1),
    "difficult": (_bad_pair(_xml("bad.jpg", (_object(difficult=1), ok_box))), "box", voc.DIFFICULT,
                  "annotations/bad.xml", 1),
    "billion laughs": (_bad_pair(_laughs()), "image", voc.UNSAFE_XML, "images/bad.jpg", 1),
    "external entity": (_bad_pair(_external()), "image", voc.UNSAFE_XML, "images/bad.jpg", 1),
    "annotation links outside": (_link_out("annotations/bad.xml", "bad.xml"), "image", OUTSIDE_ROOT,
                                 "images/bad.jpg", 0),  # not read: its boxes are not counted
    "image links outside": (_link_out("images/bad.jpg", "bad.jpg"), "image", OUTSIDE_ROOT, "images/bad.jpg",
                            1),
    "undecodable image": (_not_an_image, "image", NOT_AN_IMAGE, "images/bad.jpg", 1),
    "two images of one stem": (_duplicate_stem, "image", voc.DUPLICATE_STEM, "images/bad.png", 0),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_is_a_reported_skip_and_the_rest_reads(tmp_path: Path, case: str) -> None:
    make, kind, reason, file, boxes = BAD_FILES[case]
    root = _simple(tmp_path / "data")
    make(root)
    raw, issues = read_voc(root)
    assert [(i.kind, i.reason, i.file, i.boxes) for i in issues] == [(kind, reason, file, boxes)]
    if kind == "image" and case not in ("image links outside", "undecodable image", "two images of one stem"):
        assert "annotations/bad.xml" in issues[0].detail  # the detail names the bad annotation file
    images = _images_by_name(raw)
    assert images["good1.jpg"] == images["good2.jpg"] == [(0.0, 0.0, 9.0, 19.0)]
    if kind == "box":  # the file's other object is kept
        assert images["bad.jpg"] == [(1.0, 1.0, 11.0, 11.0)]
    json.dumps([i.to_json() for i in issues])  # report-ready


def test_unsafe_xml_never_reaches_the_output(tmp_path: Path) -> None:
    root = _simple(tmp_path / "data")
    _pair(root, "laughs", _laughs())
    _pair(root, "passwd", _external())
    result = prepare_dataset(DataParams(source=str(root)), tmp_path / "prepared")
    report = json.loads(result.report_path.read_text())
    assert {(i["file"], i["reason"]) for i in report["skipped"]} == {
        ("images/laughs.jpg", voc.UNSAFE_XML), ("images/passwd.jpg", voc.UNSAFE_XML)}
    assert result.num_train_images + result.num_val_images == 2
    passwd = Path("/etc/passwd")
    secret = passwd.read_text().splitlines()[0] if passwd.is_file() else "root:x:0:0"
    written = b"".join(p.read_bytes() for p in result.out_dir.rglob("*") if p.is_file())
    assert secret.encode() not in written
    assert b"lol" not in written


def test_background_image_size_and_filename_notes(tmp_path: Path) -> None:
    root = _simple(tmp_path)
    _image(root / "images" / "background.jpg")
    _pair(root, "resized", _xml("resized.jpg", (_object(),), size=(640, 480)))
    _pair(root, "renamed", _xml("C:\\labelling\\RENAMED.jpeg", (_object(),)))
    raw, issues = read_voc(root)
    assert issues == []
    assert raw.notes == {MISSING_LABEL_NOTE: 1, voc.SIZE_NOTE: 1, voc.FILENAME_CASE_NOTE: 1}
    images = {im.path.name: im for im in raw.splits["train"]}
    assert images["background.jpg"].boxes == []
    assert (images["resized.jpg"].width, images["resized.jpg"].height) == (W, H)  # the header's size
    assert len(images["renamed.jpg"].boxes) == 1


def test_class_list_from_the_data_or_from_names(tmp_path: Path) -> None:
    root = _simple(tmp_path)
    _pair(root, "dog", _xml("dog.jpg", (_object(name="dog"), _object())))
    raw, issues = read_voc(root)
    assert raw.names == ["dog", "raccoon"] and raw.category_ids == [1, 2] and issues == []
    assert [b.label for b in raw.splits["train"][0].boxes] == [0, 1]

    raw, issues = read_voc(root, names=["raccoon"])
    assert raw.names == ["raccoon"]
    assert [(i.kind, i.file, i.reason, i.boxes) for i in issues] == [
        ("box", "annotations/dog.xml", UNKNOWN_CATEGORY, 1)]
    assert "'dog'" in issues[0].detail
    assert _images_by_name(raw)["dog.jpg"] == [(0.0, 0.0, 9.0, 19.0)]
    with pytest.raises(DataError, match="once"):
        read_voc(root, names=["raccoon", "raccoon"])


def test_no_class_at_all_is_a_data_error(tmp_path: Path) -> None:
    _pair(tmp_path, "a", _xml("a.jpg"))
    with pytest.raises(DataError, match="no <object> with a <name>"):
        read_voc(tmp_path)


# ----------------------------------------------------------------------------------- download


def test_raccoon_download_is_laid_out_as_the_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive's raccoon_dataset-master/{images,annotations,data/train_labels.csv} -> images/ +
    annotations/ of the training list only (no network: the download is replaced by a local zip)."""
    repo = tmp_path / "repo" / assets.RACCOON_ARCHIVE_FOLDER
    for stem in ("raccoon-1", "raccoon-2", "raccoon-3"):
        _pair(repo, stem)
    _write(repo, "data/train_labels.csv", "filename,width,height,class,xmin,ymin,xmax,ymax\n"
           "raccoon-1.jpg,64,48,raccoon,1,1,10,20\nraccoon-3.jpg,64,48,raccoon,1,1,10,20\n")
    _write(repo, "LICENSE", "MIT")
    archive = tmp_path / "master.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(repo.parent.rglob("*")):
            zf.write(path, path.relative_to(repo.parent).as_posix())

    def fake_download(url: str, dest: Path, what: str) -> None:
        assert url == assets.DATASETS["raccoon"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(archive, dest)

    monkeypatch.setattr(assets, "_download", fake_download)
    monkeypatch.setenv("YOLOX_ASSETS_DIR", str(tmp_path / "empty-mirror"))
    monkeypatch.setenv("YOLOX_CACHE_DIR", str(tmp_path / "cache"))
    path = assets.resolve_dataset("raccoon")
    assert path == tmp_path / "cache" / "data" / "raccoon"
    assert sorted(os.listdir(path)) == ["LICENSE", "annotations", "images"]
    assert sorted(os.listdir(path / "images")) == ["raccoon-1.jpg", "raccoon-3.jpg"]
    assert sorted(os.listdir(path / "annotations")) == ["raccoon-1.xml", "raccoon-3.xml"]
    assert not (tmp_path / "cache" / "data" / "raccoon.zip").exists()
    raw, issues = read_voc(path)
    assert len(raw.splits["train"]) == 2 and issues == []
