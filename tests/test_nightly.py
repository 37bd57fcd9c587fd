"""Nightly retraining, night after night, on real new-class data (raccoon, Pascal VOC): the warm start from a
registered version, the skip of a night with nothing new, the golden set in the gate, and a class list that grows.

The whole-run scenario uses `yolox.pipeline.run_pipeline` (what `yolox pipeline` and the flow run) on a SQLite
store with tiny training (2 steps a night): the mechanics, not the learning (``bench/nightly.py`` measures that
through the deployed flow, 30 epochs a night)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from yolox.config import PipelineParams, parse_params
from yolox.errors import ConfigError, TrackingError
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights


def _voc_copy(src: Path, dst: Path, stems: list[str]) -> Path:
    for sub, suffix in (("images", ".jpg"), ("annotations", ".xml")):
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            shutil.copy(src / sub / f"{stem}{suffix}", dst / sub / f"{stem}{suffix}")
    return dst


# --- a class list that grows: the known classes keep their predictors -----------------------------------


def test_warm_start_keeps_known_class_predictors_by_name(tmp_path: Path) -> None:
    torch.manual_seed(0)
    old = build_model("yolox-nano", 2)
    path = tmp_path / "champion.pth"
    torch.save({"model": old.state_dict(), "meta": {"name": "yolox-nano", "input_size": 416,
                                                    "names": ["raccoon", "cat"]}}, path)
    new = build_model("yolox-nano", 3)
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    report = load_weights(new, path, names=["cat", "dog", "raccoon"])
    assert report.kept_classes == 2 and report.added_classes == ["dog"]
    for level in range(3):
        key = f"head.cls_preds.{level}"
        for part in ("weight", "bias"):
            was, now = old.state_dict()[f"{key}.{part}"], new.state_dict()[f"{key}.{part}"]
            assert torch.equal(now[0], was[1]) and torch.equal(now[2], was[0])      # cat, raccoon: by name
            assert torch.equal(now[1], fresh[f"{key}.{part}"][1])                  # dog: fresh
    # everything else is the checkpoint's
    assert torch.equal(new.state_dict()["head.reg_preds.0.weight"], old.state_dict()["head.reg_preds.0.weight"])
    # the authors' COCO file (no class names) into 1 class: fresh class predictors, as before
    one = build_model("yolox-nano", 1)
    report = load_weights(one, Path(os.environ["YOLOX_ASSETS_DIR"]) / "weights" / "yolox_nano.pth", names=["raccoon"])
    assert len(report.reinitialised) == 6 and report.kept_classes is None


def test_registry_references_in_params() -> None:
    assert parse_params({"model": {"weights": "champion"}}).model.weights == "champion"
    assert parse_params({"model": {"weights": "version 3"}}).model.weights == "version 3"
    with pytest.raises(ConfigError, match="model.weights: .*'version <N>'.*got 'version three'"):
        parse_params({"model": {"weights": "version three"}})
    with pytest.raises(ConfigError, match="model.weights"):
        parse_params({"model": {"weights": "@"}})


# --- the whole run, night after night -----------------------------------------------------------------


def _tiny(live: Path, golden: Path, prepared: Path) -> PipelineParams:
    return parse_params({
        "data": {"source": str(live), "names": ["raccoon"], "val_fraction": 0.25, "prepared_dir": str(prepared)},
        "model": {"name": "yolox-nano", "input_size": 256, "weights": "champion",
                  "fallback_weights": "yolox_nano.pth"},
        "augment": {"multiscale_range": 0},
        "train": {"epochs": 1, "batch_size": 4, "warmup_epochs": 0, "no_aug_epochs": 0, "max_iters_per_epoch": 2,
                  "eval_interval": 5, "workers": 0, "output_dir": str(live.parent / "runs")},
        "export": {"check_images": 1, "onnx_path": str(live.parent / "models" / "m.onnx")},
        "tracking": {"experiment": "nightly-test", "registered_model": "raccoon-test"},
        "gate": {"min_ap": 0.0, "max_regression": 1.0, "golden": str(golden), "golden_max_regression": 1.0},
    }, "test")


@pytest.mark.slow
def test_nights_warm_start_skip_and_golden(raccoon_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from yolox.pipeline import run_pipeline

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)       # the registry is the tracking store
    stems = sorted(p.stem for p in (raccoon_dir / "images").glob("*.jpg"))
    golden = _voc_copy(raccoon_dir, tmp_path / "golden", stems[:6])
    live = _voc_copy(raccoon_dir, tmp_path / "live", stems[6:22])
    params = _tiny(live, golden, tmp_path / "prepared")

    # night 1: no champion yet -> the fallback weights (COCO, fresh class predictors); promoted
    first = run_pipeline(params, progress=False)
    assert not first.skipped and first.promoted, first.decision["reason"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run1 = client.get_run(first.run_id).data
    assert run1.tags["warm_start"].startswith("yolox_nano.pth (fallback: no version holds 'champion' yet)")
    assert "warm_start_version" not in run1.tags
    v1 = client.get_model_version("raccoon-test", first.registered.version)
    assert {k: v1.tags[k] for k in ("data_version", "params_digest", "code_version")} == {
        k: run1.tags[k] for k in ("data_version", "params_digest", "code_version")}
    assert v1.tags["warm_start"] == run1.tags["warm_start"]
    golden_rule = next(r for r in first.decision["rules"] if r["name"] == "golden")
    assert golden_rule["passed"] and "no champion yet" in golden_rule["detail"]
    assert first.decision["golden"]["candidate"]["num_images"] == 6 and first.decision["golden"]["champion"] is None
    assert run1.metrics["gate/golden_candidate_AP50_95"] == pytest.approx(
        first.decision["golden"]["candidate"]["metrics"]["AP50_95"], abs=1e-6)

    # night 2: nothing new -> skipped, said in the MLflow run; nothing registered
    second = run_pipeline(params, progress=False)
    assert second.skipped and not second.promoted
    assert second.reason.startswith(f"data unchanged since version {first.registered.version} (champion)")
    run2 = client.get_run(second.run_id)
    assert run2.info.status == "FINISHED" and run2.data.tags["skipped"] == second.reason
    assert "Skipped" in run2.data.tags["mlflow.note.content"]
    assert len(client.search_model_versions("name = 'raccoon-test'")) == 1

    # night 3: 4 new images -> the split of the old ones does not move; warm start from the champion's checkpoint;
    # the gate evaluates the champion on the golden set too
    old_val = _val_names(tmp_path / "prepared")
    _voc_copy(raccoon_dir, live, stems[22:26])
    third = run_pipeline(params, progress=False)
    assert not third.skipped
    assert old_val <= _val_names(tmp_path / "prepared")
    run3 = client.get_run(third.run_id).data
    assert run3.tags["warm_start_version"] == first.registered.version
    assert run3.tags["warm_start"] == f"raccoon-test v{first.registered.version} (champion)"
    started = third.run_dir / "train" / "warm-start" / f"raccoon-test-v{first.registered.version}.pth"
    assert started.is_file()
    golden = third.decision["golden"]
    assert golden["champion"]["version"] == first.registered.version
    assert golden["candidate"]["val_set"] == golden["champion"]["val_set"] == first.decision["golden"]["candidate"][
        "val_set"]                                                       # the same golden images, night after night
    assert run3.metrics["gate/golden_champion_AP50_95"] == pytest.approx(golden["champion"]["metrics"]["AP50_95"],
                                                                         abs=1e-6)

    # the same data again, forced: trains anyway
    forced = run_pipeline(params, progress=False, force=True)
    assert not forced.skipped and int(forced.registered.version) == int(third.registered.version) + 1


def _val_names(prepared: Path) -> set[str]:
    import json

    return {i["file_name"] for i in json.loads((prepared / "annotations" / "val.json").read_text())["images"]}


def test_warm_start_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from yolox.registry.warm_start import resolve_start_weights

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    no_fallback = parse_params({"model": {"weights": "champion"}, "tracking": {"registered_model": "nothing-yet"}})
    with pytest.raises(ConfigError, match="no version of 'nothing-yet' holds 'champion' yet: set "
                                          "model.fallback_weights"):
        resolve_start_weights(no_fallback, tmp_path)
    missing = parse_params({"model": {"weights": "version 4"}, "tracking": {"registered_model": "nothing-yet"}})
    with pytest.raises(TrackingError, match="no registered model 'nothing-yet'"):
        resolve_start_weights(missing, tmp_path)
    plain = resolve_start_weights(parse_params({"model": {"weights": "yolox_nano.pth"}}), tmp_path)
    assert plain.weights == "yolox_nano.pth" and plain.version is None


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
