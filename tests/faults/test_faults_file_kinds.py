"""A file's kind is checked before it is opened (issue 22): a FIFO, socket or device where a file is expected would
block the read for ever (a FIFO named ``photo.jpg`` among the images, ``--params`` pointing at a FIFO), and an
oversized text file is not params or labels. Each is a reported skip or a one-line error naming the file and its
kind, never a hang and never a silent drop. Every command here runs under a timeout that a blocked read would
hit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

YOLOX = str(Path(sys.executable).parent / "yolox")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([YOLOX, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def yolo_with_fifos(tmp_path: Path, coco128_dir: Path) -> Path:
    """A YOLO dataset of 3 coco128 images plus a FIFO named like an image and a FIFO as an image's label file."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for stem in ("000000000009", "000000000025", "000000000030"):
        shutil.copy(coco128_dir / "images" / "train2017" / f"{stem}.jpg", root / "images")
        shutil.copy(coco128_dir / "labels" / "train2017" / f"{stem}.txt", root / "labels")
    shutil.copy(coco128_dir / "images" / "train2017" / "000000000034.jpg", root / "images")
    os.mkfifo(root / "images" / "pipe.jpg")
    os.mkfifo(root / "labels" / "000000000034.txt")         # the label file of a real image is a FIFO
    names = "\n".join(f"  {i}: c{i}" for i in range(80))
    (root / "dataset.yaml").write_text(f"path: .\ntrain: images\nnames:\n{names}\n")
    return root


def test_prepare_reports_a_fifo_image_and_a_fifo_label_file(yolo_with_fifos: Path, tmp_path: Path) -> None:
    proc = _run(["prepare", "--data", str(yolo_with_fifos), "--out", "prep", "--set", "data.val_fraction=0.34"],
                tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "prep" / "report.json").read_text())
    skipped = {(s["file"], s["reason"], s["detail"]) for s in report["skipped"] if s["kind"] == "image"}
    assert skipped == {
        ("images/pipe.jpg", "unreadable image file", "a FIFO, not a regular file"),
        ("images/000000000034.jpg", "unreadable label file",
         "its label file labels/000000000034.txt: a FIFO, not a regular file")}
    assert report["counts"]["train"]["images"] + report["counts"]["val"]["images"] == 3


def test_predict_reports_a_fifo_in_a_folder_and_names_one_given_alone(tmp_path: Path, coco128_dir: Path,
                                                                      nano_onnx: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(coco128_dir / "images" / "train2017" / "000000000009.jpg", src)
    os.mkfifo(src / "pipe.jpg")
    proc = _run(["predict", "--weights", str(nano_onnx), "--source", "src", "--out", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [r["image"] for r in result["images"]] == ["src/000000000009.jpg"]
    assert result["skipped"] == [{"image": "src/pipe.jpg", "reason": "not an image file",
                                  "detail": "a FIFO, not a regular file"}]
    alone = _run(["predict", "--weights", str(nano_onnx), "--source", "src/pipe.jpg", "--out", "out2"], tmp_path)
    assert alone.returncode == 1 and "src/pipe.jpg: not an image file (a FIFO, not a regular file)" in \
        " ".join(alone.stderr.split())


def test_params_file_that_is_a_fifo_or_too_large_is_one_line(tmp_path: Path) -> None:
    from yolox.config import MAX_PARAMS_BYTES

    os.mkfifo(tmp_path / "params.yaml")
    proc = _run(["train", "--params", "params.yaml"], tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (
        1, "error: params file params.yaml: a FIFO, not a regular file: pass a params YAML file")
    (tmp_path / "big.yaml").write_text("# " + "x" * MAX_PARAMS_BYTES + "\n")
    proc = _run(["train", "--params", "big.yaml"], tmp_path)
    size = (tmp_path / "big.yaml").stat().st_size
    assert (proc.returncode, proc.stderr.strip()) == (
        1, (f"error: params file big.yaml: {size:,} bytes, over the limit of {MAX_PARAMS_BYTES:,} bytes: pass a "
            "params YAML file"))


def test_coco_json_and_dataset_yaml_that_are_fifos(tmp_path: Path) -> None:
    from yolox.data.prepare import read_source
    from yolox.errors import DataError

    os.mkfifo(tmp_path / "instances.json")
    with pytest.raises(DataError) as err:
        read_source(tmp_path / "instances.json")
    assert str(err.value) == f"{tmp_path / 'instances.json'}: a FIFO, not a regular file"
    (tmp_path / "yolo").mkdir()
    os.mkfifo(tmp_path / "yolo" / "dataset.yaml")
    with pytest.raises(DataError) as err:
        read_source(tmp_path / "yolo")
    assert str(err.value) == (f"{tmp_path / 'yolo' / 'dataset.yaml'}: a FIFO, not a regular file; a YOLO source "
                              "needs a dataset.yaml (or give a COCO .json)")
