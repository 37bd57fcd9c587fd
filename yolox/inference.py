"""Inference backends (PyTorch, ONNX Runtime) and the one detection path shared by eval, predict,
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


class OnnxBackend:
    """An exported model run by ONNX Runtime (CPU, or CUDA when available). Models with a fixed batch
    dimension (such as the authors' release, batch 1) are fed one image at a time.

    ``variant`` (from the model's meta; ``raw`` without one) says what :meth:`run` returns; calling the backend
    (the :class:`Backend` protocol) is for ``raw`` graphs only. ``threads`` and ``spinning``: see
    :func:`session_options`.

    The metadata is read as user input (:func:`yolox.models.meta.meta_of_onnx`) and checked against the graph: the
    variant's output count, the output names, the class count (at load when the graph's class axis is static,
    else at the first run), a fixed input side.

    Raises:
        CheckpointError: not a loadable ONNX model, not a YOLOX detector, or metadata that is malformed or does
            not fit the graph (one line naming the file, the metadata key and the field).
    """

    strides = STRIDES

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = False) -> None:
        import onnxruntime as ort

        opts = session_options(threads, spinning)
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: not a loadable ONNX model ({err})") from None
        self.path = Path(path)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.meta = meta_of_onnx(self.metadata, source=str(path))
        """The model's :class:`~yolox.models.meta.ModelMeta`, or None for an ONNX file without it (the authors')."""
        self.variant = self.meta.variant if self.meta is not None else "raw"
        self.output_names = [o.name for o in self.session.get_outputs()]
        inputs, out = self.session.get_inputs(), self.session.get_outputs()[0]
        inp = inputs[0]
        width = None
        if self.variant == "raw":   # (B, A, 5 + C), unless the graph left the width symbolic
            width = out.shape[-1] if len(out.shape) == 3 else None
            num_classes = width - 5 if isinstance(width, int) else self.meta.num_classes if self.meta else 0
        else:                       # decoded / end2end: only this project exports them, with their meta
            num_classes = self.meta.num_classes
        if len(inputs) != 1 or len(inp.shape) != 4 or inp.shape[1] != 3 or num_classes < 1 \
                or (self.variant == "raw" and width is None):
            raise CheckpointError(f"{path}: not a YOLOX detector (inputs {_shapes(inputs)}, "
                                  f"outputs {_shapes(self.session.get_outputs())}; expected one input "
                                  "(B, 3, S, S) and an output (B, A, 5 + C)): export one with yolox export")
        if self.meta is not None:
            self._check_meta(num_classes, inp.shape[2])
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.fixed_size = inp.shape[2] if isinstance(inp.shape[2], int) else None
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
            scores = self.session.get_outputs()[1].shape
            if len(scores) != 3 or (isinstance(scores[-1], int) and scores[-1] != meta.num_classes):
                raise CheckpointError(f"{where}: 'names' lists {meta.num_classes} classes, but the graph's scores "
                                      f"are {tuple(scores)}")
        if isinstance(graph_side, int) and graph_side != meta.input_size:
            raise CheckpointError(f"{where}: 'input_size' is {meta.input_size}, but the graph takes {graph_side} px "
                                  "inputs")

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """All outputs of the graph for a (B, 3, H, W) float32 batch (in :attr:`output_names` order).

        Raises:
            ConfigError: the model takes another fixed input side (:meth:`check_size`).
            CheckpointError: the graph predicts another number of classes than its metadata names."""
        self.check_size(images.shape[-1])
        if self.fixed_batch == 1 and images.shape[0] != 1:
            parts = [self.session.run(None, {self.input_name: images[i:i + 1]}) for i in range(images.shape[0])]
            outs = [np.concatenate(outs) for outs in zip(*parts)]
        else:
            outs = self.session.run(None, {self.input_name: images})
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


def _shapes(nodes: Sequence) -> str:
    return ", ".join(f"{n.name!r} {tuple(n.shape)}" for n in nodes)


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


# --- model files: the one place that opens a model file (.pth or .onnx) with its facts -----------------------


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
    """An inference backend (ONNX Runtime for ``.onnx``, PyTorch for ``.pth``) and the model's meta (for an
    ONNX without one, e.g. the authors' release: the variant table's, with ``model_name`` or yolox-nano)."""
    if str(weights).endswith(".onnx"):
    
        backend = OnnxBackend(resolve_weights(str(weights)))
        meta = backend.meta or meta_for(model_name or "yolox-nano", default_names(backend.num_classes),
                                        _onnx_fixed_size(backend))
        return backend, meta

    net, meta = load_torch_model(weights, model_name)
    return TorchBackend(net, fuse=True), meta


def _onnx_fixed_size(backend: Any) -> int | None:
    shape = backend.session.get_inputs()[0].shape
    return int(shape[2]) if isinstance(shape[2], int) else None


def model_input_size(meta: ModelMeta, override: int | None = None) -> int:
    """:func:`yolox.models.meta.input_size` (the one size rule)."""

    return input_size(meta, override)
