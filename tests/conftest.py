"""Shared fixtures: the asset mirror (real coco128 data) and quiet, offline tool settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No telemetry or analytics calls from the tools under test (the machine may be offline).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

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
