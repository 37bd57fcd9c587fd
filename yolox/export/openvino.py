"""OpenVINO IR export of an exported ONNX model, FP32 and INT8 (NNCF post-training quantization), for the OpenVINO
CPU runtime (:class:`yolox.inference.OpenVinoBackend`).

An IR is two files, ``<stem>.xml`` (the graph) and ``<stem>.bin`` (the weights), FP32 weights
(``compress_to_fp16=False``). Its metadata is the ONNX model's (:meth:`yolox.models.meta.ModelMeta.onnx_props`: the
same JSON under ``yolox.meta`` and the same flat keys) in the IR's ``rt_info`` section
:data:`~yolox.inference.IR_SECTION`, which ``openvino.Core().read_model`` reads back, plus the sha256 of the ``.bin``
written with the ``.xml`` (:data:`~yolox.inference.IR_BIN_SHA256`): the pair is written through temp files and
renamed ``.bin`` first, then ``.xml`` (:func:`write_ir`), and a reader that finds another ``.bin`` beside the ``.xml``
(a write cut between the two renames, a copy of one half) refuses it (:func:`yolox.inference.check_ir_pair`) instead
of running the wrong weights.

INT8 (:func:`quantize_ir`): ``nncf.quantize`` on the FP32 IR (preset ``mixed``: weights symmetric int8 per channel,
activations asymmetric per tensor; fast bias correction), calibrated on real images letterboxed exactly as at
inference (:class:`yolox.export.quantize.LetterboxCalibrationReader`: the prepared train split, as the ONNX Runtime
INT8 model). The head's output convolutions' outputs and everything after them stay float, as in the ONNX Runtime
INT8 model; unlike there, the stem and dark2 need not (``export.openvino_int8_keep_float``, empty by default).
Measured (the authors' nano at 416 px, 32 calibration images of the prepared coco128 train split; AP50:95 drop
against the FP32 IR on its 17 val images / all 128 images, FP32 0.4503 / 0.3293; speed: the INT8 graph alone
against the FP32 one at batch 1, interleaved, 2 threads, load 2.3):

==========================================  ===============  ==============
kept float (besides the head's outputs)     AP drop          speed vs FP32
==========================================  ===============  ==============
nothing (the default)                       0.0050 / 0.0018  1.45x
the stem                                    0.0045 / 0.0051  1.34x
the stem and dark2 (as ONNX Runtime's)      0.0029 / 0.0055  1.31x
the stem and dark2, preset ``performance``  0.0094 / 0.0078  1.31x
nothing, preset ``performance``             0.0275 / 0.0209  1.47x
==========================================  ===============  ==============

NNCF's ranges hold the AP with the stem quantized where ONNX Runtime's calibrators do not, and OpenVINO fuses SiLU
into its int8 convolutions, which ONNX Runtime cannot (:mod:`yolox.export.quantize`). In ``yolox benchmark``
(letterbox to detections, three runs at load 1.0-1.15) the INT8 IR is 1.26x faster than the FP32 IR at batch 1
(p50; the graph alone 1.34x: letterbox and NMS are ~2.7 ms of each call) and 1.45-1.54x in images/s at batch 8.

Runtime precision: the FP32 IR runs in f32 (:class:`~yolox.inference.OpenVinoBackend`'s default), about as fast
as ONNX Runtime FP32 on this 2-core CPU (``yolox benchmark`` p50 1.02-1.06x, images/s at batch 8 0.86-0.89x). On a
CPU with bf16 (avx512_bf16, AMX) OpenVINO's own default runs an FP32 model in bf16: faster (the graph 1.32x ONNX
Runtime FP32's here; the 10.3 vs 16.4 ms of issue 25 was measured so) but not FP32: raw outputs up to 2.26 away from
PyTorch's on coco128 images (the export check allows 0.01), AP50:95 +0.0035 / -0.0027 on the sets above.
``OpenVinoBackend(path, precision="bf16")`` runs it so, on purpose only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import onnx

from yolox.errors import ExportError
from yolox.export.onnx_export import OUTPUT_NOTE, with_precision
from yolox.export.quantize import HEAD_OUTPUT_CONVS, LetterboxCalibrationReader
from yolox.files import atomic_path, sha256_file
from yolox.inference import IR_BIN_SHA256, IR_SECTION, ir_metadata
from yolox.models.meta import ModelMeta, meta_of_onnx

log = logging.getLogger("yolox.export")


def ir_paths(xml: str | Path) -> tuple[Path, Path]:
    """``(<stem>.xml, <stem>.bin)`` of an IR named by its ``.xml``."""
    xml = Path(xml)
    return xml, xml.with_suffix(".bin")


def convert_onnx(onnx_path: str | Path, xml_path: str | Path) -> Path:
    """Convert an ONNX model exported by this project (:func:`yolox.export.onnx_export.export_onnx`) to an FP32
    OpenVINO IR at ``xml_path`` (+ its ``.bin``), carrying the ONNX model's metadata (:func:`write_ir`).

    Raises:
        ExportError: the converter failed."""
    import openvino as ov

    onnx_path = Path(onnx_path)
    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as err:  # the converter raises its own types
        raise ExportError(f"OpenVINO conversion of {onnx_path} failed: {type(err).__name__}: {err}") from err
    write_ir(model, xml_path, props)
    log.info("OpenVINO IR (FP32) of %s -> %s", onnx_path.name, xml_path)
    return Path(xml_path)


def write_ir(model: Any, xml_path: str | Path, metadata: dict[str, str]) -> Path:
    """Save ``model`` (``openvino.Model``) as ``xml_path`` + its ``.bin``, FP32 weights, with ``metadata`` (str -> str)
    in its ``rt_info`` section :data:`~yolox.inference.IR_SECTION` and the ``.bin``'s sha256.

    Atomic as a pair: both files are written in a temp folder beside ``xml_path``, then renamed onto their names,
    the ``.bin`` first (:func:`yolox.files.atomic_path`); a failure, Ctrl-C or SIGTERM before the renames leaves the
    previous pair intact and no temp file behind, and the only window, between the two renames, leaves an ``.xml``
    whose recorded sha256 names another ``.bin``, which :class:`~yolox.inference.OpenVinoBackend` refuses.

    Raises:
        ExportError: the IR could not be written (or its weights file came out differently twice)."""
    import openvino as ov

    xml, bin_ = ir_paths(xml_path)
    xml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml.parent, prefix=f".{xml.stem}.ir-") as tmp:
        tmp_xml, tmp_bin = ir_paths(Path(tmp) / "model.xml")
        for k, v in metadata.items():
            model.set_rt_info(str(v), [IR_SECTION, str(k)])
        try:
            ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
            digest = sha256_file(tmp_bin)            # the weights, then the graph that names them
            model.set_rt_info(digest, [IR_SECTION, IR_BIN_SHA256])
            ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        except Exception as err:  # openvino raises RuntimeError
            raise ExportError(f"writing the OpenVINO IR {xml} failed: {err}") from err
        if sha256_file(tmp_bin) != digest:
            raise ExportError(f"writing the OpenVINO IR {xml}: its weights came out differently on a second save")
        with atomic_path(xml) as out_xml, atomic_path(bin_) as out_bin:
            os.replace(tmp_bin, out_bin)
            os.replace(tmp_xml, out_xml)
    return xml


def quantize_ir(xml_path: str | Path, out_path: str | Path, calibration_images: Sequence[str | Path],
                input_size: int, keep_float: Sequence[str] = (),
                preset: str = "mixed", fast_bias_correction: bool = True) -> Path:
    """Write an INT8 IR of the FP32 IR ``xml_path`` to ``out_path`` (+ ``.bin``, :func:`write_ir`) with
    ``nncf.quantize``, calibrated on ``calibration_images`` letterboxed to ``input_size`` (all of them), leaving
    float what :func:`float_ops` names. The metadata is the source's with ``export.precision = "int8"``.

    Args:
        preset: ``mixed`` (activations asymmetric, weights symmetric) or ``performance`` (both symmetric).
        fast_bias_correction: NNCF's fast bias correction (else the slower full one).

    Raises:
        ExportError: no readable calibration image, not a YOLOX IR, or the quantizer failed.
    """
    import nncf
    import openvino as ov

    xml_path, out_path = Path(xml_path), Path(out_path)
    model = ov.Core().read_model(str(xml_path))
    metadata = ir_metadata(model)
    metadata.pop(IR_BIN_SHA256, None)
    meta = meta_of_onnx(metadata, source=str(xml_path))
    if meta is not None:
        metadata.update(int8_props(meta))
    reader = LetterboxCalibrationReader(calibration_images, input_size)
    ignored = float_ops(model, keep_float)
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    try:
        with _nncf_on_stderr():
            quantized = nncf.quantize(model, nncf.Dataset(reader.batches), preset=presets[preset],
                                      target_device=nncf.TargetDevice.CPU, subset_size=len(reader.batches),
                                      fast_bias_correction=fast_bias_correction,
                                      ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
    except Exception as err:  # NNCF raises many types
        raise ExportError(f"INT8 quantization (NNCF) of {xml_path} failed: {type(err).__name__}: {err}") from err
    write_ir(quantized, out_path, metadata)
    log.info("OpenVINO INT8 (NNCF %s, %d calibration images, %d ops kept float) -> %s", preset, reader.num_images,
             len(ignored), out_path)
    return out_path


@contextlib.contextmanager
def _nncf_on_stderr() -> Iterator[None]:
    """NNCF's log (its ``nncf`` logger writes INFO lines, one per op it leaves unquantized, to stdout) at WARNING and
    on stderr, and its progress bars (rich, on stdout) on stderr: stdout is the commands' JSON alone."""
    logger = logging.getLogger("nncf")
    level = logger.level
    streams = [(h, h.setStream(sys.stderr)) for h in logger.handlers if isinstance(h, logging.StreamHandler)
               and not isinstance(h, logging.FileHandler)]
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        logger.setLevel(level)
        for handler, stream in streams:
            if stream is not None:
                handler.setStream(stream)


def int8_props(meta: ModelMeta) -> dict[str, str]:
    """The metadata of the INT8 model of an export whose meta is ``meta``."""
    int8 = with_precision(meta, "int8")
    return {**int8.onnx_props(), "output": OUTPUT_NOTE[int8.variant]}


def float_ops(model: Any, keep_float: Sequence[str] = ()) -> list[str]:
    """Friendly names of the ops of an OpenVINO model (converted from this project's ONNX) that stay float: all
    downstream of the head's last convolutions (:data:`yolox.export.quantize.HEAD_OUTPUT_CONVS`; the
    convolutions themselves are quantized: their inputs and weights), and the ops of the modules named in
    ``keep_float`` (dotted module names, found by the exporter's module-scoped names ``/.../backbone/stem/...``),
    as :func:`yolox.export.quantize.float_tail` does for ONNX Runtime.

    Raises:
        ExportError: the model has none of those convolutions (not a YOLOX export of this project)."""
    ops = model.get_ordered_ops()
    heads = [op for op in ops if op.get_type_name() == "Convolution"
             and any(f"/{h}." in op.get_friendly_name() for h in HEAD_OUTPUT_CONVS)]
    if not heads:
        raise ExportError("OpenVINO INT8: no head output convolutions (cls_preds/reg_preds/obj_preds) in the model: "
                          "quantize an IR converted from an ONNX model exported by yolox export")
    scopes = ["/" + k.strip(".").replace(".", "/") + "/" for k in keep_float]
    names = {op.get_friendly_name() for op in ops if any(s in op.get_friendly_name() for s in scopes)}
    seen: set[str] = set()
    todo = [t for op in heads for out in op.outputs() for t in out.get_target_inputs()]
    while todo:
        op = todo.pop().get_node()
        name = op.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        names.add(name)
        todo.extend(t for out in op.outputs() for t in out.get_target_inputs())
    return sorted(names)
