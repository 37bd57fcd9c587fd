"""Inference backends (PyTorch, ONNX Runtime, OpenVINO) and the one detection path shared by eval, predict,
the export check and serving: letterbox -> backend -> decode -> score filter -> class-aware NMS ->
boxes mapped back to the original image by dividing by the letterbox scale (not clipped, as the authors; predict
and serving ask :func:`detect` to clip them to the image).

An exported model's variant (:data:`yolox.models.meta.Variant`, read from its metadata) says how much of that path is
inside the graph: ``raw`` graphs are decoded and NMS'd here, ``decoded`` graphs only NMS'd here, ``end2end``
graphs return the detections (their thresholds baked in; see :func:`detect_batch`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from yolox.assets import resolve_weights
from yolox.config import EVAL_DEFAULTS as EVAL
from yolox.errors import CheckpointError, ConfigError
from yolox.files import sha256_file
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights, torch_load
from yolox.models.meta import (
    ONNX_KEY,
    ModelMeta,
    default_names,
    input_size,
    meta_for,
    meta_of_checkpoint,
    meta_of_onnx,
)
from yolox.models.table import STRIDES
from yolox.models.yolox import InferenceModel
from yolox.ops.boxes import clip_xyxy
from yolox.ops.letterbox import letterbox_into
from yolox.ops.nms import Detections, postprocess_raw, postprocess_scores

log = logging.getLogger("yolox.inference")

OUTPUTS_READ: dict[str, int] = {"raw": 1, "decoded": 2, "end2end": 4}
"""How many outputs :func:`detect_batch` reads from each variant's graph (:data:`yolox.models.meta.Variant`)."""


class Backend(Protocol):
    """Runs the network: (B, 3, S, S) float32 BGR 0-255 -> (B, A, 5 + C) float32 ``[x, y, log w, log h,
    obj prob, class probs]`` (the authors' ONNX output layout, not decoded)."""

    strides: tuple[int, ...]
    num_classes: int

    def __call__(self, images: np.ndarray) -> torch.Tensor: ...


class TorchBackend:
    """A YOLOX model in eval mode, on ``device``, without gradients.

    With ``fuse=True`` (for a model the backend owns: :func:`load_model`, ``yolox predict``/``eval`` on a
    ``.pth``) the model is changed in place for inference: every Conv -> BatchNorm pair is folded into one conv
    (:func:`fuse_conv_bn`) and the weights are stored channels-last (NHWC), which the CPU convolution kernels
    (oneDNN) run faster, depthwise convs above all: the nano at 416 px, 1 thread, 56 ms instead of 76 ms per
    image (bench/predict.py). Outputs differ from the unfused model by float rounding only (about 2e-5 on 0-416 px
    offsets for the nano; coco128 AP50:95 0.329328 either way); a training loop's live model is left alone
    (``fuse=False``).
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", fuse: bool = False) -> None:
        self.device = torch.device(device)
        self.strides = model.strides
        self.num_classes = model.num_classes
        if fuse:
            model = fuse_conv_bn(model.eval()).to(memory_format=torch.channels_last)
        self.model = InferenceModel(model).to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> torch.Tensor:
        return self.model(torch.from_numpy(images).to(self.device)).float().cpu()


def fuse_conv_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each ``BatchNorm2d`` into the conv before it (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`) in
    every module holding a ``conv`` and a ``bn`` (the models' ``BaseConv``), in place; the BatchNorm becomes an
    identity. For inference only (eval mode: the running statistics are used). Returns ``model``."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(conv.eval(), bn.eval())
            module.bn = torch.nn.Identity()
    return model


class ExportedBackend:
    """What :class:`OnnxBackend` and :class:`OpenVinoBackend` share: an exported model's metadata read as user input
    (:func:`yolox.models.meta.meta_of_onnx`) and checked against the graph (the variant's output count, the output
    names, the class count: at load when the graph's class axis is static, else at the first run; a fixed input
    side), its variant, the fixed-size check and the end2end thresholds warning. A subclass opens its runtime,
    then calls :meth:`_describe` with the graph's inputs and outputs, and implements :meth:`_run`.

    ``variant`` (from the model's meta; ``raw`` without one) says what :meth:`run` returns; calling the backend (the
    :class:`Backend` protocol) is for ``raw`` graphs only.
    """

    strides = STRIDES

    def _describe(self, path: Path, metadata: dict[str, str], inputs: list[tuple[str, tuple[Any, ...]]],
                  outputs: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Read the meta from ``metadata`` and check it against the graph's ``inputs`` and ``outputs`` (``(name,
        shape)``, a dynamic dimension any non-int).

        Raises:
            CheckpointError: not a YOLOX detector, or metadata that is malformed or does not fit the graph."""
        self.path = Path(path)
        self.metadata = metadata
        self.meta = meta_of_onnx(self.metadata, source=str(path))
        """The model's :class:`~yolox.models.meta.ModelMeta`, or None for a file without it (the authors' ONNX)."""
        self.variant = self.meta.variant if self.meta is not None else "raw"
        self.output_names = [name for name, _ in outputs]
        self._output_shapes = [shape for _, shape in outputs]
        out = outputs[0][1] if outputs else ()
        width = None
        if self.variant == "raw":   # (B, A, 5 + C), unless the graph left the width symbolic
            width = out[-1] if len(out) == 3 else None
            num_classes = width - 5 if isinstance(width, int) else self.meta.num_classes if self.meta else 0
        else:                       # decoded / end2end: only this project exports them, with their meta
            num_classes = self.meta.num_classes
        inp = inputs[0][1] if inputs else ()
        if len(inputs) != 1 or len(inp) != 4 or inp[1] != 3 or num_classes < 1 \
                or (self.variant == "raw" and width is None):
            raise CheckpointError(f"{path}: not a YOLOX detector (inputs {_shapes(inputs)}, outputs "
                                  f"{_shapes(outputs)}; expected one input (B, 3, S, S) and an output (B, A, 5 + C)): "
                                  "export one with yolox export")
        if self.meta is not None:
            self._check_meta(num_classes, inp[2])
        self.input_name = inputs[0][0]
        self.fixed_batch = inp[0] if isinstance(inp[0], int) else None
        self.fixed_size = inp[2] if isinstance(inp[2], int) else None
        """The input side (pixels) of a model exported for one size only (the authors' ONNX: 416), else None."""
        self.num_classes = num_classes
        if self.meta is not None:
            self.strides = self.meta.strides
        self._warned: set[tuple[float, float, int | None]] = set()

    def _check_meta(self, graph_classes: int, graph_side: Any) -> None:
        """The metadata's facts against the graph's own (a model whose metadata was edited or copied from another
        file): output names and count, class count, fixed input side.

        Raises:
            CheckpointError: one line naming the file, the metadata field and the graph's value."""
        meta, where = self.meta, f"{self.path}: metadata {ONNX_KEY!r}"
        want = OUTPUTS_READ[self.variant]
        if self.variant != "raw" and len(self.output_names) != want:
            raise CheckpointError(f"{where}: 'export.variant' is {self.variant!r} ({want} outputs), but the graph "
                                  f"has {len(self.output_names)}: {', '.join(self.output_names)}")
        if meta.export is not None and list(meta.export.outputs) != self.output_names:
            raise CheckpointError(f"{where}: 'export.outputs' is {list(meta.export.outputs)}, but the graph's outputs "
                                  f"are {self.output_names}")
        if graph_classes != meta.num_classes:
            raise CheckpointError(f"{where}: 'names' lists {meta.num_classes} classes, but the graph predicts "
                                  f"{graph_classes}")
        if self.variant == "decoded":
            scores = self._output_shapes[1]
            if len(scores) != 3 or (isinstance(scores[-1], int) and scores[-1] != meta.num_classes):
                raise CheckpointError(f"{where}: 'names' lists {meta.num_classes} classes, but the graph's scores "
                                      f"are {tuple(scores)}")
        if isinstance(graph_side, int) and graph_side != meta.input_size:
            raise CheckpointError(f"{where}: 'input_size' is {meta.input_size}, but the graph takes {graph_side} px "
                                  "inputs")

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        """The runtime's outputs for one batch the graph accepts (in :attr:`output_names` order)."""
        raise NotImplementedError

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """All outputs of the graph for a (B, 3, H, W) float32 batch (in :attr:`output_names` order).

        Raises:
            ConfigError: the model takes another fixed input side (:meth:`check_size`).
            CheckpointError: the graph predicts another number of classes than its metadata names."""
        self.check_size(images.shape[-1])
        if self.fixed_batch == 1 and images.shape[0] != 1:
            parts = [self._run(images[i:i + 1]) for i in range(images.shape[0])]
            outs = [np.concatenate(outs) for outs in zip(*parts)]
        else:
            outs = self._run(images)
        classes = {"raw": outs[0].shape[-1] - 5, "decoded": outs[-1].shape[-1]}.get(self.variant, self.num_classes)
        if classes != self.num_classes:   # a graph whose class axis is symbolic: known once run
            raise CheckpointError(f"{self.path}: metadata {ONNX_KEY!r}: 'names' lists {self.num_classes} classes, "
                                  f"but the graph predicts {classes}")
        return outs

    def check_size(self, size: int) -> None:
        """Raise ConfigError when the model was exported for another fixed input side than ``size`` (pixels)."""
        if self.fixed_size is not None and size != self.fixed_size:
            raise ConfigError(f"{self.path} takes {self.fixed_size} px inputs only, not {size}: drop "
                              f"--img-size / eval.img_size, or export the model at {size}")

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        if self.variant != "raw":
            raise CheckpointError(f"{self.path} is a {self.variant!r} export: its outputs are "
                                  f"{self.output_names}, not raw predictions (use detect())")
        return torch.from_numpy(self.run(images)[0])

    def baked_thresholds(self, conf_thresh: float, nms_thresh: float, max_det: int | None) -> None:
        """For an ``end2end`` graph: warn (once per request) when the requested thresholds are not the baked ones
        (a lower score threshold, another NMS IoU or more detections cannot be had from this graph)."""
        e = self.meta.export if self.meta is not None else None
        key = (conf_thresh, nms_thresh, max_det)
        if e is None or key in self._warned:
            return
        self._warned.add(key)
        if (conf_thresh < e.conf_thresh - 1e-9 or abs(nms_thresh - e.nms_thresh) > 1e-9
                or (max_det or 10**9) > e.max_det):
            log.warning("%s is an end2end export with conf %g, NMS IoU %g, max %d detections baked in; asked for "
                        "conf %g, NMS IoU %g, max %s: its detections are the baked ones (re-export with "
                        "--conf/--nms/--max-det for others)", self.path.name, e.conf_thresh, e.nms_thresh,
                        e.max_det, conf_thresh, nms_thresh, max_det)


class OnnxBackend(ExportedBackend):
    """An exported model run by ONNX Runtime (CPU, or CUDA when available). Models with a fixed batch
    dimension (such as the authors' release, batch 1) are fed one image at a time.

    ``variant`` (from the model's meta; ``raw`` without one) says what :meth:`run` returns; calling the backend
    (the :class:`Backend` protocol) is for ``raw`` graphs only. ``threads`` and ``spinning``: see
    :func:`session_options`.

    The metadata is read as user input (:func:`yolox.models.meta.meta_of_onnx`) and checked against the graph: the
    variant's output count, the output names, the class count (at load when the graph's class axis is static,
    else at the first run), a fixed input side (:class:`ExportedBackend`).

    Raises:
        CheckpointError: not a loadable ONNX model, not a YOLOX detector, or metadata that is malformed or does
            not fit the graph (one line naming the file, the metadata key and the field).
    """

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = False) -> None:
        import onnxruntime as ort

        opts = session_options(threads, spinning)
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: not a loadable ONNX model ({err})") from None
        self._describe(Path(path), dict(self.session.get_modelmeta().custom_metadata_map),
                       [(i.name, tuple(i.shape)) for i in self.session.get_inputs()],
                       [(o.name, tuple(o.shape)) for o in self.session.get_outputs()])

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: images})


class OpenVinoBackend(ExportedBackend):
    """An OpenVINO IR (``.xml`` + its ``.bin``, :mod:`yolox.export.openvino`) run by the OpenVINO CPU plugin, with
    :class:`OnnxBackend`'s interface: the same metadata (the IR's ``rt_info``, :func:`ir_metadata`)
    and checks, variants, fixed-size check; ``threads`` intra-op threads as for ONNX Runtime (None: the runtime's
    default, one per physical core).

    Runs at ``precision`` ``f32`` by default: OpenVINO's CPU plugin would otherwise execute an FP32 IR in bf16 on a
    CPU that has it (``INFERENCE_PRECISION_HINT``), which moves the nano's raw outputs by up to ~2 (log sizes,
    offsets) on coco128 images and fails the export check; ``bf16`` is that faster, inexact mode (see
    :mod:`yolox.export.openvino`). Each input shape gets its own compiled model (the IR compiled with its dynamic
    batch took ~1.35x as long at batch 1 for the nano), compiled on first use (~0.1-0.3 s) and kept, at most
    :attr:`MAX_SHAPES`.

    Raises:
        CheckpointError: not a readable IR (or its ``.bin`` missing, or not the one written with it), not a YOLOX
            detector, or metadata that is malformed or does not fit the graph.
    """

    MAX_SHAPES = 4

    def __init__(self, path: str | Path, threads: int | None = None, precision: str = "f32") -> None:
        import openvino as ov

        if precision not in ("f32", "bf16"):
            raise ConfigError(f"OpenVINO inference precision {precision!r}: must be f32 or bf16")
        path = Path(path)
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(path))
        except Exception as err:  # noqa: BLE001 - openvino raises RuntimeError and its own types
            raise CheckpointError(f"{path}: not a readable OpenVINO IR with its .bin beside it ({err})") from None
        metadata = ir_metadata(self.model)
        check_ir_pair(path, metadata)
        self.config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self.precision = precision
        self._compiled: dict[tuple[int, ...], Any] = {}
        self._describe(path, metadata,
                       [(i.get_any_name(), _ov_shape(i.get_partial_shape())) for i in self.model.inputs],
                       [(o.get_any_name(), _ov_shape(o.get_partial_shape())) for o in self.model.outputs])

    def _request(self, shape: tuple[int, ...]) -> Any:
        """The infer request of the model compiled for input ``shape`` (compiled now on first use)."""
        request = self._compiled.get(shape)
        if request is None:
            model = self.model.clone()
            model.reshape({model.inputs[0]: list(shape)})
            try:
                compiled = self.core.compile_model(model, "CPU", self.config)
            except Exception as err:  # noqa: BLE001 - e.g. a shape the graph cannot take
                raise CheckpointError(f"{self.path}: OpenVINO cannot compile it for input {shape} ({err})") from None
            if len(self._compiled) >= self.MAX_SHAPES:
                self._compiled.pop(next(iter(self._compiled)))
            request = self._compiled[shape] = compiled.create_infer_request()
        return request

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        request = self._request(tuple(images.shape))
        request.infer({0: np.ascontiguousarray(images, np.float32)})
        return [np.copy(request.get_output_tensor(i).data) for i in range(len(self.output_names))]


IR_SECTION = "yolox"
"""The ``rt_info`` section of an OpenVINO IR written by :mod:`yolox.export.openvino` holding its metadata: the same
keys and values as an ONNX export's ``metadata_props`` (:meth:`yolox.models.meta.ModelMeta.onnx_props`), plus
:data:`IR_BIN_SHA256`."""

IR_BIN_SHA256 = "bin_sha256"
"""The ``rt_info`` key (in :data:`IR_SECTION`) holding the sha256 of the ``.bin`` written with the ``.xml``."""


def ir_metadata(model: Any) -> dict[str, str]:
    """The metadata of an OpenVINO model (``openvino.Model``) as strings: its :data:`IR_SECTION` ``rt_info``
    section, else the ``framework`` section the ONNX converter copies an ONNX model's ``metadata_props`` into
    (an IR converted by hand from this project's ONNX), else empty (an IR without it: the authors' model)."""
    for section in (IR_SECTION, "framework"):
        if model.has_rt_info([section]):
            found = model.get_rt_info()[section]
            if isinstance(found, dict):
                return {str(k): v.astype(str) for k, v in found.items()}
    return {}


def check_ir_pair(xml: str | Path, metadata: dict[str, str]) -> None:
    """Check that the ``.bin`` beside ``xml`` is the one written with it (its sha256 against the metadata's
    :data:`IR_BIN_SHA256`; an IR without one is taken as it is).

    Raises:
        CheckpointError: another ``.bin`` (a copy of one half of a pair, or a write cut between the two files)."""
    want = metadata.get(IR_BIN_SHA256)
    if not want:
        return
    bin_path = Path(xml).with_suffix(".bin")
    if sha256_file(bin_path) != want:
        raise CheckpointError(f"{xml}: {bin_path.name} is not the weights file written with it (sha256 differs): "
                              "copy the .xml and .bin of one export together, or export again")


def session_options(threads: int | None = None, spinning: bool = False) -> Any:
    """ONNX Runtime session options of every :class:`OnnxBackend`: all graph optimisations (``ORT_ENABLE_ALL``:
    constant folding, Conv+BN/activation fusion, the NCHWc layout), ``threads`` intra-op threads (None: one per
    physical core), and, unless ``spinning``, intra-op threads that sleep between runs instead of busy-waiting.

    Why no spinning: one image at a time, a run is followed by Python work (decoding the next image, the
    letterbox, NMS, drawing) during which spinning threads keep the other cores busy; on a shared or loaded
    machine they also fight other processes for them. Measured on 2 shared cores under load (1-minute load
    average ~5), 2 intra-op threads, the nano's ORT run at 416 px took 27-48 ms with sleeping threads against
    47-55 ms spinning (the whole predict path: bench/predict.py)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def _shapes(nodes: Sequence[tuple[str, tuple[Any, ...]]]) -> str:
    return ", ".join(f"{name!r} {tuple(shape)}" for name, shape in nodes)


def _ov_shape(shape: Any) -> tuple[Any, ...]:
    """An OpenVINO partial shape as a tuple: static dimensions as ints, dynamic ones as None."""
    if shape.rank.is_dynamic:
        return ()
    return tuple(d.get_length() if d.is_static else None for d in shape)


def preprocess(images: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, list[float]]:
    """The letterbox of BGR uint8 images (H, W, 3) as one (B, 3, size, size) float32 batch (BGR 0-255, channels
    first; :func:`~yolox.ops.letterbox.letterbox_into`, each image straight into its slot); returns it and the
    scales r.

    Raises:
        ValueError: an image is not (H, W, 3) uint8.
    """
    batch = np.empty((len(images), 3, size, size), np.float32)
    return batch, [letterbox_into(img, batch[i]) for i, img in enumerate(images)]


def detect_batch(backend: Backend, batch: np.ndarray, conf_thresh: float = EVAL.conf_thresh,
                 nms_thresh: float = EVAL.nms_thresh, max_det: int | None = EVAL.max_det) -> list[Detections]:
    """Detections of a letterboxed batch (B, 3, H, W) float32, boxes xyxy in input pixels.

    By the backend's variant (``raw`` for PyTorch and backends without one): ``raw`` -> decode +
    :func:`~yolox.ops.nms.postprocess` (:func:`~yolox.ops.nms.postprocess_raw`: the candidates only);
    ``decoded`` -> :func:`~yolox.ops.nms.postprocess_scores`; ``end2end`` ->
    the graph's own detections, of which those with score >= ``conf_thresh`` and the first ``max_det`` are kept
    (the NMS IoU is the baked one; a warning says so when another is asked for).
    """
    variant = getattr(backend, "variant", "raw")
    if variant == "raw":
        return postprocess_raw(backend(batch), tuple(batch.shape[2:]), tuple(backend.strides), conf_thresh,
                               nms_thresh, max_det)
    outs = backend.run(batch)
    if variant == "decoded":
        boxes, scores = (torch.from_numpy(o) for o in outs)
        return postprocess_scores(boxes, scores, conf_thresh, nms_thresh, max_det)
    backend.baked_thresholds(conf_thresh, nms_thresh, max_det)
    num, boxes, scores, labels = outs
    dets = []
    for i in range(batch.shape[0]):
        n = max(0, min(int(num[i, 0]), labels.shape[1]))
        if n and not 0 <= int(labels[i, :n].min()) <= int(labels[i, :n].max()) < backend.num_classes:
            raise CheckpointError(f"{getattr(backend, 'path', 'the model')}: the graph returned class "
                                  f"{int(labels[i, :n].max())}, but its metadata names {backend.num_classes} "
                                  "classes")
        keep = np.nonzero(scores[i, :n] >= np.float32(conf_thresh))[0][:max_det]
        dets.append(Detections(boxes[i, keep].astype(np.float32), scores[i, keep].astype(np.float32),
                               labels[i, keep].astype(np.int64)))
    return dets


def detect(backend: Backend, images: Sequence[np.ndarray], size: int, conf_thresh: float = EVAL.conf_thresh,
           nms_thresh: float = EVAL.nms_thresh, max_det: int | None = EVAL.max_det,
           clip: bool = False) -> list[Detections]:
    """Detect objects in BGR uint8 images (H, W, 3) letterboxed to ``size`` (:func:`detect_batch`).

    Args:
        clip: clip the boxes to the image (``0 <= x <= W``, ``0 <= y <= H``): what ``yolox predict`` and
            serving report. Evaluation keeps them unclipped (the authors' protocol).

    Returns:
        One :class:`Detections` per image: boxes xyxy in the original image's pixels (float32, clipped only
        with ``clip``), scores in [0, 1], class indices; at most ``max_det``, by descending score.
    """
    batch, ratios = preprocess(images, size)
    dets = detect_batch(backend, batch, conf_thresh, nms_thresh, max_det)
    for d, r, img in zip(dets, ratios, images):
        d.boxes /= r
        if clip:
            clip_xyxy(d.boxes, img.shape[0], img.shape[1])
    return dets


# --- model files: the one place that opens a model file (.pth, .onnx or .xml) with its facts -----------------------


def load_torch_model(weights: str | Path, model_name: str | None = None) -> tuple[Any, ModelMeta]:
    """A YOLOX model in eval mode and its :class:`ModelMeta`, from a checkpoint of this project (its meta and
    EMA weights) or of the authors (``model_name`` required; class count from the class predictor).

    Raises:
        AssetError: not found. CheckpointError: unreadable or not fitting. ConfigError: no model name.
    """

    path = resolve_weights(str(weights))
    state = torch_load(path)
    meta = meta_of_checkpoint(state if isinstance(state, dict) else {}, model_name, source=str(path))
    if model_name and model_name != meta.name:
        raise ConfigError(f"{path} is a {meta.name} checkpoint, not {model_name}: drop --model or fix it")
    model = build_model(meta.name, meta.num_classes)
    load_weights(model, path)
    return model.eval(), meta


def load_model(weights: str | Path, model_name: str | None = None) -> tuple[Any, ModelMeta]:
    """An inference backend (ONNX Runtime for ``.onnx``, OpenVINO for an ``.xml`` IR, PyTorch for ``.pth``) and the
    model's meta (for an exported model without one, e.g. the authors' release: the variant table's, with
    ``model_name`` or yolox-nano)."""
    suffix = Path(str(weights)).suffix.lower()
    if suffix in (".onnx", ".xml"):
        path = resolve_weights(str(weights))
        backend: ExportedBackend = OnnxBackend(path) if suffix == ".onnx" else OpenVinoBackend(path)
        meta = backend.meta or meta_for(model_name or "yolox-nano", default_names(backend.num_classes),
                                        backend.fixed_size)
        return backend, meta

    net, meta = load_torch_model(weights, model_name)
    return TorchBackend(net, fuse=True), meta


def model_input_size(meta: ModelMeta, override: int | None = None) -> int:
    """:func:`yolox.models.meta.input_size` (the one size rule)."""

    return input_size(meta, override)
