"""The tracking store as the project sets it up (yolox/tracking/store.py, run.py), through MLflow's API on
SQLite: experiments recorded as model training (what the MLflow UI opens on), run names a person can scan, and
the registry that follows the tracking URI within a process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from yolox.tracking.store import EXPERIMENT_KIND_TAG, TRAINING_KIND


def test_experiments_are_training_experiments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new experiment is created with the training kind; an existing one without a kind gets it; one whose kind
    was chosen (here GenAI, as MLflow's demo sets it) keeps it."""
    import mlflow

    from yolox.tracking.store import configure, ensure_experiment

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    configure()
    client = mlflow.MlflowClient()
    created = ensure_experiment("new")
    assert client.get_experiment(created).tags[EXPERIMENT_KIND_TAG] == "custom_model_development" == TRAINING_KIND
    old = client.create_experiment("old", artifact_location=(tmp_path / "a").as_uri())
    genai = client.create_experiment("genai", artifact_location=(tmp_path / "a").as_uri(),
                                     tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    assert ensure_experiment("old") == old and ensure_experiment("genai") == genai and ensure_experiment("new") == created
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert client.get_experiment(genai).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_run_names_are_short_and_say_model_data_and_time() -> None:
    from yolox.tracking.run import default_run_name

    at = 1796624400.0                                    # 2026-12-07 06:20:00 UTC
    version = "d1a2b3c4e5f60718293a4b5c6d7e8f90.dir"
    assert default_run_name("yolox-nano", version, at) == "nano d1a2b3c4 1207-0620"
    assert default_run_name("yolox-s", version, at + 59) == "s d1a2b3c4 1207-0620"        # same minute
    assert default_run_name("yolox-darknet53", version, at + 3600 * 24) == "darknet53 d1a2b3c4 1208-0620"
    assert max(len(default_run_name(f"yolox-{m}", version, at)) for m in ("nano", "tiny", "s", "m", "l", "x")) == 23


def test_registry_follows_the_tracking_uri_within_a_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow copies the registry URI it is given into MLFLOW_REGISTRY_URI: a process that moves to another tracking
    store must not keep registering into the first one's registry (found by this file's scenario in the full suite)."""
    from yolox.tracking.store import configure, registry_uri

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first)
    configure()
    assert os.environ.get("MLFLOW_REGISTRY_URI") == first        # what MLflow itself does
    monkeypatch.setenv("MLFLOW_TRACKING_URI", second)
    assert registry_uri() == second and configure() == second
    explicit = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", explicit)           # set by the user: kept
    configure()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first)
    assert registry_uri() == explicit
