"""The promotion gate and the champion alias, on a real SQLite registry with real models.

Models: the authors' yolox_nano.pth exported to ONNX at 416 px ("good", AP50:95 ~0.41 on the prepared
coco128 val split) and at 320 px ("worse", ~0.33), each checked against PyTorch and registered as
versions of per-test registered models. Every gate evaluation runs the registered ONNX pyfunc on the
prepared val set, as `yolox gate` and the flow do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from yolox.config import GateParams, PipelineParams
from yolox.errors import GateError
from yolox.registry.rules import Decision, ModelEval, decide

EXPERIMENT = "gate-tests"
YOLOX = str(Path(sys.executable).parent / "yolox")


# --- the pure decision ------------------------------------------------------------------------------


def _ev(version: str, ap: float, val_set: str = "sha256:aaaa") -> ModelEval:
    return ModelEval(version, {"AP50_95": ap, "AP50": ap + 0.2}, val_set, "d.dir", 26)


def test_decide_rules() -> None:
    gp = GateParams(min_ap=0.05, max_regression=0.01)
    first = decide("m", _ev("1", 0.30), None, True, gp)
    assert first.promote and [r.name for r in first.rules] == ["min_ap", "max_regression", "best_ever",
                                                              "base_weights", "export_check", "same_val_set"]
    assert not decide("m", _ev("1", 0.04), None, True, gp).promote  # first model below the floor
    assert decide("m", _ev("2", 0.295), _ev("1", 0.30), True, gp).promote  # within the tolerance
    worse = decide("m", _ev("2", 0.28), _ev("1", 0.30), True, gp)
    assert not worse.promote and [r.name for r in worse.failed] == ["max_regression"]
    assert worse.failed[0].threshold == pytest.approx(0.29) and worse.failed[0].value == 0.28
    assert "max_regression" in worse.reason() and "0.2800 < 0.2900" in worse.reason()
    assert [r.name for r in decide("m", _ev("2", 0.5), _ev("1", 0.3), False, gp).failed] == ["export_check"]
    assert [r.name for r in decide("m", _ev("2", 0.5), _ev("1", 0.3), None, gp).failed] == ["export_check"]
    assert decide("m", _ev("2", 0.5), _ev("1", 0.3), False, GateParams(require_export_check=False)).promote
    other = decide("m", _ev("2", 0.5), _ev("1", 0.3, "sha256:bbbb"), True, gp)
    assert [r.name for r in other.failed] == ["same_val_set"]
    record = json.loads(json.dumps(worse.to_json()))
    assert record["decision"] == "reject" and record["champion"]["version"] == "1"
    assert {r["name"]: r["passed"] for r in record["rules"]}["max_regression"] is False
    assert worse.tags()["gate.rule.max_regression"] == "fail" and worse.tags()["gate.decision"] == "reject"


def test_gate_cannot_drift_below_the_best_champion() -> None:
    """Each nightly candidate within the tolerance of the current champion, but the champions slide: the
    best-ever rule stops the slide once the total loss exceeds the tolerance (issue 10)."""
    gp = GateParams(min_ap=0.05, max_regression=0.01)
    best, champion, promoted = None, _ev("1", 0.4119), []
    for v, ap in [("2", 0.4063), ("3", 0.4010), ("4", 0.3990)]:
        if best is None or champion.ap > best["ap"]:
            best = {"ap": champion.ap, "version": champion.version}
        d = decide("m", _ev(v, ap), champion, True, gp, best=best)
        assert next(r for r in d.rules if r.name == "max_regression").passed  # each step is within 0.01
        if d.promote:
            promoted.append(v)
            champion = _ev(v, ap)
        else:
            assert [r.name for r in d.failed] == ["best_ever"]
            assert "best champion on this val set (v1) 0.4119" in d.reason()
    assert promoted == ["2"], "0.4010 is more than 0.01 below the best champion 0.4119"
    assert decide("m", _ev("5", 0.4063), champion, True, GateParams(best_ever=False), best=best).promote


def test_first_model_must_not_be_worse_than_its_base_weights() -> None:
    gp = GateParams(min_ap=0.05, max_regression=0.01)
    worse = decide("m", _ev("1", 0.323), None, True, gp, base=_ev(None, 0.336))   # the quickstart's numbers
    assert not worse.promote and [r.name for r in worse.failed] == ["base_weights"]
    assert "the base weights it was trained from 0.3360" in worse.reason()
    record = worse.to_json()
    assert record["base"]["metrics"]["AP50_95"] == 0.336 and record["promoted"] is False
    again = Decision.from_json(json.loads(json.dumps(record)))        # the flow's markdown artifact reads it back
    assert again.base.ap == 0.336 and again.base.version is None and again.reason() == worse.reason()
    assert decide("m", _ev("1", 0.330), None, True, gp, base=_ev(None, 0.336)).promote     # within 0.01
    new_classes = decide("m", _ev("1", 0.2), None, True, gp, base_note="base predicts 80 classes, val has 3")
    assert new_classes.promote and "80 classes" in next(r.detail for r in new_classes.rules if r.name == "base_weights")
    assert "base_weights" not in [r.name for r in decide("m", _ev("2", 0.2), _ev("1", 0.2), True, gp).rules]


def test_per_class_rule() -> None:
    gp = GateParams(min_ap=0.05, max_regression=0.05, per_class_min_boxes=10, per_class_max_drop=0.05)

    def ev(version: str, ap: float, per_class: dict[str, float]) -> ModelEval:
        return ModelEval(version, {"AP50_95": ap}, "sha256:aaaa", None, 26, per_class,
                         {"person": 120, "dog": 12, "kite": 3})

    champion = ev("1", 0.40, {"person": 0.50, "dog": 0.40, "kite": 0.30})
    ok = decide("m", ev("2", 0.40, {"person": 0.52, "dog": 0.36, "kite": 0.0}), champion, True, gp)
    assert ok.promote, ok.reason()           # kite lost 0.30 but has only 3 val boxes; dog lost 0.04 <= 0.05
    bad = decide("m", ev("2", 0.41, {"person": 0.60, "dog": 0.30, "kite": 0.30}), champion, True, gp)
    assert [r.name for r in bad.failed] == ["per_class"] and "dog 0.4000 -> 0.3000" in bad.reason()


# --- on a real registry -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh SQLite tracking store for this module (MLFLOW_TRACKING_URI restored afterwards)."""
    import mlflow

    root = tmp_path_factory.mktemp("gate-store")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.create_experiment(EXPERIMENT, artifact_location=(root / "mlartifacts").as_uri())
    yield root
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.fixture(scope="module")
def prepared(store: Path, coco128_dir: Path) -> Path:
    from yolox.config import DataParams
    from yolox.data.prepare import prepare_dataset

    return prepare_dataset(DataParams(source=str(coco128_dir), prepared_dir=str(store / "prepared"))).out_dir


@pytest.fixture(scope="module")
def onnx_models(store: Path, prepared: Path, nano_pth: Path) -> dict[str, Path]:
    """{"good": nano at 416 px, "worse": nano at 320 px}, both exported and checked against PyTorch."""
    from yolox.export.onnx_export import check_onnx, export_onnx
    from yolox.models.build import build_model
    from yolox.models.checkpoint import load_weights
    from yolox.models.coco_classes import COCO_CLASSES

    model = build_model("yolox-nano", 80)
    load_weights(model, nano_pth)
    model.eval()
    images = sorted((prepared / "images").rglob("*.jpg"))[:2]
    out = {}
    for key, size in (("good", 416), ("worse", 320)):
        path = export_onnx(model, store / f"nano{size}.onnx", size, COCO_CLASSES, "yolox-nano")
        assert check_onnx(model, path, images, size, 1e-2).passed
        out[key] = path
    return out


def _params(store: Path, prepared: Path, name: str, **gate: float) -> PipelineParams:
    return PipelineParams.model_validate({
        "data": {"prepared_dir": str(prepared)}, "tracking": {"experiment": EXPERIMENT, "registered_model": name},
        "gate": {"min_ap": 0.05, "max_regression": 0.01, **gate}})


def _register(name: str, onnx: Path, prepared: Path) -> str:
    from yolox.registry.versions import log_and_register
    from yolox.tracking.run import MlflowRun

    run = MlflowRun(EXPERIMENT, f"{name}-{onnx.stem}", {"model": "yolox-nano"})
    sample = min((prepared / "images").rglob("*.jpg"))
    mv = log_and_register(run.run_id, onnx, name, sample, {"export_check": "passed"})
    run.end()
    return mv.version


def _champion(name: str) -> str | None:
    from mlflow import MlflowClient

    holder = MlflowClient().get_registered_model(name).aliases.get("champion")
    return None if holder is None else str(holder)


def _assert_consistent_history(name: str) -> list:
    """The history is 1..n, each event's previous is the event before it, and it ends at the champion."""
    from yolox.registry.versions import champion_history

    history = champion_history(name)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    for before, after in zip([None, *history[:-1]], history):
        assert after.previous == (before.version if before else None), history
    assert history[-1].version == _champion(name)
    return history


def test_first_model_is_promoted_if_above_floor(store: Path, prepared: Path, onnx_models: dict[str, Path]) -> None:
    import mlflow

    from yolox.registry.gate import run_gate
    from yolox.registry.versions import version_info

    v1 = _register("first", onnx_models["good"], prepared)
    decision = run_gate(_params(store, prepared, "first"))
    assert decision.promote and decision.champion is None
    assert 0.40 < decision.candidate.ap < 0.50 and decision.candidate.num_images == 17   # the seed-0 val split
    assert _champion("first") == v1 and decision.outcome.startswith("promoted")
    info = version_info("first", v1)
    assert info.tags["gate.decision"] == "promote" and info.tags["gate.rule.min_ap"] == "pass"
    assert info.tags["previous_champion"] == "none" and info.tags["promotion"] == "gate"
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(info.run_id, "gate")]
    assert len(artifacts) == 1 and artifacts[0].startswith("gate/decision-")
    assert [(e.version, e.how) for e in _assert_consistent_history("first")] == [(v1, "gate")]

    # the same model under a floor it does not reach: rejected, no champion
    _register("floor", onnx_models["good"], prepared)
    low = run_gate(_params(store, prepared, "floor", min_ap=0.9))
    assert not low.promote and [r.name for r in low.failed] == ["min_ap"] and _champion("floor") is None


def test_worse_rejected_better_promoted(store: Path, prepared: Path, onnx_models: dict[str, Path]) -> None:
    from yolox.registry.gate import run_gate
    from yolox.registry.versions import promote, version_info

    params = _params(store, prepared, "gated")
    v1 = _register("gated", onnx_models["good"], prepared)
    assert run_gate(params).promote
    v2 = _register("gated", onnx_models["worse"], prepared)
    worse = run_gate(params)
    assert not worse.promote and [r.name for r in worse.failed] == ["max_regression", "best_ever"]
    assert worse.best == {"ap": pytest.approx(worse.champion.ap, abs=1e-6), "version": v1}
    assert worse.champion.version == v1 and worse.champion.val_set == worse.candidate.val_set
    assert worse.champion.ap - worse.candidate.ap > 0.05
    assert _champion("gated") == v1, "a rejected candidate must leave the champion where it was"
    info = version_info("gated", v2)
    assert "challenger" in info.aliases and info.tags["gate.decision"] == "reject"
    assert info.tags["gate.rule.max_regression"] == "fail" and info.tags["gate.champion_version"] == v1

    promote("gated", v2, "manual", note="test: a worse champion")  # now a better candidate comes
    v3 = _register("gated", onnx_models["good"], prepared)
    better = run_gate(params)
    assert better.promote and better.champion.version == v2 and _champion("gated") == v3
    tags = version_info("gated", v3).tags
    assert tags["previous_champion"] == v2 and tags["promotion"] == "gate"
    assert version_info("gated", v2).tags["promotion"] == "manual"
    history = _assert_consistent_history("gated")
    assert [(e.version, e.how) for e in history] == [(v1, "gate"), (v2, "manual"), (v3, "gate")]


def test_rollback(store: Path, prepared: Path, onnx_models: dict[str, Path]) -> None:
    from yolox.registry.versions import promote, rollback, version_info

    v1 = _register("rb", onnx_models["good"], prepared)
    v2 = _register("rb", onnx_models["worse"], prepared)
    v3 = _register("rb", onnx_models["good"], prepared)
    for v in (v1, v2, v3):
        promote("rb", v, "manual")
    assert rollback("rb").version == v2 and _champion("rb") == v2
    assert version_info("rb", v2).tags["rollback_from"] == v3
    # the CLI, as a user runs it: a second rollback walks further back (v2 replaced v1)
    (store / "rb.yaml").write_text(yaml.safe_dump(
        {"tracking": {"experiment": EXPERIMENT, "registered_model": "rb"}}))
    proc = subprocess.run([YOLOX, "promote", "--rollback", "--params", str(store / "rb.yaml")], cwd=store,
                          env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _champion("rb") == v1 and "rollback" in proc.stdout
    with pytest.raises(GateError, match="records no previous champion"):
        rollback("rb")
    history = _assert_consistent_history("rb")
    assert [(e.version, e.how) for e in history][-2:] == [(v2, "rollback"), (v1, "rollback")]


def test_gate_cli_exits_nonzero_on_rejection(store: Path, prepared: Path, onnx_models: dict[str, Path]) -> None:
    from yolox.registry.versions import promote

    v1 = _register("cli", onnx_models["good"], prepared)
    promote("cli", v1, "manual")
    v2 = _register("cli", onnx_models["worse"], prepared)
    params = store / "cli.yaml"
    params.write_text(yaml.safe_dump({"data": {"prepared_dir": str(prepared)}, "gate": {"max_regression": 0.01},
                                      "tracking": {"experiment": EXPERIMENT, "registered_model": "cli"}}))
    record = store / "decision.json"
    proc = subprocess.run([YOLOX, "gate", "--params", str(params), "--json", str(record)], cwd=store,
                          env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"version {v2} rejected: max_regression" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert "max_regression" in proc.stdout and "FAIL" in proc.stdout  # the rule table
    decision = json.loads(record.read_text())
    print(json.dumps(decision, indent=2))
    assert decision["decision"] == "reject" and decision["candidate"]["version"] == v2
    assert decision["champion"]["version"] == v1 and _champion("cli") == v1


# --- two processes promoting at once ----------------------------------------------------------------

RACER = r"""
import json, os, sys, time
from pathlib import Path
from yolox.errors import YoloxError
from yolox.registry.versions import champion_history, promote
sync, me, ops = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
for k, op in enumerate(ops):
    champion_history(op["name"])  # connected and warm before the start signal
    (sync / f"ready-{k}-{me}").touch()
    while not (sync / f"go-{k}").exists():
        time.sleep(0.002)
    kw = {"expected_champion": (sync / f"expected-{k}").read_text()} if op["how"] == "gate" else {}
    try:
        p = promote(op["name"], op["version"], op["how"], lock=op["lock"], **kw)
        out = {"ok": True, "version": p.version, "seq": p.seq}
    except YoloxError as err:
        out = {"ok": False, "error": str(err)}
    tmp = sync / f"result-{k}-{me}.json.tmp"      # renamed into place: the test reads it as soon as it exists
    tmp.write_text(json.dumps(out))
    os.replace(tmp, sync / f"result-{k}-{me}.json")
"""


def test_racing_promotions_leave_one_champion(store: Path, prepared: Path, onnx_models: dict[str, Path]) -> None:
    """Two processes promote at the same instant, three rounds on one registered model: two gate promotions
    against the same champion with the file lock (SQLite store), the same with the lease (the fallback for
    a tracking server), then two manual overrides. Exactly one gate promotion may win each round (the other
    compared against a champion that is gone), and the history stays one chain ending at the champion."""
    from yolox.registry.versions import promote, version_info

    name = "race"
    v = [_register(name, onnx_models["good"], prepared) for _ in range(5)]
    promote(name, v[0], "manual")
    sync = store / "race-sync"
    sync.mkdir()
    rounds = [[{"name": name, "version": v[1 + i], "how": "gate", "lock": "file"} for i in (0, 1)],
              [{"name": name, "version": v[3 + i], "how": "gate", "lock": "lease"} for i in (0, 1)],
              [{"name": name, "version": v[1 + i], "how": "manual", "lock": "file"} for i in (0, 1)]]
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(sync), str(i), json.dumps([r[i] for r in rounds])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    results = []
    try:
        for k in range(len(rounds)):
            deadline = time.monotonic() + 120
            while not all((sync / f"ready-{k}-{i}").exists() for i in (0, 1)):
                assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                    [p.communicate() for p in procs if p.poll() is not None]
                time.sleep(0.01)
            (sync / f"expected-{k}").write_text(_champion(name))  # what both gates evaluated against
            (sync / f"go-{k}").touch()
            while not all((sync / f"result-{k}-{i}.json").exists() for i in (0, 1)):
                assert time.monotonic() < deadline, f"round {k} did not finish"
                time.sleep(0.01)
            results.append([json.loads((sync / f"result-{k}-{i}.json").read_text()) for i in (0, 1)])
    finally:
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
    assert all(p.returncode == 0 for p in procs), [p.communicate() for p in procs]
    winners = []
    for gate_round in results[:2]:
        assert sorted(r["ok"] for r in gate_round) == [False, True], gate_round
        loser = next(r for r in gate_round if not r["ok"])
        assert "moved to version" in loser["error"] and "re-run the gate" in loser["error"]
        winners.append(next(r["version"] for r in gate_round if r["ok"]))
    assert all(r["ok"] for r in results[2]), results[2]
    history = _assert_consistent_history(name)
    assert [(e.version, e.how) for e in history[:3]] == [(v[0], "manual"), (winners[0], "gate"),
                                                         (winners[1], "gate")]
    assert {e.version for e in history[3:]} == {v[1], v[2]} and len(history) == 5
    for e in history[3:]:
        assert version_info(name, e.version).tags["previous_champion"] == e.previous


def test_golden_rule_keeps_the_champion_on_the_fixed_set() -> None:
    """gate.golden: better on the night's val split but worse on the fixed golden set -> rejected (tolerance 0 by
    default); no champion yet -> passes; a champion that cannot be evaluated on the golden set -> fails."""
    gp = GateParams(min_ap=0.05, max_regression=0.01, golden="golden/")
    better_val, champ = _ev("2", 0.50), _ev("1", 0.45)
    worse = decide("m", better_val, champ, True, gp, golden=(_ev("2", 0.51, "sha256:gold"), _ev("1", 0.52, "sha256:gold"),
                                                              None))
    assert not worse.promote and [r.name for r in worse.failed] == ["golden"]
    assert "0.5100 < 0.5200 = champion v1 on the golden set 0.5200 - 0.0" in worse.reason()
    record = worse.to_json()
    assert record["golden"]["candidate"]["metrics"]["AP50_95"] == 0.51 and record["golden"]["champion"]["version"] == "1"
    assert Decision.from_json(json.loads(json.dumps(record))).golden_champion.ap == 0.52
    assert worse.metrics()["gate/golden_champion_AP50_95"] == 0.52 and worse.tags()["gate.rule.golden"] == "fail"
    assert "Golden set `sha256:gold` (26 images" in worse.markdown()
    same = decide("m", better_val, champ, True, gp, golden=(_ev("2", 0.52, "sha256:gold"), _ev("1", 0.52), None))
    assert same.promote
    tolerant = GateParams(min_ap=0.05, max_regression=0.01, golden="g", golden_max_regression=0.02)
    assert decide("m", better_val, champ, True, tolerant, golden=(_ev("2", 0.51), _ev("1", 0.52), None)).promote
    first = decide("m", better_val, None, True, gp, golden=(_ev("2", 0.3), None, None))
    assert first.promote and "no champion yet" in next(r for r in first.rules if r.name == "golden").detail
    broken = decide("m", better_val, champ, True, gp, golden=(_ev("2", 0.6), None, "version 1: other classes"))
    assert [r.name for r in broken.failed] == ["golden"] and "other classes" in broken.reason()
    assert "golden" not in [r.name for r in decide("m", better_val, champ, True, GateParams()).rules]
