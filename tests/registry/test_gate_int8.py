"""The gate's INT8 rules: one per runtime (ONNX Runtime INT8, TensorRT INT8), each on figures measured on the
gate's own val set: the export stage's figures when their val-set id is the gate's, else measured again from the
models the version's run logged; a figure that cannot be measured here fails its rule (never compared across data).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from yolox.config import GateParams, PipelineParams
from yolox.registry.rules import ModelEval, decide

SIZE = 160


def _cand(ap: float = 0.4) -> ModelEval:
    return ModelEval("2", {"AP50_95": ap, "AP50": 0.6}, "sha256:val")


def test_one_int8_rule_per_runtime() -> None:
    gp = GateParams(int8_max_drop=0.02)
    ort = {"runtime": "onnxruntime", "fp32_ap": 0.40, "int8_ap": 0.39, "val_set": "sha256:val"}
    trt = {"runtime": "tensorrt", "fp32_ap": 0.40, "int8_ap": 0.35, "val_set": "sha256:val"}
    both = decide("m", _cand(), None, True, gp, int8=[ort, trt])
    assert [r.name for r in both.rules if "int8" in r.name] == ["int8_max_drop", "tensorrt_int8_max_drop"]
    assert not both.promote and [r.name for r in both.failed] == ["tensorrt_int8_max_drop"]
    assert "TensorRT INT8 AP50_95 0.3500 vs FP32 0.4000: drop 0.0500 > 0.02" in both.markdown()
    # one mapping is one ONNX Runtime figure (what the export stage records)
    assert decide("m", _cand(), None, True, gp, int8={"fp32_ap": 0.4, "int8_ap": 0.39}).promote
    # a figure that could not be measured on this val set fails its rule, saying why
    lost = decide("m", _cand(), None, True, gp, int8=[ort, {"runtime": "tensorrt", "error": "no CUDA GPU"}])
    rule = next(r for r in lost.rules if r.name == "tensorrt_int8_max_drop")
    assert not lost.promote and not rule.passed and rule.value is None and "no CUDA GPU" in rule.detail


@pytest.fixture(scope="module")
def int8_export(coco128_dir: Path, nano_pth: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """yolox-nano exported at 160 px, its INT8 model and their figures on coco128's prepared val split."""
    from yolox.data.records import load_prepared
    from yolox.data.stage import prepare
    from yolox.export.stage import export, export_int8

    tmp = tmp_path_factory.mktemp("int8")
    params = PipelineParams.model_validate({"data": {"source": str(coco128_dir / "dataset.yaml")},
                                            "export": {"int8_calibration_images": 4}})
    prepared = prepare(params, tmp / "prepared").path
    exported = export(params, nano_pth, tmp / "m.onnx", img_size=SIZE, model_name="yolox-nano", check=False)
    int8 = export_int8(params, exported.onnx, SIZE, prepared)
    return {"params": params, "fp32": exported.onnx, "int8": int8, "val": load_prepared(prepared, "val")}


@pytest.fixture()
def logged_run(int8_export: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A run (SQLite store) that logged both models as the export stage logs them (``onnx/``)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(int8_export["fp32"]), "onnx")
        mlflow.log_artifact(str(int8_export["int8"].onnx), "onnx")
    return run.info.run_id


def _info(run_id: str | None, tags: dict[str, str]):
    from yolox.registry.versions import VersionInfo

    return VersionInfo("m", "2", run_id, {"input_size": str(SIZE), **tags}, [])


def test_int8_figures_are_those_of_the_gates_val_set(int8_export: dict, logged_run: str) -> None:
    from yolox.data.records import val_set_id
    from yolox.registry.gate import int8_figures

    int8, val, eval_params = int8_export["int8"], int8_export["val"], int8_export["params"].eval
    assert int8.val_set == val_set_id(val)
    tags = {"int8_AP50_95": f"{int8.int8_ap:.6f}", "int8_fp32_AP50_95": f"{int8.fp32_ap:.6f}",
            "int8_onnx": f"onnx/{int8.onnx.name}", "int8_fp32_onnx": f"onnx/{int8_export['fp32'].name}"}

    # the same val set: the export stage's figures as recorded
    (same,) = int8_figures(_info(logged_run, {**tags, "int8_val_set": int8.val_set}), val, int8.val_set, eval_params)
    assert not same.get("remeasured") and same["int8_ap"] == pytest.approx(int8.int8_ap, abs=1e-6)

    # recorded on another val set (or on none): measured again here, from the run's models, on the gate's data
    wrong = {**tags, "int8_AP50_95": "0.999", "int8_fp32_AP50_95": "0.999", "int8_val_set": "sha256:other"}
    for recorded in (wrong, {k: v for k, v in wrong.items() if k != "int8_val_set"}):
        (again,) = int8_figures(_info(logged_run, recorded), val, int8.val_set, eval_params)
        assert again["remeasured"] and again["val_set"] == int8.val_set and "error" not in again
        assert again["fp32_ap"] == pytest.approx(int8.fp32_ap, abs=1e-9)
        assert again["int8_ap"] == pytest.approx(int8.int8_ap, abs=1e-9)
    decision = decide("m", _cand(int8.fp32_ap), None, True, GateParams(int8_max_drop=1.0),
                      int8=int8_figures(_info(logged_run, wrong), val, int8.val_set, eval_params))
    assert f"(re-measured on {int8.val_set})" in next(r.detail for r in decision.rules if r.name == "int8_max_drop")

    # no run to measure from: the rule fails instead of comparing figures from other data
    (lost,) = int8_figures(_info(None, wrong), val, int8.val_set, eval_params)
    assert "records no models" in lost["error"]


def test_tensorrt_int8_figure_from_other_data_needs_the_engines_gpu(int8_export: dict, logged_run: str,
                                                                   tmp_path: Path) -> None:
    """An INT8 engine's figures from another val set are measured again only where the engine runs; on this CPU
    machine that cannot be, so its rule fails with the reason (a GPU machine measures: tests/test_gpu.py)."""
    import mlflow

    from yolox.registry.gate import int8_figures

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"an engine built elsewhere")
    with mlflow.start_run(run_id=logged_run):
        mlflow.log_artifact(str(engine), "tensorrt")
    tags = {"tensorrt_precision": "int8", "tensorrt_AP50_95": "0.30", "tensorrt_onnx_AP50_95": "0.31",
            "tensorrt_val_set": "sha256:other", "tensorrt_engine": "tensorrt/m.engine",
            "tensorrt_onnx": f"onnx/{int8_export['fp32'].name}"}
    val, val_set = int8_export["val"], int8_export["int8"].val_set
    (figure,) = int8_figures(_info(logged_run, tags), val, val_set, int8_export["params"].eval)
    assert figure["runtime"] == "tensorrt" and "cannot measure it here" in figure["error"]
    decision = decide("m", _cand(), None, True, GateParams(), int8=[figure])
    assert [r.name for r in decision.failed] == ["tensorrt_int8_max_drop"]
    # recorded on the gate's val set: compared as recorded (no GPU needed to read two numbers)
    (recorded,) = int8_figures(_info(logged_run, {**tags, "tensorrt_val_set": val_set}), val, val_set,
                               int8_export["params"].eval)
    assert recorded["int8_ap"] == 0.30 and recorded["fp32_ap"] == 0.31 and "error" not in recorded
