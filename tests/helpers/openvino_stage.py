"""Test helper: the export stage with OpenVINO and INT8 and the gate's OpenVINO INT8 figures, run in a fresh process
by tests/export/test_openvino.py (see there why)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from yolox.config import PipelineParams


def export_stage_openvino_and_the_gate(coco128_dir: str, nano_pth: str, tmp: str) -> None:
    """The body of ``test_export_stage_openvino_and_the_gate``; raises AssertionError on a failed check."""
    coco128_dir, nano_pth, tmp_path = Path(coco128_dir), Path(nano_pth), Path(tmp)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"

    import mlflow

    from yolox.data.records import load_prepared, val_set_id
    from yolox.data.stage import prepare
    from yolox.export.stage import _log_openvino, export
    from yolox.registry.gate import int8_figures
    from yolox.registry.versions import VersionInfo

    params = PipelineParams.model_validate({"data": {"source": str(coco128_dir / "dataset.yaml")},
                                            "export": {"formats": ["onnx", "openvino"], "int8": True,
                                                       "int8_calibration_images": 8, "check_images": 4}})
    prepared = prepare(params, tmp_path / "prepared").path
    result = export(params, nano_pth, tmp_path / "m.onnx", img_size=160, model_name="yolox-nano",
                    check_images=prepared / "images", prepared_dir=prepared)
    ov = result.openvino
    val = load_prepared(prepared, "val")
    assert ov.check == "passed" and ov.xml == tmp_path / "m.xml" and ov.int8_xml == tmp_path / "m.int8.xml"
    assert ov.val_set == val_set_id(val) and ov.calibration_images == 8 and ov.num_images == len(val.records)
    assert ov.drop == pytest.approx(ov.fp32_ap - ov.int8_ap) and ov.fp32_ap > 0
    assert result.int8 is not None and abs(result.int8.fp32_ap - ov.fp32_ap) <= 0.002   # one network, two runtimes

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    from yolox.tracking.run import MlflowRun

    with mlflow.start_run() as run:
        _log_openvino(MlflowRun.attach(run.info.run_id), ov)
    logged = mlflow.MlflowClient().list_artifacts(run.info.run_id, "openvino")
    assert sorted(Path(f.path).name for f in logged) == ["m.bin", "m.int8.bin", "m.int8.xml", "m.xml"]
    metrics = mlflow.get_run(run.info.run_id).data.metrics
    assert metrics["export/openvino_int8_AP50_95"] == pytest.approx(ov.int8_ap)

    tags = {"openvino_int8_AP50_95": f"{ov.int8_ap:.6f}", "openvino_fp32_AP50_95": f"{ov.fp32_ap:.6f}",
            "openvino_int8_xml": "openvino/m.int8.xml", "openvino_fp32_xml": "openvino/m.xml", "input_size": "160"}
    info = VersionInfo("m", "2", run.info.run_id, {**tags, "openvino_val_set": ov.val_set}, [])
    (same,) = int8_figures(info, val, ov.val_set, params.eval)
    assert same["runtime"] == "openvino" and not same.get("remeasured")
    other = VersionInfo("m", "2", run.info.run_id, {**tags, "openvino_int8_AP50_95": "0.999",
                                                    "openvino_val_set": "sha256:other"}, [])
    (again,) = int8_figures(other, val, ov.val_set, params.eval)
    assert again["remeasured"] and "error" not in again
    assert again["fp32_ap"] == pytest.approx(ov.fp32_ap, abs=1e-9)
    assert again["int8_ap"] == pytest.approx(ov.int8_ap, abs=1e-9)
