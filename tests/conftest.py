"""Shared fixtures: the asset mirror (real coco128 data) and quiet, offline tool settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No telemetry or analytics calls from the tools under test (the machine may be offline).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

# Subprocesses of the tests run in other folders: a relative mirror path (README: YOLOX_ASSETS_DIR=../shared)
# is made absolute against the folder pytest was started from.
if os.environ.get("YOLOX_ASSETS_DIR"):
    os.environ["YOLOX_ASSETS_DIR"] = str(Path(os.environ["YOLOX_ASSETS_DIR"]).expanduser().resolve())

# The mirror next to the repository checkout: <repo>/../shared (layout data/<name>/, weights/<file>).
DEFAULT_ASSETS_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def _assets_env() -> None:
    """Point ``YOLOX_ASSETS_DIR`` at ``<repo>/../shared`` when it is not already set."""
    if not os.environ.get("YOLOX_ASSETS_DIR"):
        os.environ["YOLOX_ASSETS_DIR"] = str(DEFAULT_ASSETS_DIR)


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    """The asset mirror folder (``YOLOX_ASSETS_DIR``); skips the test when it does not exist."""
    path = Path(os.environ["YOLOX_ASSETS_DIR"]).expanduser().resolve()
    if not path.is_dir():
        pytest.skip(f"asset mirror {path} not found: set YOLOX_ASSETS_DIR to a folder holding data/coco128/")
    return path


@pytest.fixture(scope="session")
def coco128_dir(assets_dir: Path) -> Path:
    """The real coco128 dataset (YOLO layout) in the mirror; skips the test when it is absent."""
    path = assets_dir / "data" / "coco128"
    if not (path / "dataset.yaml").is_file():
        pytest.skip(f"{path / 'dataset.yaml'} not found: the mirror {assets_dir} lacks data/coco128")
    return path


@pytest.fixture(scope="session")
def raccoon_dir(assets_dir: Path) -> Path:
    """The real raccoon dataset (Pascal VOC) in the mirror; skips the test when it is absent."""
    path = assets_dir / "data" / "raccoon"
    if not (path / "annotations").is_dir():
        pytest.skip(f"{path} not found: the mirror {assets_dir} lacks data/raccoon")
    return path


# --- Shared by test_models / test_losses / test_evaluate / test_export ------------------------------


@pytest.fixture(scope="session")
def nano_pth(assets_dir: Path) -> Path:
    """The authors' released yolox_nano.pth in the mirror; skips the test when it is absent."""
    path = assets_dir / "weights" / "yolox_nano.pth"
    if not path.is_file():
        pytest.skip(f"{path} not found: the mirror {assets_dir} lacks weights/yolox_nano.pth")
    return path


@pytest.fixture(scope="session")
def nano_onnx(assets_dir: Path) -> Path:
    """The authors' released yolox_nano.onnx in the mirror; skips the test when it is absent."""
    path = assets_dir / "weights" / "yolox_nano.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not found: the mirror {assets_dir} lacks weights/yolox_nano.onnx")
    return path


@pytest.fixture(scope="session")
def coco128_dataset(coco128_dir: Path):
    """coco128 built straight from its YOLO labels (not through yolox.data readers), all 128 images.

    Image ids 1..128 by sorted file name; boxes xyxy in original pixels (image size as cv2 decodes it);
    category ids are the original COCO ids (yolox.models.coco_classes.COCO_CATEGORY_IDS).
    """
    import cv2
    import numpy as np
    import yaml

    from yolox.data.records import DetectionDataset, ImageRecord
    from yolox.models.coco_classes import COCO_CATEGORY_IDS

    names_map = yaml.safe_load((coco128_dir / "dataset.yaml").read_text())["names"]
    names = [names_map[i] for i in range(len(names_map))]
    records = []
    for k, path in enumerate(sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))):
        h, w = cv2.imread(str(path)).shape[:2]
        label_file = coco128_dir / "labels" / "train2017" / f"{path.stem}.txt"
        rows = np.loadtxt(label_file, ndmin=2).reshape(-1, 5) if label_file.is_file() else np.zeros((0, 5))
        cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32)
        records.append(ImageRecord(k + 1, path.resolve(), w, h, boxes, rows[:, 0].astype(np.int64)))
    return DetectionDataset(names, list(COCO_CATEGORY_IDS), records)
