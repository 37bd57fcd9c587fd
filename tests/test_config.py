"""Params (yolox/config.py): every bad field named by its dotted path, the authors' recipe as defaults,
overrides (``--set KEY.PATH=VALUE``) and params files, ``train.epochs=N`` alone lowering the phases to fit,
contradictions in one line, registry references as weights, and the flat names MLflow records."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from yolox.config import PipelineParams, apply_override, flatten, load_params, params_from, parse_params
from yolox.errors import ConfigError

DEFAULT = Path(__file__).resolve().parents[1] / "params" / "default.yaml"


@pytest.mark.parametrize(("raw", "field"), [
    ({"train": {"epochz": 3}}, "train.epochz"),
    ({"bogus": {}}, "bogus"),
    ({"augment": {"mosaic_prob": 1.5}}, "augment.mosaic_prob"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"model": {"input_size": 100}}, "model.input_size"),
    ({"model": {"name": "yolox-huge"}}, "model.name"),
    ({"eval": {"nms_thresh": 0}}, "eval.nms_thresh"),
    ({"export": {"opset": 11}}, "export.opset"),
    ({"data": {"val_fraction": 1.0}}, "data.val_fraction"),
    ({"train": {"batch_size": "many"}}, "train.batch_size"),
])
def test_bad_params_name_the_dotted_field(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "params/test.yaml")
    msg = str(err.value)
    assert msg.startswith("params/test.yaml: invalid params")
    assert f"  {field}: " in msg, msg


def test_unknown_key_and_literal_messages() -> None:
    with pytest.raises(ConfigError, match=r"train\.epochz: unknown key"):
        parse_params({"train": {"epochz": 3}})
    with pytest.raises(ConfigError, match=r"model\.name: must be one of .*yolox-nano.*\(got 'yolox-huge'\)"):
        parse_params({"model": {"name": "yolox-huge"}})


def test_every_bad_field_is_listed() -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"train": {"epochs": 0, "momentum": 1.5}, "gate": {"min_ap": -1}})
    msg = str(err.value)
    for field in ("train.epochs", "train.momentum", "gate.min_ap"):
        assert field in msg


def test_cross_field_check() -> None:
    with pytest.raises(ConfigError, match=r"train: .*no_aug_epochs \(20\) must not exceed epochs \(10\)"):
        parse_params({"train": {"epochs": 10, "no_aug_epochs": 20}})


def test_defaults_are_the_authors_recipe() -> None:
    p = parse_params({})
    assert p.model.name == "yolox-nano" and p.model.input_size == 416
    assert p.train.basic_lr_per_img == pytest.approx(0.01 / 64)
    assert (p.train.warmup_epochs, p.train.no_aug_epochs, p.train.epochs) == (5, 15, 300)
    assert (p.train.min_lr_ratio, p.train.momentum, p.train.weight_decay) == (0.05, 0.9, 5e-4)
    assert p.train.ema_decay == 0.9998
    assert (p.eval.conf_thresh, p.eval.nms_thresh, p.eval.max_det) == (0.01, 0.65, 100)


def test_apply_override() -> None:
    raw: dict = {"train": {"epochs": 5}}
    apply_override(raw, "train.epochs=17")
    apply_override(raw, "train.amp=false")
    apply_override(raw, "augment.mosaic_scale=[0.5, 1.5]")   # creates the section
    apply_override(raw, "model.weights=null")
    apply_override(raw, "tracking.run_name=a=b")             # only the first '=' splits
    assert raw == {"train": {"epochs": 17, "amp": False}, "augment": {"mosaic_scale": [0.5, 1.5]},
                   "model": {"weights": None}, "tracking": {"run_name": "a=b"}}
    p = parse_params(raw)
    assert p.train.epochs == 17 and p.augment.mosaic_scale == (0.5, 1.5) and p.model.weights is None
    for bad in ("train.epochs", "=5", " =5"):
        with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
            apply_override({}, bad)
    with pytest.raises(ConfigError, match="epochs is not a section"):
        apply_override({"train": {"epochs": 5}}, "train.epochs.x=1")


def test_load_params_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 20, "batch_size": 8}, "model": {"name": "yolox-s"}}))
    p = load_params(path, ["train.epochs=30", "eval.batch_size=4"])
    assert (p.train.epochs, p.train.batch_size, p.eval.batch_size, p.model.name) == (30, 8, 4, "yolox-s")
    with pytest.raises(ConfigError, match=rf"{path}: invalid params\n  train\.epochs"):
        load_params(path, ["train.epochs=0"])
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_params(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("train: {epochs: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "broken.yaml")


def test_flat_gives_dotted_names() -> None:
    p = parse_params({"train": {"epochs": 42}})
    flat = p.flat()
    assert flat["train.epochs"] == 42
    assert flat["model.name"] == "yolox-nano"
    assert flat["augment.mosaic_scale"] == [0.1, 2.0]
    assert flat["model.weights"] == "yolox_nano.pth" and flat["tracking.run_name"] is None
    assert all(k.count(".") == 1 for k in flat if not k.startswith("train.distributed."))
    assert flat["train.distributed.kubernetes.namespace"] == "yolox"   # nested sections: one dot per level
    sections = PipelineParams.model_fields
    assert {k.split(".")[0] for k in flat} == set(sections)
    def leaves(model) -> int:   # fields, counting a nested section's fields instead of the section
        return sum(leaves(getattr(model, f)) if hasattr(getattr(model, f), "model_fields") else 1
                   for f in type(model).model_fields)

    assert len(flat) == leaves(p)
    assert not any(isinstance(v, dict) for v in flat.values())
    assert flatten({"a": {"b": {"c": 1}, "d": 2}, "e": 3}) == {"a.b.c": 1, "a.d": 2, "e": 3}


def test_registry_references_in_params() -> None:
    assert parse_params({"model": {"weights": "champion"}}).model.weights == "champion"
    assert parse_params({"model": {"weights": "version 3"}}).model.weights == "version 3"
    with pytest.raises(ConfigError, match="model.weights: .*'version <N>'.*got 'version three'"):
        parse_params({"model": {"weights": "version three"}})
    with pytest.raises(ConfigError, match="model.weights"):
        parse_params({"model": {"weights": "@"}})


# --- train.epochs=N alone --------------------------------------------------------------------------------


def _phases(p: PipelineParams) -> tuple:
    t = p.train
    return t.epochs, t.warmup_epochs, t.no_aug_epochs, t.close_mosaic_epochs, t.eval_interval


def _note(epochs: int, lowered: str) -> str:
    return f"train.epochs={epochs}: lowered {lowered} to fit the run (override them to choose)"


def test_epochs_override_alone_fits_the_phases(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "yolox.config")
    assert _phases(load_params(DEFAULT, ["train.epochs=1"])) == (1, 1, 1, None, 1)   # default.yaml: 1, 2, 5
    assert _phases(params_from(None, ["train.epochs=3"])) == (3, 3, 3, None, 3)       # defaults: 5, 15, 10
    assert _phases(load_params(DEFAULT, ["train.epochs=50"])) == (50, 1, 2, None, 5)  # nothing to lower
    # a phase set with it is the user's: kept where it may be (an evaluation interval); the others still fit
    assert _phases(load_params(DEFAULT, ["train.epochs=1", "train.eval_interval=4"])) == (1, 1, 1, None, 4)
    mosaic = tmp_path / "mosaic.yaml"
    mosaic.write_text(yaml.safe_dump({"train": {"epochs": 10, "no_aug_epochs": 2, "close_mosaic_epochs": 3}}))
    assert _phases(load_params(mosaic, ["train.epochs=2"])) == (2, 2, 2, 2, 2)
    assert [r.getMessage() for r in caplog.records] == [
        _note(1, "train.no_aug_epochs 2 -> 1, train.eval_interval 5 -> 1"),
        _note(3, "train.warmup_epochs 5 -> 3, train.no_aug_epochs 15 -> 3, train.eval_interval 10 -> 3"),
        _note(1, "train.no_aug_epochs 2 -> 1"),
        _note(2, "train.warmup_epochs 5 -> 2, train.close_mosaic_epochs 3 -> 2, train.eval_interval 10 -> 2")]


CONTRADICTION = ("train.no_aug_epochs=2 and train.epochs=1, both overridden: no_aug_epochs must not exceed "
                 "epochs; lower train.no_aug_epochs or raise train.epochs")


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.epochs=1", "train.no_aug_epochs=2"], CONTRADICTION),
    (["train.no_aug_epochs=9"],
     (f"train.no_aug_epochs=9 exceeds train.epochs (5 in {DEFAULT}): add the override train.epochs=9 "
      "(or more), or lower train.no_aug_epochs")),
    (["train.close_mosaic_epochs=6"],
     (f"train.close_mosaic_epochs=6 exceeds train.epochs (5 in {DEFAULT}): add the override "
      "train.epochs=6 (or more), or lower train.close_mosaic_epochs")),
], ids=["both-set", "phase-alone", "close-mosaic-alone"])
def test_contradicting_overrides_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_params(DEFAULT, overrides)
    assert str(err.value) == message


def test_a_params_file_that_contradicts_itself_is_still_an_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"train": {"epochs": 1, "no_aug_epochs": 2}}, "p.yaml")
    assert str(err.value).splitlines() == [
        "p.yaml: invalid params",
        ("  train: Value error, no_aug_epochs (2) must not exceed epochs (1): lower no_aug_epochs or raise "
         "epochs (an override of train.epochs alone lowers the phases to fit)")]
