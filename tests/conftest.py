"""Shared fixtures: the asset mirror (real coco128 data, the authors' weights), quiet, offline tool settings,
and ``tests/`` on ``sys.path`` so that every test module imports the shared helpers as ``helpers.<module>``
(tests/helpers/; no test module imports another).

The tests mirror the library: one folder a package (ops, models, data, train, evaluate, export, registry,
serve, tracking), whole runs in scenarios/, bad input and interruptions in faults/, the top-level modules'
tests here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

# No telemetry or analytics calls from the tools under test (the machine may be offline).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

# Subprocesses of the tests run in other folders: a relative mirror path (README: YOLOX_ASSETS_DIR=../shared)
# is made absolute against the folder pytest was started from.
if os.environ.get("YOLOX_ASSETS_DIR"):
    os.environ["YOLOX_ASSETS_DIR"] = str(Path(os.environ["YOLOX_ASSETS_DIR"]).expanduser().resolve())

# The mirror next to the repository checkout: <repo>/../shared (layout data/<name>/, weights/<file>).
DEFAULT_ASSETS_DIR = TESTS.parent.parent / "shared"


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


def _in_mirror(assets_dir: Path, relative: str, present: str = "") -> Path:
    """``assets_dir / relative``, skipping the test when it (or ``present`` below it: what says it is whole)
    is absent."""
    path = assets_dir / relative
    if not (path / present if present else path).exists():
        missing = path / present if present else path
        pytest.skip(f"{missing} not found: the mirror {assets_dir} lacks {relative}")
    return path


@pytest.fixture(scope="session")
def coco128_dir(assets_dir: Path) -> Path:
    """The real coco128 dataset (YOLO layout) in the mirror; skips the test when it is absent."""
    return _in_mirror(assets_dir, "data/coco128", "dataset.yaml")


@pytest.fixture(scope="session")
def raccoon_dir(assets_dir: Path) -> Path:
    """The real raccoon dataset (Pascal VOC) in the mirror; skips the test when it is absent."""
    return _in_mirror(assets_dir, "data/raccoon", "annotations")


# --- the authors' weights ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nano_pth(assets_dir: Path) -> Path:
    """The authors' released yolox_nano.pth in the mirror; skips the test when it is absent."""
    return _in_mirror(assets_dir, "weights/yolox_nano.pth")


@pytest.fixture(scope="session")
def nano_onnx(assets_dir: Path) -> Path:
    """The authors' released yolox_nano.onnx in the mirror; skips the test when it is absent."""
    return _in_mirror(assets_dir, "weights/yolox_nano.onnx")


@pytest.fixture(scope="module")
def nano_model(nano_pth: Path):
    """yolox-nano (80 classes) with the authors' weights, in eval mode; one per test module (a module may
    change its mode or wrap it)."""
    from yolox.models.build import build_model
    from yolox.models.checkpoint import load_weights

    model = build_model("yolox-nano")
    load_weights(model, nano_pth)
    return model.eval()


# --- data and threads ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module's tests (a loaded 2-core machine makes two threads spin); restored after.
    A module asks for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prepared_subset(coco128_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 coco128 images prepared with a seeded 75/25 split (:func:`helpers.train.prepare_subset`); one per
    test module."""
    from helpers.train import prepare_subset

    return prepare_subset(coco128_dir, tmp_path_factory.mktemp("subset"))


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


@pytest.fixture(autouse=True)
def _mlflow_state_restored():
    """Every ``MLFLOW_*`` variable and MLflow's process-wide tracking and registry URIs as they were before the test.

    MLflow keeps both URIs per process, and ``mlflow.set_registry_uri`` / ``set_tracking_uri`` (``yolox``'s store
    setup calls them) also copy them into ``MLFLOW_REGISTRY_URI`` / ``MLFLOW_TRACKING_URI`` for subprocesses: left
    behind, they sent a later test's ``MlflowClient()`` and its subprocess pipelines to an earlier test's registry
    (seen when the tests were regrouped by package: runs found, model versions not)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    uris = _mlflow_uris()
    yield
    for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
        if k not in saved:
            del os.environ[k]
    os.environ.update(saved)
    if uris is not None or "mlflow" in sys.modules:
        _mlflow_uris(uris or (None, None))


def _mlflow_uris(restore: tuple[str | None, str | None] | None = None) -> tuple[str | None, str | None] | None:
    """MLflow's process-wide (tracking URI, registry URI), or None when MLflow is not imported (never imported here
    for a test that did not); with ``restore``, sets them back."""
    if "mlflow" not in sys.modules:
        return None
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    if restore is not None:
        tracking_utils._tracking_uri, registry_utils._registry_uri = restore
    return tracking_utils._tracking_uri, registry_utils._registry_uri
