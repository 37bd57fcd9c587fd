"""OpenVINO as an export format (issue 25): the IR converted from the exported ONNX carries the model's metadata, is
written as a pair (never half of one), gives PyTorch's detections within the ONNX check's tolerance and ONNX
Runtime's AP; its INT8 IR (NNCF) has its AP drop measured and gated by its own rule; ``load_model`` opens an
``.xml`` for predict; ``yolox benchmark`` has its rows. All on real coco128 images and the authors' nano weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from yolox.config import EvalParams, GateParams, PipelineParams
from yolox.errors import CheckpointError, ConfigError, ExportError

SIZE = 320


@pytest.fixture(scope="module")
def exported(nano_model, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """yolox-nano (the authors' weights) exported raw at 320 px, and its FP32 IR."""
    from yolox.export.onnx_export import export_onnx
    from yolox.export.openvino import convert_onnx
    from yolox.models.coco_classes import COCO_CLASSES

    tmp = tmp_path_factory.mktemp("openvino")
    onnx_path = export_onnx(nano_model, tmp / "nano.onnx", SIZE, COCO_CLASSES, "yolox-nano")
    return {"dir": tmp, "onnx": onnx_path, "xml": convert_onnx(onnx_path, tmp / "nano.xml")}


@pytest.fixture(scope="module")
def check_images(coco128_dataset) -> list[Path]:
    return [r.path for r in coco128_dataset.records[:6]]


def test_ir_detections_equal_pytorch(nano_model, exported: dict[str, Path], check_images: list[Path]) -> None:
    """The export check's comparison, run by OpenVINO (f32): raw outputs within ``export.max_abs_diff``."""
    from yolox.export.onnx_export import check_onnx
    from yolox.inference import OpenVinoBackend

    ep = PipelineParams().export
    backend = OpenVinoBackend(exported["xml"])
    assert (backend.variant, backend.fixed_size, backend.precision) == ("raw", SIZE, "f32")
    result = check_onnx(nano_model, exported["xml"], check_images, SIZE, ep.max_abs_diff, backend=backend,
                        label="OpenVINO")
    assert result.passed and result.max_abs_diff < ep.max_abs_diff and result.num_check_images == len(check_images)


def test_end2end_ir_detections_equal_pytorch(nano_model, tmp_path: Path, check_images: list[Path]) -> None:
    """An end2end graph (decode and NMS inside) converted to IR: the same detections as PyTorch (matched one by
    one: classes, scores within 1e-4, boxes within 0.01 px), variant and baked thresholds read from its metadata."""
    from yolox.export.onnx_export import check_onnx, export_onnx
    from yolox.export.openvino import convert_onnx
    from yolox.inference import OpenVinoBackend
    from yolox.models.coco_classes import COCO_CLASSES

    onnx_path = export_onnx(nano_model, tmp_path / "e2e.onnx", 256, COCO_CLASSES, "yolox-nano", variant="end2end",
                            conf_thresh=0.25, nms_thresh=0.45, max_det=50)
    backend = OpenVinoBackend(convert_onnx(onnx_path, tmp_path / "e2e.xml"))
    assert backend.variant == "end2end" and backend.meta.export.max_det == 50
    result = check_onnx(nano_model, backend.path, check_images, 256, 1e-2, backend=backend, label="OpenVINO")
    assert result.passed and result.variant == "end2end" and result.unmatched == 0


def test_ir_carries_the_onnx_metadata(exported: dict[str, Path]) -> None:
    """The IR's rt_info holds the ONNX metadata_props (the ModelMeta JSON and the flat keys), read back by
    ``openvino.Core().read_model`` alone."""
    import onnx
    import openvino as ov

    from yolox.inference import IR_SECTION, OnnxBackend, OpenVinoBackend
    from yolox.models.meta import ONNX_KEY

    props = {p.key: p.value for p in onnx.load(str(exported["onnx"])).metadata_props}
    model = ov.Core().read_model(str(exported["xml"]))
    assert model.get_rt_info([IR_SECTION, ONNX_KEY]).astype(str) == props[ONNX_KEY]
    assert json.loads(model.get_rt_info([IR_SECTION, "names"]).astype(str))[0] == "person"
    assert OpenVinoBackend(exported["xml"]).meta == OnnxBackend(exported["onnx"]).meta


def test_ir_written_as_a_pair(exported: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write leaves the previous pair and no temp file; a .bin that is not the one written with the .xml
    is refused with a message naming it."""
    import openvino as ov

    from yolox.export.openvino import convert_onnx
    from yolox.inference import OpenVinoBackend

    xml = convert_onnx(exported["onnx"], tmp_path / "m.xml")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["m.bin", "m.xml"]

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ov, "save_model", broken)
    with pytest.raises(ExportError, match="disk full"):
        convert_onnx(exported["onnx"], xml)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(xml, other / "m.xml")
    weights = np.frombuffer(before["m.bin"], np.uint8).copy()
    weights[-4:] ^= 0xFF     # the same size, other weights: a half pair from another export
    (other / "m.bin").write_bytes(weights.tobytes())
    with pytest.raises(CheckpointError, match="m.bin is not the weights file written with it"):
        OpenVinoBackend(other / "m.xml")


def test_ir_ap_equals_onnx_runtime(exported: dict[str, Path], coco128_dataset) -> None:
    """COCO AP50:95 of the IR (OpenVINO, f32) and of its ONNX model (ONNX Runtime) on 32 coco128 images, the eval
    protocol: equal within 0.002."""
    from yolox.data.records import DetectionDataset
    from yolox.evaluate.coco_eval import evaluate
    from yolox.inference import OnnxBackend, OpenVinoBackend

    ds = coco128_dataset
    subset = DetectionDataset(ds.names, ds.category_ids, ds.records[:32])
    ov_ap = evaluate(OpenVinoBackend(exported["xml"]), subset, SIZE, EvalParams(), progress=False).metrics["AP50_95"]
    ort_ap = evaluate(OnnxBackend(exported["onnx"]), subset, SIZE, EvalParams(), progress=False).metrics["AP50_95"]
    assert ort_ap > 0.2 and abs(ov_ap - ort_ap) <= 0.002


def test_int8_ir_ap_drop_measured_and_gated(exported: dict[str, Path], coco128_dataset) -> None:
    """The NNCF INT8 IR (calibrated on 16 other coco128 images), its AP50:95 against its FP32 IR's on 32 images: the
    gate's ``openvino_int8_max_drop`` rule decides on that figure."""
    from yolox.data.records import DetectionDataset
    from yolox.evaluate.coco_eval import evaluate
    from yolox.export.openvino import quantize_ir
    from yolox.inference import OpenVinoBackend
    from yolox.registry.rules import ModelEval, decide

    ds = coco128_dataset
    subset = DetectionDataset(ds.names, ds.category_ids, ds.records[:32])
    calib = [r.path for r in ds.records[64:80]]
    int8_xml = quantize_ir(exported["xml"], exported["dir"] / "nano.int8.xml", calib, SIZE)
    int8 = OpenVinoBackend(int8_xml)
    assert int8.meta.export.precision == "int8"
    fp32_ap, int8_ap = (evaluate(b, subset, SIZE, EvalParams(), progress=False).metrics["AP50_95"]
                        for b in (OpenVinoBackend(exported["xml"]), int8))
    drop = fp32_ap - int8_ap
    assert drop <= 0.01, f"INT8 IR AP50:95 {int8_ap:.4f} vs FP32 {fp32_ap:.4f}"
    figure = {"runtime": "openvino", "fp32_ap": fp32_ap, "int8_ap": int8_ap, "val_set": "sha256:val"}
    cand = ModelEval("2", {"AP50_95": fp32_ap, "AP50": 0.5}, "sha256:val")
    for max_drop, passed in ((0.01, True), (0.0, drop <= 1e-12)):   # (INT8 may score above FP32 on 32 images)
        decision = decide("m", cand, None, True, GateParams(int8_max_drop=max_drop), int8=[figure])
        (rule,) = [r for r in decision.rules if "int8" in r.name]
        assert rule.name == "openvino_int8_max_drop" and rule.passed is passed and decision.promote is passed
        assert rule.detail.startswith(f"OpenVINO INT8 AP50_95 {int8_ap:.4f} vs FP32 {fp32_ap:.4f}")


def test_load_model_opens_an_ir_for_predict(exported: dict[str, Path], coco128_dir: Path, tmp_path: Path) -> None:
    """``yolox predict --weights model.xml`` on a folder of images: through load_model, like an .onnx."""
    from typer.testing import CliRunner

    from yolox.cli import app
    from yolox.inference import OpenVinoBackend, load_model

    backend, meta = load_model(exported["xml"])
    assert isinstance(backend, OpenVinoBackend) and meta.name == "yolox-nano" and meta.input_size == SIZE
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[:3]:
        shutil.copy(path, folder / path.name)
    result = CliRunner().invoke(app, ["predict", "--weights", str(exported["xml"]), "--source", str(folder),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    images = json.loads((tmp_path / "out" / "predictions.json").read_text())["images"]
    assert len(images) == 3 and sum(len(i["detections"]) for i in images) > 0


def test_export_format_option_checked(tmp_path: Path) -> None:
    """``yolox export --format``: onnx or openvino, repeated or comma-separated; another is refused naming it."""
    from typer.testing import CliRunner

    from yolox.cli import app

    result = CliRunner().invoke(app, ["export", "--weights", str(tmp_path / "none.pth"), "--format", "onnx,tflite"])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "--format" in str(result.exception) and "export.formats" in str(result.exception)
    assert PipelineParams.model_validate({"export": {"formats": ["openvino", "onnx"]}}).export.formats == [
        "openvino", "onnx"]


def test_benchmark_has_openvino_rows(nano_pth: Path, coco128_dir: Path) -> None:
    """``yolox benchmark`` on a checkpoint: OpenVINO FP32 and INT8 rows measured as the others (AP, latency,
    throughput, size of the .xml and .bin)."""
    from yolox.export.benchmark import run_benchmark

    params = PipelineParams.model_validate({"export": {"benchmark_warmup": 0, "benchmark_repeats": 2,
                                                       "benchmark_batch": 2, "int8_calibration_images": 4}})
    result = run_benchmark(params, str(nano_pth), str(coco128_dir), "train", "yolox-nano", img_size=160,
                           formats=["onnx-raw", "openvino", "openvino-int8"], max_images=4)
    rows = {r.format: r for r in result.rows}
    assert list(rows) == ["onnx-raw", "openvino", "openvino-int8"]
    for row in rows.values():
        assert row.status == "ok" and row.AP50_95 is not None and row.p50_ms > 0 and row.images_per_s > 0
    assert abs(rows["openvino"].AP50_95 - rows["onnx-raw"].AP50_95) <= 0.002
    assert rows["openvino"].path.endswith("raw.xml") and rows["openvino-int8"].path.endswith("raw.int8.xml")
    assert rows["openvino-int8"].size_mb < rows["openvino"].size_mb
    assert "openvino" in result.machine


@pytest.mark.slow
def test_export_stage_openvino_and_the_gate(coco128_dir: Path, nano_pth: Path, tmp_path: Path) -> None:
    """The export stage with ``export.formats: [onnx, openvino]`` and ``export.int8``: the IR checked against
    PyTorch, its INT8 IR's AP beside the FP32 IR's on the prepared val split with its val-set id; logged to the run
    under ``openvino/``; the gate reads the figures from the version's tags, and measures them again from the
    logged IRs when it gates on another val set.

    Run in a fresh process (spawn), as ``yolox export`` and ``yolox pipeline`` run it: in the long-lived pytest
    process, after the data, evaluate and export tests before it, this path ended the whole run with a segmentation
    fault (no Python frame in it; alone, or in its own process, it passes). Found on 2026-12-07 and not explained
    yet: a crash in a fresh process still fails this test (a negative exit code)."""
    import multiprocessing

    from helpers.openvino_stage import export_stage_openvino_and_the_gate

    proc = multiprocessing.get_context("spawn").Process(
        target=export_stage_openvino_and_the_gate, args=(str(coco128_dir), str(nano_pth), str(tmp_path)))
    proc.start()
    proc.join(900)
    assert proc.exitcode == 0, f"the export stage with OpenVINO ended with exit code {proc.exitcode} (see stderr)"
