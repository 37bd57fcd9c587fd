"""Nightly retraining, night after night, on real new-class data (raccoon, Pascal VOC): the warm start from a
registered version, the skip of a night with nothing new, the golden set in the gate, and a class list that
grows (the warm start's own checks: tests/registry/test_warm_start.py).

The whole-run scenario uses `yolox.pipeline.run_pipeline` (what `yolox pipeline` and the flow run) on a SQLite
store with tiny training (2 steps a night): the mechanics, not the learning (``bench/nightly.py`` measures that
through the deployed flow, 30 epochs a night)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from yolox.config import PipelineParams, parse_params


def _voc_copy(src: Path, dst: Path, stems: list[str]) -> Path:
    for sub, suffix in (("images", ".jpg"), ("annotations", ".xml")):
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            shutil.copy(src / sub / f"{stem}{suffix}", dst / sub / f"{stem}{suffix}")
    return dst


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
