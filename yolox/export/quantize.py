"""INT8 static quantization of an exported model with ONNX Runtime's tools (CPU), QDQ format.

Calibration runs on real images letterboxed exactly as at inference (:func:`yolox.inference.preprocess`),
normally the prepared dataset's train split (the AP is then measured on its val split). Weights are quantized
per channel (int8, symmetric), activations per tensor (uint8, asymmetric), their ranges calibrated by
``percentile`` (the 99.999th percentile of each tensor's histogram; ``export.int8_calibration_method``). What stays
in float:

- the head's last 1x1 convolutions' outputs and everything after them (the raw box offsets, objectness and
  class logits, sigmoid, decode, and in an ``end2end`` graph the NMS and top-K): one int8 scale over offsets,
  logits and probabilities would cost score resolution where the ranking is decided, and NMS is no
  arithmetic to quantize. Those convolutions' inputs and weights are quantized.
- the modules named in ``keep_float`` (``export.int8_keep_float``): by default the stem and the first stage
  (``backbone.backbone.stem``, ``backbone.backbone.dark2``). Measured on coco128 with the authors' nano
  weights (AP50:95 on 32 held-out images, 16 calibration images): all quantized 0.136 against FP32 0.379;
  only the stem quantized 0.216, only dark2's convolution inputs and weights 0.184, every other region alone
  within 0.01; everything but stem and dark2 quantized 0.371. The stem sees the unnormalised 0-255 image and
  its per-tensor activation ranges are too wide for 8 bits.

Tuning (issue 25; the authors' nano at 416 px, 32 calibration images of the prepared coco128 train split; AP50:95
drop against FP32 on its 17 val images / on all 128 images, FP32 0.4503 / 0.3293; ONNX Runtime 1.32, 2 threads):

=====================================================  ===============  ===========================
variant                                                AP drop          speed vs FP32 (inference)
=====================================================  ===============  ===========================
minmax calibration (the previous default)              0.0244 / 0.0101  1.08-1.28x
percentile (99.999th), the default                     0.0064 / 0.0079  1.12-1.18x
percentile 99.99th                                     -0.0027 / 0.0074 1.21x
entropy (the same figures as minmax)                   0.0244 / 0.0101  1.09x
per-tensor weights (minmax)                            0.0888 / 0.0750  1.05x
also the 30 depthwise convolutions float (minmax)      0.0295 / 0.0172  1.06x
also the depthwise convolutions float (percentile)     0.0273 / 0.0219  1.15x
only the stem float (percentile)                       0.1838 / 0.1279  1.15x
stem and dark2 quantized too (percentile)              0.2781 / 0.1526  1.30x
only Conv quantized, SiLU float (minmax)               0.0221 / 0.0109  0.84x
Conv, Concat, MaxPool, Resize, Add quantized (minmax)  0.0326 / 0.0135  0.88x
int8 activations (s8s8) instead of uint8 (minmax)      0.0746 / 0.0463  0.45x
=====================================================  ===============  ===========================

(speeds: the graph alone at batch 1, interleaved with FP32, on a shared machine under load 1.5-3.4: ranges are
runs.) In ``yolox benchmark`` (letterbox to detections, three runs at load 1.0-1.15) the default INT8 model is
1.12-1.17x faster than FP32 at batch 1 (p50) and 1.12-1.17x in images/s at batch 8, at an AP drop of 0.0064 on
the 17 val images. Why not 1.3x here: the nano is small, depthwise-heavy and SiLU everywhere. ONNX Runtime fuses
an int8 convolution with Relu/Clip-like activations only, so each SiLU runs as a QLinearSigmoid and a QLinearMul
(28% of the INT8 graph's time, profiled; the FP32 graph runs SiLU as one fused op, 21%), and the float stem and
dark2, needed for the AP, are another ~22%; what int8 saves on the convolutions (QLinearConv 33% of the INT8
graph's time against Conv 63% of the FP32's) is mostly spent there. Keeping SiLU float instead puts a
dequantize/quantize pair around every activation and is slower than FP32. OpenVINO fuses SiLU into its int8
convolutions: its INT8 IR is the faster INT8 artifact here (:mod:`yolox.export.openvino`).

A histogram calibration (percentile, entropy) cannot bin a tensor whose values are all (nearly) equal (an untrained
model's): then minmax calibrates it, with a warning.

The quantized model keeps the :class:`~yolox.models.meta.ModelMeta` of its source, with ``export.precision = "int8"``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import onnx

from yolox.errors import ExportError
from yolox.export.onnx_export import with_precision, write_metadata
from yolox.files import atomic_path
from yolox.inference import preprocess
from yolox.models.meta import meta_of_onnx

log = logging.getLogger("yolox.export")

HEAD_OUTPUT_CONVS = ("cls_preds", "reg_preds", "obj_preds")
"""Module names of the head's last convolutions (:class:`yolox.models.head.YOLOXHead`): their outputs and all
that follows stay float."""


class LetterboxCalibrationReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over image files, each letterboxed to ``size``
    (the one letterbox) and fed as ``{input_name: (batch_size, 3, size, size) float32}``. Unreadable images are
    reported and skipped.

    Raises:
        ExportError: none of the images can be read.
    """

    def __init__(self, images: Sequence[str | Path], size: int, input_name: str = "images", batch_size: int = 1
                 ) -> None:
        frames = []
        for path in images:
            img = cv2.imread(str(path))
            if img is None:
                log.warning("INT8 calibration: skipped %s (not a readable image)", path)
                continue
            frames.append(img)
        if not frames:
            raise ExportError(f"INT8 calibration: none of {len(images)} images could be read")
        self.batches = [preprocess(frames[i:i + batch_size], size)[0] for i in range(0, len(frames), batch_size)]
        self.input_name = input_name
        self.num_images = len(frames)
        self._it: Iterator[np.ndarray] = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self._it = iter(self.batches)


def float_tail(graph: onnx.ModelProto, keep_float: Sequence[str] = ()) -> list[str]:
    """Names of the nodes that stay float: everything downstream of the head's last convolutions
    (:data:`HEAD_OUTPUT_CONVS`), and the nodes of the modules named in ``keep_float`` (dotted module names of
    :class:`yolox.models.YOLOX`, e.g. ``backbone.backbone.stem``), found by the exporter's module-scoped node
    names (``/.../backbone/backbone/stem/...``).

    Raises:
        ExportError: the graph has none of those convolutions (not a YOLOX export of this project).
    """
    nodes = graph.graph.node
    heads = [n for n in nodes if n.op_type == "Conv" and any(f"/{h}." in n.name for h in HEAD_OUTPUT_CONVS)]
    if not heads:
        raise ExportError("INT8: no head output convolutions (cls_preds/reg_preds/obj_preds) in the graph: "
                          "quantize an ONNX model exported by yolox export")
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    scopes = ["/" + k.strip(".").replace(".", "/") + "/" for k in keep_float]
    tail = {n.name for n in nodes if any(s in n.name for s in scopes)}
    todo = [t for h in heads for t in h.output]
    while todo:
        for n in consumers.get(todo.pop(), []):
            if n.name not in tail:
                tail.add(n.name)
                todo.extend(n.output)
    return sorted(tail)


def quantize_int8(onnx_path: str | Path, out_path: str | Path, calibration_images: Sequence[str | Path],
                  input_size: int, method: str = "percentile", per_channel: bool = True,
                  keep_float: Sequence[str] = ("backbone.backbone.stem", "backbone.backbone.dark2")) -> Path:
    """Write an INT8 (QDQ) copy of the FP32 model ``onnx_path`` to ``out_path``, calibrated on
    ``calibration_images`` letterboxed to ``input_size`` (see the module docstring for what stays float).

    ``out_path`` is written atomically (:func:`yolox.files.atomic_path`), complete with its metadata: the
    quantizer works in a temp folder, and a failure, Ctrl-C or SIGTERM leaves the previous file intact.

    Args:
        method: ``minmax``, ``entropy`` or ``percentile`` (``onnxruntime.quantization.CalibrationMethod``).
        keep_float: module names left in float (see :func:`float_tail`).

    Raises:
        ExportError: no readable calibration image, not a YOLOX graph, or the quantizer failed.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    source = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in source.metadata_props}
    meta = meta_of_onnx(props)
    reader = LetterboxCalibrationReader(calibration_images, input_size, source.graph.input[0].name)
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized_path = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        try:
            quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
            excluded = float_tail(onnx.load(str(prepared)), keep_float)
            for attempt in dict.fromkeys((method, "minmax")):
                try:
                    # the histogram calibrators print their progress: on stderr, stdout is the commands' JSON alone
                    with contextlib.redirect_stdout(sys.stderr):
                        quantize_static(str(prepared), str(quantized_path), reader, quant_format=QuantFormat.QDQ,
                                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                        per_channel=per_channel, calibrate_method=methods[attempt],
                                        nodes_to_exclude=excluded,
                                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
                                        calibration_providers=["CPUExecutionProvider"])
                    break
                except ValueError as err:
                    # a histogram calibrator (percentile, entropy) cannot bin a tensor whose values are all (nearly)
                    # equal, e.g. in an untrained model: its ranges come from min and max instead
                    if attempt == "minmax" or "bins" not in str(err):
                        raise
                    log.warning("INT8 calibration: %s failed (%s): calibrating with minmax instead", attempt, err)
                    method = "minmax"
                    reader.rewind()
        except ExportError:
            raise
        except Exception as err:  # the quantizer raises many types
            raise ExportError(f"INT8 quantization of {onnx_path} failed: {type(err).__name__}: {err}") from err
        quantized = onnx.load(str(quantized_path))
    if meta is not None:
        write_metadata(quantized, with_precision(meta, "int8"))
    with atomic_path(out_path) as tmp_out:
        onnx.save(quantized, str(tmp_out))
    log.info("INT8 (QDQ, %s calibration on %d images, %d nodes kept float) -> %s", method, reader.num_images,
             len(excluded), out_path)
    return out_path
