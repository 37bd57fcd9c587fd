"""Bad-input matrix (issue 11 item 5), export variants / INT8 / benchmark: each case asserts the exact outcome
(the reported skip and its reason, or the error text and exit code) and that the good items of the same input
survive. One tiny exported model (random 2-class yolox-nano at 128 px) serves the model cases."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from yolox.errors import CheckpointError, ExportError

SIDE = 128


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from yolox.export.onnx_export import export_onnx
    from yolox.models.build import build_model

    torch.manual_seed(0)
    model = build_model("yolox-nano", num_classes=2).eval()
    d = tmp_path_factory.mktemp("tiny")
    return {"model": model,
            "raw": export_onnx(model, d / "raw.onnx", SIDE, ["cat", "dog"], "yolox-nano", simplify=False),
            "end2end": export_onnx(model, d / "e2e.onnx", SIDE, ["cat", "dog"], "yolox-nano", simplify=False,
                                   variant="end2end", conf_thresh=0.25, nms_thresh=0.45, max_det=10)}


@pytest.fixture(scope="module")
def good_images(coco128_dir: Path) -> list[Path]:
    return sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[:3]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    from yolox.cli import run

    monkeypatch.setenv("COLUMNS", "1000")  # one message, one line

    argv = sys.argv
    sys.argv = ["yolox", *args]
    try:
        run()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        sys.argv = argv
    return code, " ".join(capsys.readouterr().err.split())


CLI_CASES = [
    pytest.param(["export", "--model", "yolox-nano", "--weights", "{W}", "--variant", "fancy"],
                 "error: --variant 'fancy': must be one of raw, decoded, end2end", id="export-unknown-variant"),
    pytest.param(["export", "--model", "yolox-nano", "--weights", "{W}", "--set", "export.variant=fancy"],
                 "export.variant: must be one of 'raw', 'decoded' or 'end2end' (got 'fancy')",
                 id="export-bad-variant-param"),
    pytest.param(["export", "--model", "yolox-nano", "--weights", "{W}", "--skip-check", "--out", "{OUT}",
                  "--set", "export.int8=true", "--set", "data.prepared_dir={NOWHERE}"],
                 "error: INT8/TensorRT calibration needs a prepared dataset at {NOWHERE}", id="export-int8-without-data"),
    pytest.param(["benchmark", "--weights", "{W}", "--formats", "pytorch,onnx-fp64", "--data", "{DATA}"],
                 "error: yolox benchmark --formats: unknown ['onnx-fp64']", id="cli-benchmark-unknown-format"),
    pytest.param(["benchmark", "--weights", "{E2E}", "--formats", "pytorch", "--data", "{DATA}"],
                 "error: yolox benchmark --formats applies to a .pth checkpoint", id="cli-benchmark-formats-of-onnx"),
]


@pytest.mark.parametrize(("args", "message"), CLI_CASES)
def test_cli_faults(args: list[str], message: str, tiny: dict[str, Path], nano_pth: Path, coco128_dir: Path,
                    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    subst = {"W": str(nano_pth), "OUT": str(tmp_path / "m.onnx"), "NOWHERE": str(tmp_path / "none"),
             "DATA": str(coco128_dir / "dataset.yaml"), "E2E": str(tiny["end2end"])}
    code, err = _cli([a.format(**subst) for a in args], capsys, monkeypatch)
    expected = message.format(**subst)
    assert code == 1 and expected in err and "Traceback" not in err
    if "int8" in " ".join(args):  # the FP32 model was exported before the INT8 step refused
        assert (tmp_path / "m.onnx").is_file() and not (tmp_path / "m.int8.onnx").exists()


def test_export_int8_unreadable_calibration_image(tiny: dict[str, Path], good_images: list[Path], tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """export-int8-unreadable-image: the bad calibration image is reported and skipped, the good ones calibrate."""
    from yolox.export.quantize import LetterboxCalibrationReader, quantize_int8

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    reader = LetterboxCalibrationReader([good_images[0], bad, *good_images[1:]], SIDE)
    assert reader.num_images == len(good_images)
    with caplog.at_level(logging.WARNING, logger="yolox.export"):
        out = quantize_int8(tiny["raw"], tmp_path / "q.onnx", [bad, *good_images], SIDE)
    assert f"INT8 calibration: skipped {bad} (not a readable image)" in caplog.text
    assert out.is_file() and {p.key: p.value for p in onnx.load(str(out)).metadata_props}["precision"] == "int8"


FAULTS = ["export-int8-no-readable-image", "export-int8-not-a-yolox-graph", "export-end2end-missing-threshold"]


@pytest.mark.parametrize("case", FAULTS)
def test_export_faults(case: str, tiny: dict[str, Path], good_images: list[Path], tmp_path: Path) -> None:
    from yolox.export.onnx_export import export_onnx
    from yolox.export.quantize import quantize_int8

    if case == "export-int8-no-readable-image":
        bad = tmp_path / "broken.png"
        bad.write_bytes(b"")
        with pytest.raises(ExportError, match=r"^INT8 calibration: none of 1 images could be read$"):
            quantize_int8(tiny["raw"], tmp_path / "q.onnx", [bad], SIDE)
    elif case == "export-int8-not-a-yolox-graph":
        node = helper.make_node("Relu", ["images"], ["output"], name="relu")
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                              [1, 3, SIDE, SIDE])],
                                  [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, SIDE, SIDE])])
        other = tmp_path / "other.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(other))
        with pytest.raises(ExportError, match="no head output convolutions .* quantize an ONNX model exported by "
                                              "yolox export"):
            quantize_int8(other, tmp_path / "q.onnx", good_images, SIDE)
    else:
        with pytest.raises(ExportError, match=r"end2end export of yolox-nano: conf, NMS IoU and max detections "
                                              r"must all be given \(got \(0.25, None, 10\)\)"):
            export_onnx(tiny["model"], tmp_path / "x.onnx", SIDE, ["cat", "dog"], "yolox-nano", variant="end2end",
                        conf_thresh=0.25, max_det=10)
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "x.onnx").exists()


def test_eval_end2end_with_other_thresholds(tiny: dict[str, Path], good_images: list[Path],
                                            caplog: pytest.LogCaptureFixture) -> None:
    """eval-end2end-other-thresholds: asking an end2end graph for thresholds it was not exported with warns once
    and gives its baked detections (filtered by the asked score), every image still answered."""
    from yolox.inference import OnnxBackend, detect

    backend = OnnxBackend(tiny["end2end"])
    frames = [cv2.imread(str(p)) for p in good_images]
    with caplog.at_level(logging.WARNING, logger="yolox.inference"):
        dets = detect(backend, frames, SIDE, 0.01, 0.65, 100)
        detect(backend, frames, SIDE, 0.01, 0.65, 100)
    assert caplog.text.count("e2e.onnx is an end2end export with conf 0.25, NMS IoU 0.45, max 10 detections baked "
                             "in; asked for conf 0.01, NMS IoU 0.65, max 100") == 1
    assert len(dets) == len(frames) and all(len(d) <= 10 and (d.scores >= 0.25).all() for d in dets)


def test_predict_raw_call_on_end2end(tiny: dict[str, Path]) -> None:
    """predict-raw-outputs-of-end2end: an end2end model asked for raw predictions names its outputs."""
    from yolox.inference import OnnxBackend

    backend = OnnxBackend(tiny["end2end"])
    with pytest.raises(CheckpointError, match=r"e2e.onnx is a 'end2end' export: its outputs are \['num_dets', "
                                              r"'boxes', 'scores', 'labels'\], not raw predictions"):
        backend(np.zeros((1, 3, SIDE, SIDE), np.float32))
    assert backend.run(np.zeros((2, 3, SIDE, SIDE), np.float32))[0].shape == (2, 1)
