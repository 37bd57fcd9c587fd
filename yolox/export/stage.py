"""The export stage: ONNX checked against PyTorch with ONNX Runtime, and optionally an OpenVINO IR checked the same
way (``export.formats``), INT8 models (ONNX Runtime, OpenVINO) and a TensorRT engine, each with its AP on the val
split (:class:`ExportedModel`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from yolox.config import PipelineParams
from yolox.data.records import load_prepared, val_set_id
from yolox.data.sources import list_images
from yolox.errors import ConfigError, DataError
from yolox.evaluate.coco_eval import evaluate as coco_evaluate
from yolox.export import tensorrt
from yolox.export.onnx_export import check_onnx, export_onnx
from yolox.export.openvino import convert_onnx, ir_paths, quantize_ir
from yolox.export.quantize import quantize_int8
from yolox.export.tensorrt import (
    TensorRTBackend,
    build_config_path,
    build_config_tags,
    build_engine,
    profile_needs,
    read_build_config,
)
from yolox.files import sha256_file
from yolox.inference import OnnxBackend, OpenVinoBackend, load_torch_model, model_input_size
from yolox.models.meta import ModelMeta
from yolox.tracking.run import attach

log = logging.getLogger("yolox.export")


@dataclass(frozen=True)
class Int8Model:
    """The INT8 model of an export and its AP50:95 beside the FP32 model's, both on the val set ``val_set``
    (:func:`yolox.data.records.val_set_id`: the gate re-measures them when it gates on another)."""

    onnx: Path
    fp32_ap: float
    int8_ap: float
    num_images: int
    calibration_images: int
    val_set: str = ""

    @property
    def drop(self) -> float:
        return self.fp32_ap - self.int8_ap


@dataclass(frozen=True)
class OpenVinoModel:
    """The OpenVINO IR of an export (``export.formats``: ``openvino``), its check against PyTorch (OpenVINO, f32:
    ``check`` passed, failed or skipped, ``max_abs_diff`` as :class:`yolox.export.onnx_export.ExportResult`'s), and
    with ``export.int8`` its INT8 IR (NNCF) and the AP50:95 of both IRs on the val set ``val_set``
    (:func:`yolox.data.records.val_set_id`: the gate re-measures them when it gates on another)."""

    xml: Path
    check: str
    max_abs_diff: float | None = None
    int8_xml: Path | None = None
    fp32_ap: float | None = None
    int8_ap: float | None = None
    num_images: int = 0
    calibration_images: int = 0
    val_set: str = ""

    @property
    def drop(self) -> float | None:
        return None if self.fp32_ap is None or self.int8_ap is None else self.fp32_ap - self.int8_ap


@dataclass(frozen=True)
class EngineModel:
    """A TensorRT engine, its build config (:func:`yolox.export.tensorrt.read_build_config`) and its AP50:95
    beside its ONNX model's, both measured on the val set ``val_set`` (:func:`yolox.registry.gate.val_set_id`)."""

    path: Path
    config: dict[str, Any]
    ap: float
    onnx_ap: float
    val_set: str
    num_images: int

    @property
    def precision(self) -> str:
        return str(self.config["precision"])


@dataclass(frozen=True)
class ExportedModel:
    """An exported ONNX model and its check against PyTorch (``check``: passed, failed or skipped); its INT8 model
    (``export.int8``) and TensorRT engine (``export.tensorrt``; ``tensorrt`` says built or "skipped: why")."""

    onnx: Path
    meta: ModelMeta
    check: str
    max_abs_diff: float | None
    num_check_images: int
    sample_image: Path | None
    engine: Path | None = None
    int8: Int8Model | None = None
    tensorrt: str | None = None
    serving: Path | None = None
    """The end2end graph the registered model serves from (``export.serve_end2end``), or None."""
    engine_eval: EngineModel | None = None
    """The TensorRT engine's AP beside its ONNX model's on the val split (a GPU and TensorRT present), or None."""
    openvino: OpenVinoModel | None = None
    """The OpenVINO IR (``export.formats`` lists ``openvino``), its check and its INT8 IR's figures, or None."""

    @property
    def variant(self) -> str:
        return self.meta.variant

    @property
    def passed(self) -> bool:
        return self.check == "passed"


def baked_thresholds(params: PipelineParams, conf_thresh: float | None = None, nms_thresh: float | None = None,
                     max_det: int | None = None) -> tuple[float, float, int]:
    """The thresholds an end2end export bakes in: those of the section ``export.thresholds`` names (``serve`` or
    ``eval``), each overridden when given (``yolox export --conf/--nms/--max-det``)."""
    section = params.serve if params.export.thresholds == "serve" else params.eval
    return (section.conf_thresh if conf_thresh is None else float(conf_thresh),
            section.nms_thresh if nms_thresh is None else float(nms_thresh),
            section.max_det if max_det is None else int(max_det))


def export(params: PipelineParams, weights: str | Path | None = None, out: str | Path | None = None,
           img_size: int | None = None, model_name: str | None = None, check_images: str | Path | None = None,
           check: bool = True, run_id: str | None = None, variant: str | None = None,
           conf_thresh: float | None = None, nms_thresh: float | None = None, max_det: int | None = None,
           prepared_dir: str | Path | None = None) -> ExportedModel:
    """Export ``weights`` (default ``<train.output_dir>/last.pth``) to ONNX (``out``, default
    ``export.onnx_path``) as ``variant`` (default ``export.variant``; an end2end graph bakes in
    :func:`baked_thresholds`) at the model's own input size unless ``img_size`` says otherwise, and compare it with
    PyTorch with ONNX Runtime on real images: ``check_images`` (a folder), else the prepared dataset's images
    when there is one; with neither, or ``check=False``, the check is skipped (``check="skipped"``, logged).

    With ``openvino`` in ``export.formats``: the OpenVINO IR converted from that ONNX (``<stem>.xml`` + ``.bin``),
    checked against PyTorch the same way with OpenVINO (:func:`export_openvino`). With ``export.int8``: for ONNX
    Runtime (``onnx`` in ``export.formats``) an INT8 model beside it (``<stem>.int8.onnx``), for OpenVINO an INT8
    IR (``<stem>.int8.xml``), each calibrated on the prepared dataset's (``prepared_dir``, default
    ``data.prepared_dir``) train images, its AP50:95 and its FP32 model's measured on its val split
    (:class:`Int8Model`, :class:`OpenVinoModel`). With ``export.tensorrt``: a TensorRT engine when a CUDA GPU and TensorRT
    are present, else ``tensorrt="skipped: <reason>"`` and the stage goes on.

    Raises:
        ConfigError: ``check_images`` given but not a folder of images; INT8 without a prepared dataset.
        ExportError: the export or the quantization failed.
    """
    ep = params.export
    variant = variant or ep.variant
    weights = str(weights or Path(params.train.output_dir) / "last.pth")
    net, meta = load_torch_model(weights, model_name)
    size = model_input_size(meta, img_size)
    folder = Path(check_images) if check_images else Path(params.data.prepared_dir) / "images"
    if check_images and not folder.is_dir():   # before the export: fail in seconds
        raise ConfigError(f"--check-images {folder}: not a folder of images")
    baked = baked_thresholds(params, conf_thresh, nms_thresh, max_det) if variant == "end2end" else (None,) * 3
    path = export_onnx(net, Path(out or ep.onnx_path), size, meta.names, meta.name, ep.opset, ep.dynamic_batch,
                       ep.simplify, variant, *baked, dynamic_hw=ep.dynamic_hw and variant != "raw")
    serving = None
    if ep.serve_end2end and variant != "end2end":  # the graph serving answers from: serve.* baked in
        sp = params.serve
        serving = export_onnx(net, path.with_suffix(".end2end.onnx"), size, meta.names, meta.name, ep.opset,
                              ep.dynamic_batch, ep.simplify, "end2end", sp.conf_thresh, sp.nms_thresh, sp.max_det,
                              dynamic_hw=ep.dynamic_hw)

    # the exported model's facts, as its metadata says (the size exported at, the variant)
    meta = OnnxBackend(path).meta or replace(meta, input_size=size)
    images = list_images(folder)[: ep.check_images] if check and folder.is_dir() else []
    if not images:
        why = "check disabled" if not check else f"no images at {folder} (pass --check-images DIR)"
        log.warning("ONNX check against PyTorch skipped: %s", why)
        result = ExportedModel(path, meta, "skipped", None, 0, None, serving=serving)
    else:
        checks = [check_onnx(net, p, images, size, ep.max_abs_diff, max_score_diff=ep.max_score_diff,
                             max_box_diff=ep.max_box_diff) for p in (path, serving) if p is not None]
        c = checks[0]
        result = ExportedModel(path, meta, "passed" if all(x.passed for x in checks) else "failed", c.max_abs_diff,
                               c.num_check_images, images[0], serving=serving)
    prepared = Path(prepared_dir or params.data.prepared_dir)
    if ep.int8 and "onnx" in ep.formats:
        result = replace(result, int8=export_int8(params, path, size, prepared))
    if "openvino" in ep.formats:
        result = replace(result, openvino=export_openvino(params, net, path, images, size, prepared))
    if ep.tensorrt:
        reason = tensorrt.tensorrt_unavailable_reason()   # through the module: a test stands in for a GPU
        if reason:
            log.warning("TensorRT engine skipped: %s", reason)
            result = replace(result, tensorrt=f"skipped: {reason}")
        else:
            calib = _train_images(prepared, ep.int8_calibration_images) if ep.tensorrt_precision == "int8" else []
            engine = build_engine(path, path.with_suffix(".engine"), size, precision=ep.tensorrt_precision,
                                  calibration_images=calib, sizes=ep.tensorrt_sizes,
                                  timing_cache=ep.tensorrt_timing_cache, needs=profile_needs(params),
                                  keep_float=ep.int8_keep_float)
            result = replace(result, engine=engine, tensorrt="built",
                             engine_eval=evaluate_engine(params, engine, path, size, prepared))
    run = attach(params, run_id)
    if run is not None:
        if result.max_abs_diff is not None:
            run.log_metrics({"export/max_abs_diff": result.max_abs_diff})

        run.set_tags({"export_check": result.check, "export_variant": variant, "onnx_sha256": sha256_file(path),
                      **({"tensorrt": result.tensorrt} if result.tensorrt else {})})
        run.log_artifact(path, "onnx")
        if serving is not None:
            run.log_artifact(serving, "onnx")
        if result.engine is not None:     # an engine runs only where it was built: its config goes with it

            run.set_tags(build_config_tags(read_build_config(result.engine)))
            run.log_artifact(result.engine, "tensorrt")
            run.log_artifact(build_config_path(result.engine), "tensorrt")
        if (e := result.engine_eval) is not None:
            run.log_metrics({"export/tensorrt_AP50_95": e.ap, "export/tensorrt_onnx_AP50_95": e.onnx_ap})
            run.set_tags({"tensorrt_val_set": e.val_set})
        if result.int8 is not None:
            run.log_metrics({"export/int8_AP50_95": result.int8.int8_ap, "export/fp32_AP50_95": result.int8.fp32_ap,
                             "export/int8_ap_drop": result.int8.drop})
            run.log_artifact(result.int8.onnx, "onnx")
        if (ov := result.openvino) is not None:
            _log_openvino(run, ov)
    return result


def _log_openvino(run: Any, ov: OpenVinoModel) -> None:
    """The OpenVINO figures (metrics ``export/openvino_*``), check (tag ``openvino_check``) and IRs (artifacts
    under ``openvino/``, each ``.xml`` with its ``.bin``) of an export, logged to ``run``."""
    run.set_tags({"openvino_check": ov.check})
    metrics = {"export/openvino_max_abs_diff": ov.max_abs_diff}
    if ov.int8_xml is not None:
        metrics.update({"export/openvino_int8_AP50_95": ov.int8_ap, "export/openvino_fp32_AP50_95": ov.fp32_ap,
                        "export/openvino_int8_ap_drop": ov.drop})
    run.log_metrics({k: v for k, v in metrics.items() if v is not None})
    for xml in (ov.xml, ov.int8_xml):
        if xml is not None:
            for path in ir_paths(xml):
                run.log_artifact(path, "openvino")


def export_openvino(params: PipelineParams, net: Any, onnx_path: Path, images: list[Path], size: int,
                    prepared: Path) -> OpenVinoModel:
    """The OpenVINO IR of ``onnx_path`` (``<stem>.xml`` + ``.bin``: :func:`yolox.export.openvino.convert_onnx`),
    checked against PyTorch (``net``) on ``images`` as the ONNX model is (:func:`check_onnx` with
    :class:`~yolox.inference.OpenVinoBackend`; skipped without images); with ``export.int8`` also its INT8 IR
    (``<stem>.int8.xml``: :func:`yolox.export.openvino.quantize_ir`, ``export.int8_*`` params) calibrated on the
    prepared train images, and the AP50:95 of both IRs on the prepared val split (``eval.*`` protocol).

    Raises:
        ConfigError: INT8 without a prepared dataset. ExportError: the conversion or the quantization failed.
    """
    ep = params.export
    xml = convert_onnx(onnx_path, onnx_path.with_suffix(".xml"))
    result = OpenVinoModel(xml, "skipped")
    if images:
        c = check_onnx(net, xml, images, size, ep.max_abs_diff, max_score_diff=ep.max_score_diff,
                       max_box_diff=ep.max_box_diff, backend=OpenVinoBackend(xml), label="OpenVINO")
        result = replace(result, check="passed" if c.passed else "failed", max_abs_diff=c.max_abs_diff)
    else:
        log.warning("OpenVINO check against PyTorch skipped: no check images")
    if not ep.int8:
        return result
    calib = _train_images(prepared, ep.int8_calibration_images)
    int8_xml = quantize_ir(xml, onnx_path.with_suffix(".int8.xml"), calib, size,
                           keep_float=ep.openvino_int8_keep_float)
    val = load_prepared(prepared, "val")
    fp32 = coco_evaluate(OpenVinoBackend(xml), val, size, params.eval, progress=False)
    int8 = coco_evaluate(OpenVinoBackend(int8_xml), val, size, params.eval, progress=False)
    result = replace(result, int8_xml=int8_xml, fp32_ap=fp32.metrics["AP50_95"], int8_ap=int8.metrics["AP50_95"],
                     num_images=int8.num_images, calibration_images=len(calib), val_set=val_set_id(val))
    log.info("OpenVINO INT8 %s: AP50:95 %.4f (FP32 IR %.4f, drop %.4f) on %d val images", int8_xml.name,
             result.int8_ap, result.fp32_ap, result.drop, result.num_images)
    return result


def _train_images(prepared: Path, n: int) -> list[Path]:
    """The first ``n`` train images of a prepared dataset (calibration). Raises ConfigError without one."""
    try:
        records = load_prepared(prepared, "train").records
    except Exception as err:  # noqa: BLE001 - DataError or a missing file: say what to do
        raise ConfigError(f"INT8/TensorRT calibration needs a prepared dataset at {prepared} ({err}): run "
                          "yolox prepare first, or set export.int8: false") from None
    return [r.path for r in records[:n]]


def evaluate_engine(params: PipelineParams, engine: Path, onnx_path: Path, size: int, prepared: Path
                    ) -> EngineModel | None:
    """AP50:95 of a TensorRT engine and of its ONNX model on the prepared val split (``eval.*``, the one
    evaluator), or None (logged) without a prepared val split.

    Raises:
        ExportError: the engine cannot run here (another GPU or TensorRT version: its build config says).
    """
    try:
        val = load_prepared(prepared, "val")
    except (DataError, OSError) as err:
        log.warning("TensorRT engine not evaluated: no prepared val split at %s (%s)", prepared, err)
        return None
    backend = TensorRTBackend(engine, onnx_path)
    ap = coco_evaluate(backend, val, size, params.eval, progress=False).metrics["AP50_95"]
    onnx_ap = coco_evaluate(OnnxBackend(onnx_path), val, size, params.eval, progress=False).metrics["AP50_95"]
    log.info("TensorRT %s engine %s: AP50:95 %.4f (its ONNX model %.4f) on %d val images", backend.build["precision"],
             engine.name, ap, onnx_ap, len(val.records))
    return EngineModel(engine, dict(backend.build), ap, onnx_ap, val_set_id(val), len(val.records))


def export_int8(params: PipelineParams, onnx_path: Path, size: int, prepared: Path) -> Int8Model:
    """Quantize ``onnx_path`` to INT8 (:func:`yolox.export.quantize.quantize_int8`, ``export.int8_*`` params)
    calibrated on the prepared train images, and measure the AP50:95 of both models on the prepared val split
    (``eval.*`` protocol; an end2end graph's detections are its baked ones).

    Raises:
        ConfigError: no prepared dataset. ExportError: the quantization failed.
    """
    ep = params.export
    calib = _train_images(prepared, ep.int8_calibration_images)
    int8_path = quantize_int8(onnx_path, onnx_path.with_suffix(".int8.onnx"), calib, size,
                              ep.int8_calibration_method, keep_float=ep.int8_keep_float)
    val = load_prepared(prepared, "val")
    fp32 = coco_evaluate(OnnxBackend(onnx_path), val, size, params.eval, progress=False)
    int8 = coco_evaluate(OnnxBackend(int8_path), val, size, params.eval, progress=False)
    result = Int8Model(int8_path, fp32.metrics["AP50_95"], int8.metrics["AP50_95"], int8.num_images, len(calib),
                       val_set_id(val))
    log.info("INT8 %s: AP50:95 %.4f (FP32 %.4f, drop %.4f) on %d val images", int8_path.name, result.int8_ap,
             result.fp32_ap, result.drop, result.num_images)
    return result
