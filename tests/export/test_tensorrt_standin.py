"""The TensorRT path on CPU (issue 26, item 5), against a STAND-IN for the ``tensorrt`` package
(``tests/helpers/trt_standin.py``: it records every call, fails the calls a test names, refuses a shape
outside the engine's profile, and runs the "engine" with ONNX Runtime on the buffers the backend gave it).
What is tested here is this project's side of TensorRT: the profile it plans from the batches the code feeds,
the status of every call it checks, the output buffers it sizes from the engine's shapes, the calibrator's
full batches, the routing of TensorRT's log and the build config that ties an engine to its GPU. TensorRT
itself runs in ``tests/test_gpu.py`` (``pytest -m gpu`` on a GPU machine).

Real data: the authors' nano weights (80 COCO classes) exported at 160 px, coco128 images.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers.trt_standin import FACTS, Severity, calls_named, read_address, standin_tensorrt

from yolox.config import EvalParams, PipelineParams
from yolox.errors import ConfigError, ExportError
from yolox.files import sha256_file

SIDE = 160


@pytest.fixture(scope="module")
def models(nano_model, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The authors' nano at 160 px: ``raw`` (dynamic batch, fixed side) and ``end2end`` (dynamic batch and
    side, the eval thresholds baked in: int64 labels among its outputs)."""
    from yolox.export.onnx_export import export_onnx
    from yolox.models.coco_classes import COCO_CLASSES

    net = nano_model
    folder = tmp_path_factory.mktemp("onnx")
    ev = EvalParams()
    return {"raw": export_onnx(net, folder / "raw.onnx", SIDE, COCO_CLASSES, "yolox-nano", simplify=False),
            "end2end": export_onnx(net, folder / "e2e.onnx", SIDE, COCO_CLASSES, "yolox-nano", simplify=False,
                                   variant="end2end", conf_thresh=ev.conf_thresh, nms_thresh=ev.nms_thresh,
                                   max_det=ev.max_det)}


@pytest.fixture(scope="module")
def frames(coco128_dataset) -> list[np.ndarray]:
    """The first 10 coco128 images (BGR uint8)."""
    return [cv2.imread(str(r.path)) for r in coco128_dataset.records[:10]]


@pytest.fixture
def trt(monkeypatch: pytest.MonkeyPatch):
    """The stand-in as ``tensorrt``, this machine taken for one with a GPU
    (:data:`helpers.trt_standin.FACTS`)."""
    import yolox.export.tensorrt as module

    standin = standin_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", standin)
    monkeypatch.setattr(module, "tensorrt_unavailable_reason", lambda: None)
    monkeypatch.setattr(module, "gpu_facts", lambda: dict(FACTS))
    return standin


def _build(model: Path, engine: Path, **kw):
    from yolox.export.tensorrt import build_engine

    return build_engine(model, engine, SIDE, device="cpu", **kw)   # the stand-in calibrates from host memory


def _backend(engine: Path, model: Path):
    from yolox.export.tensorrt import TensorRTBackend

    return TensorRTBackend(engine, model, device="cpu")   # the stand-in runs on host memory


def _same_detections(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.boxes, y.boxes)
        np.testing.assert_array_equal(x.scores, y.scores)
        np.testing.assert_array_equal(x.labels, y.labels)


# --- the profile: every batch the code feeds ----------------------------------------------------------------


def test_profile_covers_every_batch_the_code_feeds() -> None:
    """Plain functions, no stand-in needed: the issue's case (benchmark batch 2, AP measured in batches of
    8)."""
    from yolox.export.tensorrt import Profile, plan_profile, profile_needs

    params = PipelineParams.model_validate({"serve": {"batch_size": 4}, "export": {"benchmark_batch": 2,
                                                                                  "tensorrt_max_batch": 1}})
    needs = profile_needs(params)
    assert needs == {"latency": 1, "eval.batch_size": 8, "serve.batch_size": 4, "export.benchmark_batch": 2,
                     "export.tensorrt_max_batch": 1}
    plan = plan_profile(416, needs)
    assert plan == Profile((1, 8, 8), (416, 416, 416), needs)
    assert plan.shapes() == ((1, 3, 416, 416), (8, 3, 416, 416), (8, 3, 416, 416))
    assert plan_profile(416, needs, opt_batch=4).batch == (1, 4, 8)
    assert plan_profile(416, needs, sizes=(320, 640)).side == (320, 416, 640)
    assert plan_profile(416, needs, sizes=(320, 640), input_shape=(1, 3, 416, 416)) == \
        Profile((1, 1, 1), (416, 416, 416), needs)                      # a graph of fixed batch and side
    assert plan_profile(416, {}).batch == (1, 1, 1)
    with pytest.raises(ConfigError, match=r"export.tensorrt_sizes \(448, 640\) must hold the model's input "
                                          r"size 416, which evaluation and serving feed the engine"):
        plan_profile(416, needs, sizes=(448, 640))
    with pytest.raises(ExportError, match="the graph takes 320x320 px inputs, not the model's input size "
                                          "416"):
        plan_profile(416, needs, input_shape=(-1, 3, 320, 320))
    with pytest.raises(ConfigError, match=r"batches must be >= 1, got \{'eval.batch_size': 0\}"):
        plan_profile(416, {"eval.batch_size": 0})
    # how a batch is run: at most the profile's largest batch at a time, padded up to its smallest
    assert Profile((1, 2, 2), (416,) * 3).chunks(3) == [(0, 2, 2), (2, 3, 1)]
    assert Profile((1, 8, 8), (416,) * 3).chunks(8) == [(0, 8, 8)]
    assert Profile((4, 4, 4), (416,) * 3).chunks(6) == [(0, 4, 4), (4, 6, 4)]
    assert Profile((1, 8, 8), (320, 416, 640)).side_problem(640, 320) is None
    assert Profile((1, 8, 8), (416,) * 3).side_problem(320, 320) == (
        "takes inputs of 416 px only, not 320x320: rebuild it with export.tensorrt_sizes covering that side, "
        "or evaluate at the engine's size")


# --- the build, against the stand-in ------------------------------------------------------------------------


def test_build_sets_the_planned_profile_and_writes_the_build_config(trt, models: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    """Stand-in for TensorRT: the profile handed to ``set_shape`` and the build config beside the engine."""
    from yolox.export.tensorrt import build_config_path, build_config_tags, profile_needs

    params = PipelineParams.model_validate({"export": {"benchmark_batch": 2}})
    timing = tmp_path / "cache" / "timing.cache"
    engine = _build(models["raw"], tmp_path / "raw.engine", max_batch=2, needs=profile_needs(params),
                    timing_cache=timing)
    assert engine == tmp_path / "raw.engine"
    assert calls_named(trt, "set_shape") == [("images", (1, 3, SIDE, SIDE), (8, 3, SIDE, SIDE),
                                              (8, 3, SIDE, SIDE))]
    assert calls_named(trt, "build_serialized_network") == [(["FP16"],)]
    assert calls_named(trt, "create_timing_cache") == [(b"",)] and timing.read_bytes() == b"+stand-in timings"
    config = json.loads(build_config_path(engine).read_text())
    assert config["profile"] == {"batch": [1, 8, 8], "side": [SIDE] * 3,
                                 "needs": {"max_batch": 2, **profile_needs(params)}}
    assert config["engine_sha256"] == sha256_file(engine)
    assert config["onnx_sha256"] == sha256_file(models["raw"])
    assert {k: config[k] for k in FACTS} == FACTS
    assert (config["precision"], config["flags"], config["calibration"]) == ("fp16", ["FP16"], None)
    assert (config["format"], config["engine"], config["onnx"], config["input"]) == (
        "yolox-tensorrt-build/1", "raw.engine", "raw.onnx", "images")
    assert build_config_tags(config) == {
        "tensorrt_precision": "fp16", "tensorrt_version": "10.8.0.43", "tensorrt_cuda": "12.8",
        "tensorrt_gpu": "Stand-in GPU 24GB", "tensorrt_compute_capability": "8.9", "tensorrt_batch": "1/8/8",
        "tensorrt_side": f"{SIDE}/{SIDE}/{SIDE}", "tensorrt_engine_sha256": sha256_file(engine)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "raw.engine", "raw.engine.json"]
    # a second build starts from the saved timing cache
    _build(models["raw"], tmp_path / "raw.engine", max_batch=2, timing_cache=timing)
    assert calls_named(trt, "create_timing_cache")[-1] == (b"+stand-in timings",)
    # a cache TensorRT does not take (another GPU, another TensorRT) is replaced by a new one, not fatal
    trt.calls.clear()
    trt.fail_once.add("set_timing_cache")
    _build(models["raw"], tmp_path / "raw.engine", max_batch=2, timing_cache=timing)
    assert calls_named(trt, "create_timing_cache") == [(b"+stand-in timings+stand-in timings",), (b"",)]
    assert calls_named(trt, "set_timing_cache") == [(False,), (False,)]
    assert timing.read_bytes() == b"+stand-in timings"


@pytest.mark.parametrize(("call", "message"), [
    ("parse", "TensorRT could not parse {onnx}: In node 3 (Conv): stand-in: unsupported operator"),
    ("set_timing_cache", "{timing}: TensorRT set_timing_cache failed"),
    ("create_timing_cache", "{timing}: TensorRT create_timing_cache returned nothing"),
    ("add_optimization_profile", ("{onnx}: TensorRT add_optimization_profile failed for images batch "
                                  f"(1, 8, 8), side ({SIDE}, {SIDE}, {SIDE})")),
    ("build_serialized_network", ("TensorRT failed to build an engine from {onnx} (TensorRT: stand-in: no "
                                  "engine (build failed))")),
])
def test_a_failed_build_call_is_an_export_error_naming_it(call: str, message: str, trt,
                                                          models: dict[str, Path], tmp_path: Path) -> None:
    """Stand-in for TensorRT, told to fail one call: ExportError naming it, and no engine or build config."""
    trt.fail.add(call)
    timing = tmp_path / "timing.cache"
    with pytest.raises(ExportError) as err:
        _build(models["raw"], tmp_path / "raw.engine", timing_cache=timing)
    assert str(err.value) == message.format(onnx=models["raw"], timing=timing)
    assert list(tmp_path.iterdir()) == []


def test_tensorrt_log_goes_to_the_yolox_export_logger(trt, models: dict[str, Path], tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Stand-in for TensorRT whose builder logs one message per severity: each reaches ``yolox.export`` at its
    level, and the errors are named by the ExportError of a failed build."""
    trt.build_messages = [(Severity.INTERNAL_ERROR, "assertion failed"), (Severity.ERROR, "out of memory"),
                          (Severity.WARNING, "weights out of FP16 range"), (Severity.INFO, "engine built"),
                          (Severity.VERBOSE, "tactic 7")]
    caplog.set_level(1, logger="yolox.export")
    _build(models["raw"], tmp_path / "raw.engine")
    routed = [(r.levelno, r.getMessage()) for r in caplog.records
              if r.name == "yolox.export" and r.getMessage().startswith("TensorRT: ")]
    assert routed == [(logging.CRITICAL, "TensorRT: assertion failed"),
                      (logging.ERROR, "TensorRT: out of memory"),
                      (logging.WARNING, "TensorRT: weights out of FP16 range"),
                      (logging.DEBUG, "TensorRT: engine built"), (5, "TensorRT: tactic 7")]
    trt.fail.add("build_serialized_network")
    with pytest.raises(ExportError, match=r"\(TensorRT: assertion failed; out of memory; stand-in: no engine "
                                          r"\(build failed\)\)$"):
        _build(models["raw"], tmp_path / "other.engine")
    # one logger for the process (TensorRT keeps the first it is given): every builder and runtime gets it
    _backend(tmp_path / "raw.engine", models["raw"])
    loggers = [c[1] for c in trt.calls if c[0] in ("Builder", "Runtime")]
    assert len(loggers) == 3 and all(lg is loggers[0] for lg in loggers)


# --- running an engine: buffers, batches, status ------------------------------------------------------------


def test_engine_runs_every_batch_in_runs_its_profile_takes(trt, models: dict[str, Path],
                                                           frames: list[np.ndarray], coco128_dataset,
                                                           tmp_path: Path) -> None:
    """Stand-in for TensorRT (its engine is ONNX Runtime on the backend's buffers, and it refuses a shape
    outside the profile): an engine built for batches of 1..2, fed 5 images by detect() and batches of 8 by
    the evaluator (the issue's benchmark defect), gives ONNX Runtime's detections and AP exactly."""
    from yolox.evaluate.coco_eval import evaluate
    from yolox.inference import OnnxBackend, detect

    engine = _build(models["raw"], tmp_path / "raw.engine", max_batch=2)
    backend, ort = _backend(engine, models["raw"]), OnnxBackend(models["raw"])
    trt.calls.clear()
    got = detect(backend, frames[:5], SIDE)
    _same_detections(got, detect(ort, frames[:5], SIDE))
    assert sum(len(d.scores) for d in got) > 0
    assert calls_named(trt, "set_input_shape") == [("images", (2, 3, SIDE, SIDE))] * 2 + [
        ("images", (1, 3, SIDE, SIDE))]
    run = [c[0] for c in trt.calls if c[0] in ("set_input_shape", "set_tensor_address", "execute_async_v3")]
    assert run == ["set_input_shape", "set_tensor_address", "set_tensor_address", "execute_async_v3"] * 3
    assert calls_named(trt, "get_tensor_shape") == [("output",)] * 3   # the buffers are sized from the engine
    dataset = type(coco128_dataset)(coco128_dataset.names, coco128_dataset.category_ids,
                                    coco128_dataset.records[:10])
    params = EvalParams(batch_size=8)
    assert evaluate(backend, dataset, SIDE, params, progress=False).metrics == \
        evaluate(ort, dataset, SIDE, params, progress=False).metrics


def test_end2end_engine_dynamic_side_and_a_fixed_batch_profile(trt, models: dict[str, Path],
                                                               frames: list[np.ndarray],
                                                               tmp_path: Path) -> None:
    """Stand-in for TensorRT: an end2end engine (int64 labels) over sides 128..192 gives ONNX Runtime's
    detections at 160 and 192 and refuses 224 (ConfigError naming the profile); with a fixed batch of 4 (the
    profile of a graph exported with batch 4), 6 images run as two padded runs of 4."""
    from yolox.export.tensorrt import Profile
    from yolox.inference import OnnxBackend, detect

    engine = _build(models["end2end"], tmp_path / "e2e.engine", max_batch=4, sizes=(128, 192))
    backend, ort = _backend(engine, models["end2end"]), OnnxBackend(models["end2end"])
    assert backend.profile == Profile((1, 4, 4), (128, SIDE, 192), {"max_batch": 4})
    for side in (SIDE, 192):
        _same_detections(detect(backend, frames[:6], side), detect(ort, frames[:6], side))
    with pytest.raises(ConfigError, match=f"{engine} takes inputs of 128..192 px only, not 224x224"):
        detect(backend, frames[:1], 224)
    with pytest.raises(ConfigError, match="takes inputs of 128..192 px only, not 256x256"):
        backend.check_size(256)
    backend.profile = Profile((4, 4, 4), (128, SIDE, 192))
    trt.calls.clear()
    _same_detections(detect(backend, frames[:6], SIDE), detect(ort, frames[:6], SIDE))
    assert calls_named(trt, "set_input_shape") == [("images", (4, 3, SIDE, SIDE))] * 2


@pytest.mark.parametrize("call", ["set_input_shape", "set_tensor_address", "execute_async_v3"])
def test_a_failed_run_call_is_an_export_error_naming_it(call: str, trt, models: dict[str, Path],
                                                        frames: list[np.ndarray], tmp_path: Path) -> None:
    """Stand-in for TensorRT whose ``call`` returns False: ExportError naming the engine and the call, never
    the uninitialised output buffers."""
    from yolox.inference import preprocess

    engine = _build(models["raw"], tmp_path / "raw.engine")
    backend = _backend(engine, models["raw"])
    batch = preprocess(frames[:2], SIDE)[0]
    trt.fail.add(call)
    with pytest.raises(ExportError, match=rf"^{engine}: TensorRT {call}\(?.* failed"):
        backend.run(batch)
    trt.fail.clear()
    assert backend.run(batch)[0].shape == (2, 525, 85)


@pytest.mark.parametrize(("call", "message"), [
    ("deserialize_cuda_engine", ("{engine}: TensorRT deserialize_cuda_engine returned nothing (TensorRT: "
                                 "stand-in: the engine plan is invalid or of another version): rebuild the "
                                 "engine with this TensorRT version on this GPU")),
    ("create_execution_context", "{engine}: TensorRT create_execution_context returned nothing"),
])
def test_a_failed_load_call_is_an_export_error_naming_it(call: str, message: str, trt,
                                                         models: dict[str, Path], tmp_path: Path) -> None:
    engine = _build(models["raw"], tmp_path / "raw.engine")
    trt.fail.add(call)
    with pytest.raises(ExportError) as err:
        _backend(engine, models["raw"])
    assert str(err.value) == message.format(engine=engine)


def test_an_output_whose_shape_depends_on_the_data_is_refused(trt, models: dict[str, Path],
                                                              frames: list[np.ndarray],
                                                              tmp_path: Path) -> None:
    from yolox.inference import preprocess

    engine = _build(models["raw"], tmp_path / "raw.engine")
    backend = _backend(engine, models["raw"])
    trt.data_dependent.add("output")
    with pytest.raises(ExportError, match=r"output 'output' has shape \(-1, -1, -1\) after set_input_shape"
                                          rf"\(1, 3, {SIDE}, {SIDE}\): a shape that depends on the data"):
        backend.run(preprocess(frames[:1], SIDE)[0])
    assert calls_named(trt, "execute_async_v3") == []


# --- INT8 calibration: only full batches of real images -----------------------------------------------------


def test_calibration_batches_are_full_and_padded_with_real_images(coco128_dataset, tmp_path: Path) -> None:
    """Plain functions and the calibrator class over a stand-in base class: 3 images in a batch of 8 fill it
    with images 0, 1, 2, 0, 1, 2, 0, 1; 10 in batches of 4 end with 8, 9, 0, 1; the calibrator hands TensorRT
    exactly those bytes, then the end; an unreadable file is skipped."""
    from yolox.export.tensorrt import _entropy_calibrator, calibration_set
    from yolox.inference import preprocess

    paths = [r.path for r in coco128_dataset.records[:10]]
    letterboxed = preprocess([cv2.imread(str(p)) for p in paths], SIDE)[0]
    few = calibration_set(paths[:3], SIDE, 8)
    assert (few.num_images, few.padded, few.batch_size, len(few.batches)) == (3, 5, 8, 1)
    np.testing.assert_array_equal(few.batches[0], letterboxed[[0, 1, 2, 0, 1, 2, 0, 1]])
    many = calibration_set(paths, SIDE, 4)
    assert (many.num_images, many.padded, len(many.batches)) == (10, 2, 3)
    np.testing.assert_array_equal(np.concatenate(many.batches), letterboxed[[*range(10), 0, 1]])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    skipped = calibration_set([paths[0], broken, paths[1]], SIDE, 2)
    np.testing.assert_array_equal(skipped.batches[0], letterboxed[[0, 1]])

    cal = _entropy_calibrator(standin_tensorrt(), few, "images", tmp_path / "calib", "key", device="cpu")
    assert cal.get_batch_size() == 8
    assert cal.get_batch(["other"]) is None     # not the model's input: refused (logged), nothing handed over
    (ptr,) = cal.get_batch(["images"])
    np.testing.assert_array_equal(read_address(ptr, (8, 3, SIDE, SIDE), np.float32), few.batches[0])
    assert cal.get_batch(["images"]) is None and cal.served == [0]


def test_int8_build_calibrates_on_full_batches_and_reuses_only_its_own_cache(
        trt, models: dict[str, Path], coco128_dataset, tmp_path: Path) -> None:
    """Stand-in for TensorRT (its calibration reads every batch the calibrator hands over, from its address):
    3 images with a profile up to 8 calibrate in one batch of 3; 4 paths of which one is unreadable give one
    batch of 4 whose last slot repeats image 0; the calibration cache is reused for the same model and images
    only."""
    from yolox.export.tensorrt import build_config_path
    from yolox.inference import preprocess

    paths = [r.path for r in coco128_dataset.records[:6]]
    letterboxed = preprocess([cv2.imread(str(p)) for p in paths], SIDE)[0]
    engine = tmp_path / "raw.engine"
    with pytest.raises(ExportError, match="TensorRT INT8 needs calibration images"):
        _build(models["raw"], engine, precision="int8")
    _build(models["raw"], engine, max_batch=8, precision="int8", calibration_images=paths[:3])
    assert calls_named(trt, "set_calibration_profile") == [({"images": ((3, 3, SIDE, SIDE),) * 3},)]
    assert calls_named(trt, "build_serialized_network") == [(["FP16", "INT8"],)]
    assert len(trt.calibrated) == 1
    np.testing.assert_array_equal(trt.calibrated[0], letterboxed[:3])
    config = json.loads(build_config_path(engine).read_text())
    assert (config["precision"], config["flags"]) == ("int8", ["FP16", "INT8"])
    assert config["calibration"] == {"images": 3, "batch": 3, "batches": 1, "padded": 0,
                                     "cache": "raw.calib-cache", "keep_float": [], "float_layers": 0}
    assert (tmp_path / "raw.calib-cache").read_bytes().startswith(b"yolox-calibration-cache/1 ")

    _build(models["raw"], engine, max_batch=8, precision="int8", calibration_images=paths[:3])
    assert len(calls_named(trt, "calibration_cache_used")) == 1 and len(trt.calibrated) == 1   # same: reused

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    _build(models["raw"], engine, max_batch=8, precision="int8", calibration_images=[*paths[3:6], broken])
    assert len(calls_named(trt, "calibration_cache_used")) == 1 and len(trt.calibrated) == 2   # other images
    np.testing.assert_array_equal(trt.calibrated[1], letterboxed[[3, 4, 5, 3]])
    assert json.loads(build_config_path(engine).read_text())["calibration"] == {
        "images": 3, "batch": 4, "batches": 1, "padded": 1, "cache": "raw.calib-cache", "keep_float": [],
        "float_layers": 0}

    trt.fail.add("set_calibration_profile")
    with pytest.raises(ExportError, match=f"{models['raw']}: TensorRT set_calibration_profile failed"):
        _build(models["raw"], engine, max_batch=8, precision="int8", calibration_images=paths[:3])


def test_int8_keeps_float_what_the_onnx_runtime_int8_model_keeps_float(trt, models: dict[str, Path],
                                                                      coco128_dataset,
                                                                      tmp_path: Path) -> None:
    """Stand-in for TensorRT (one layer per ONNX node, named after it): with ``export.int8_keep_float``'s
    modules, the stem's and dark2's layers and everything after the head's last convolutions are asked for
    FP16 (a preference), the rest of the backbone is not, and layers with integer outputs are left alone."""
    import onnx

    from yolox.export.quantize import float_tail
    from yolox.export.tensorrt import build_config_path

    keep = PipelineParams().export.int8_keep_float
    assert keep == ["backbone.backbone.stem", "backbone.backbone.dark2"]
    engine = _build(models["raw"], tmp_path / "raw.engine", precision="int8", keep_float=keep,
                    calibration_images=[r.path for r in coco128_dataset.records[:2]])
    kept = {name for name, dtype in calls_named(trt, "layer.precision") if dtype is trt.DataType.HALF}
    assert {name for name, _, dtype in calls_named(trt, "layer.set_output_type")} == kept
    graph = onnx.load(str(models["raw"]))
    stem_dark2 = {n.name for n in graph.graph.node if n.op_type == "Conv" and (
        "/backbone/backbone/stem/" in n.name or "/backbone/backbone/dark2/" in n.name)}
    tail = {"/model/head/Transpose", "/Sigmoid", "/Concat"}   # after the head's last convs, the sigmoid
    assert len(stem_dark2) == 9 and stem_dark2 | tail <= kept
    rest = ("dark3", "dark4", "dark5", "lateral_conv0", "C3_p4")
    assert not {n for n in kept if any(f"/{m}/" in n for m in rest)}
    shapes = {"/model/head/Shape", "/model/head/Shape_1", "/model/head/Shape_2"}   # int64 outputs: left alone
    assert shapes <= set(float_tail(graph, keep)) and not shapes & kept
    config = json.loads(build_config_path(engine).read_text())
    assert config["flags"] == ["FP16", "INT8", "PREFER_PRECISION_CONSTRAINTS"]
    assert config["calibration"]["keep_float"] == keep and config["calibration"]["float_layers"] == len(kept)
    assert calls_named(trt, "build_serialized_network")[-1] == (config["flags"],)


# --- an engine only runs where it was built -----------------------------------------------------------------


def test_an_engine_runs_only_on_the_gpu_and_tensorrt_it_was_built_with(
        trt, models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in for TensorRT: the build config names the GPU and TensorRT version; another GPU, other engine
    bytes, another ONNX model or no build config is an ExportError that says what to do."""
    import yolox.export.tensorrt as module

    engine = _build(models["raw"], tmp_path / "raw.engine")
    _backend(engine, models["raw"])   # here: loads
    monkeypatch.setattr(module, "gpu_facts", lambda: {**FACTS, "gpu": "NVIDIA A100-SXM4-80GB"})
    with pytest.raises(ExportError) as err:
        _backend(engine, models["raw"])
    assert str(err.value) == (f"{engine} was built on Stand-in GPU 24GB with TensorRT 10.8.0.43; this "
                              "machine has NVIDIA A100-SXM4-80GB with TensorRT 10.8.0.43: an engine only "
                              "runs where it was built, rebuild it here (yolox export --set "
                              "export.tensorrt=true)")
    monkeypatch.setattr(module, "gpu_facts", lambda: {**FACTS, "tensorrt": "10.9.0.34"})
    with pytest.raises(ExportError, match="with TensorRT 10.8.0.43; this machine has Stand-in GPU 24GB with "
                                          "TensorRT 10.9.0.34"):
        _backend(engine, models["raw"])
    monkeypatch.setattr(module, "gpu_facts", lambda: dict(FACTS))
    with pytest.raises(ExportError, match=f"{engine} was built from another model than {models['end2end']}"):
        _backend(engine, models["end2end"])
    engine.write_bytes(engine.read_bytes() + b"\0")
    with pytest.raises(ExportError, match=f"{engine}: not the engine {engine}.json describes"):
        _backend(engine, models["raw"])
    (tmp_path / "raw.engine.json").unlink()
    with pytest.raises(ExportError, match=f"{engine}: its build config {engine}.json is not found: rebuild"):
        _backend(engine, models["raw"])


def test_unavailable_reason_asks_for_tensorrt_10(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in ``tensorrt`` modules of two versions, on a machine taken for one with a GPU."""
    from yolox.export.tensorrt import tensorrt_unavailable_reason

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "tensorrt", standin_tensorrt("8.6.1"))
    assert tensorrt_unavailable_reason() == ("tensorrt 8.6.1 is installed; this code needs TensorRT 10 "
                                             "(pip install 'yolox[tensorrt]')")
    monkeypatch.setitem(sys.modules, "tensorrt", standin_tensorrt("10.8.0.43"))
    assert tensorrt_unavailable_reason() is None
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # import tensorrt -> ImportError
    assert tensorrt_unavailable_reason() == ("the tensorrt package is not installed "
                                             "(pip install 'yolox[tensorrt]')")
