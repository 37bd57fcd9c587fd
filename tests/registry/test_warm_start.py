"""The nightly warm start (yolox/registry/warm_start.py): a class list that grows keeps the known classes'
predictors by name, and a registry reference that names no version is one clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from yolox.config import parse_params
from yolox.errors import ConfigError, TrackingError
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights


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
