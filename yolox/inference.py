"""Inference backends (PyTorch, ONNX Runtime) and the one detection path shared by eval, predict,
the export check and serving: letterbox -> backend -> decode -> score filter -> class-aware NMS ->
boxes mapped back to the original image by dividing by the letterbox scale (not clipped, as the authors).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from yolox.errors import CheckpointError, ConfigError
from yolox.meta import STRIDES, meta_of_onnx
from yolox.models import InferenceModel, build_model, load_weights
from yolox.ops.decode import decode_outputs
from yolox.ops.letterbox import letterbox
from yolox.ops.nms import Detections, postprocess

log = logging.getLogger("yolox.inference")


class Backend(Protocol):
    """Runs the network: (B, 3, S, S) float32 BGR 0-255 -> (B, A, 5 + C) float32 ``[x, y, log w, log h,
    obj prob, class probs]`` (the authors' ONNX output layout, not decoded)."""

    strides: tuple[int, ...]
    num_classes: int

    def __call__(self, images: np.ndarray) -> torch.Tensor: ...


class TorchBackend:
    """A YOLOX model in eval mode, on ``device``, without gradients."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = InferenceModel(model).to(self.device).eval()
        self.strides = model.strides
        self.num_classes = model.num_classes

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> torch.Tensor:
        return self.model(torch.from_numpy(images).to(self.device)).float().cpu()


class OnnxBackend:
    """An exported model run by ONNX Runtime (CPU, or CUDA when available). Models with a fixed batch
    dimension (such as the authors' release, batch 1) are fed one image at a time."""

    strides = STRIDES

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: not a loadable ONNX model ({err})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.meta = meta_of_onnx(self.metadata)
        """The model's :class:`~yolox.meta.ModelMeta`, or None for an ONNX file without it (the authors')."""
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        width = out.shape[-1] if len(out.shape) == 3 else None  # 5 + C, unless the graph left it symbolic
        num_classes = width - 5 if isinstance(width, int) else self.meta.num_classes if self.meta else 0
        if len(self.session.get_inputs()) != 1 or len(inp.shape) != 4 or inp.shape[1] != 3 or num_classes < 1 \
                or width is None:
            raise CheckpointError(f"{path}: not a YOLOX detector (inputs {_shapes(self.session.get_inputs())}, "
                                  f"outputs {_shapes(self.session.get_outputs())}; expected one input "
                                  "(B, 3, S, S) and an output (B, A, 5 + C)): export one with yolox export")
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.fixed_size = inp.shape[2] if isinstance(inp.shape[2], int) else None
        """The input side (pixels) of a model exported for one size only (the authors' ONNX: 416), else None."""
        self.path = Path(path)
        self.num_classes = num_classes
        if self.meta is not None:
            self.strides = self.meta.strides

    def check_size(self, size: int) -> None:
        """Raise ConfigError when the model was exported for another fixed input side than ``size`` (pixels)."""
        if self.fixed_size is not None and size != self.fixed_size:
            raise ConfigError(f"{self.path} takes {self.fixed_size} px inputs only, not {size}: drop "
                              f"--img-size / eval.img_size, or export the model at {size}")

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        self.check_size(images.shape[-1])
        if self.fixed_batch == 1 and images.shape[0] != 1:
            outs = [self.session.run(None, {self.input_name: images[i:i + 1]})[0] for i in range(images.shape[0])]
            return torch.from_numpy(np.concatenate(outs))
        return torch.from_numpy(self.session.run(None, {self.input_name: images})[0])


def _shapes(nodes: Sequence) -> str:
    return ", ".join(f"{n.name!r} {tuple(n.shape)}" for n in nodes)


def load_backend(weights: str | Path, model_name: str | None = None, num_classes: int | None = None,
                 device: str = "cpu") -> Backend:
    """A backend for a ``.onnx`` file (ONNX Runtime) or a ``.pth`` checkpoint (PyTorch).

    For a ``.pth``, ``model_name`` is required; ``num_classes`` defaults to the checkpoint's own
    (read from its class predictor).

    Raises:
        ConfigError: ``.pth`` without a model name. CheckpointError: unreadable or mismatched weights.
    """
    path = Path(weights)
    if path.suffix == ".onnx":
        return OnnxBackend(path)
    if model_name is None:
        raise ConfigError(f"{path}: a .pth checkpoint needs --model (e.g. yolox-nano)")
    from yolox.models.checkpoint import read_state_dict

    state = read_state_dict(path)
    ckpt_classes = state.get("head.cls_preds.0.weight")
    nc = num_classes or (int(ckpt_classes.shape[0]) if ckpt_classes is not None else 80)
    model = build_model(model_name, nc)
    report = load_weights(model, path)
    if report.reinitialised:
        raise CheckpointError(f"{path} has {int(ckpt_classes.shape[0])} classes, the dataset {nc}: "
                              "evaluate a checkpoint trained on this dataset's classes")
    return TorchBackend(model, device)


def preprocess(images: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, list[float]]:
    """Letterbox BGR uint8 images (H, W, 3) into one (B, 3, size, size) float32 batch; returns the scales r."""
    batch = np.empty((len(images), 3, size, size), np.float32)
    ratios = []
    for i, img in enumerate(images):
        boxed, r = letterbox(img, size)
        batch[i] = boxed.transpose(2, 0, 1)
        ratios.append(r)
    return batch, ratios


def detect(backend: Backend, images: Sequence[np.ndarray], size: int, conf_thresh: float = 0.01,
           nms_thresh: float = 0.65, max_det: int | None = 100) -> list[Detections]:
    """Detect objects in BGR uint8 images (H, W, 3).

    Returns:
        One :class:`Detections` per image: boxes xyxy in the original image's pixels (float32, not
        clipped), scores in [0, 1], class indices; at most ``max_det``, by descending score.
    """
    batch, ratios = preprocess(images, size)
    decoded = decode_outputs(backend(batch), (size, size), backend.strides)
    dets = postprocess(decoded, conf_thresh, nms_thresh, max_det)
    for d, r in zip(dets, ratios):
        d.boxes /= r
    return dets
