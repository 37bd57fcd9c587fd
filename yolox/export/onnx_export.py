"""ONNX export of YOLOX and its check against PyTorch.

The exported graph takes ``images`` (B, 3, S, S) float32 BGR 0-255 (letterboxed, top-left, pad 114) and
returns ``output`` (B, A, 5 + C) = ``[x, y, log w, log h]`` raw grid offsets, sigmoid(objectness),
sigmoid(classes): the layout of the authors' released ONNX, decoded by the same
:func:`yolox.ops.decode.decode_outputs` as every other backend. The model metadata carries the
:class:`yolox.meta.ModelMeta` (``yolox.meta``, JSON) and its flat keys ``names`` (JSON list), ``input_size``,
``model_name`` and ``strides``.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import onnx
import torch

from yolox.errors import ExportError
from yolox.inference import OnnxBackend, TorchBackend, preprocess
from yolox.meta import ModelMeta
from yolox.models import YOLOX, InferenceModel

log = logging.getLogger("yolox.export")


@dataclass
class ExportResult:
    """An exported model and how closely it matches PyTorch (max |onnx - torch| on raw outputs)."""

    path: Path
    max_abs_diff: float
    num_check_images: int
    opset: int
    passed: bool


def export_onnx(model: YOLOX, out_path: str | Path, input_size: int, names: Sequence[str], model_name: str,
                opset: int = 17, dynamic_batch: bool = True, simplify: bool = True) -> Path:
    """Export ``model`` (eval mode, CPU, float32) to ONNX with metadata; optionally slimmed by onnxslim.

    Uses the TorchScript-based exporter (``dynamo=False``), which needs no extra packages.

    Raises:
        ExportError: the exporter failed.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = InferenceModel(model).cpu().float().eval()
    dummy = torch.zeros(1, 3, input_size, input_size)
    dynamic = {"images": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (dummy,), str(out_path), opset_version=opset, input_names=["images"],
                              output_names=["output"], dynamic_axes=dynamic, dynamo=False)
    except Exception as err:  # noqa: BLE001 - surfaces any exporter failure with context
        raise ExportError(f"ONNX export of {model_name} to {out_path} failed: {err}") from err
    graph = onnx.load(str(out_path))
    if simplify:
        import onnxslim

        graph = onnxslim.slim(graph)
    meta = {**ModelMeta(model_name, input_size, tuple(names), tuple(model.strides)).onnx_props(),
            "output": "x,y,logw,logh raw; obj, cls sigmoid"}
    del graph.metadata_props[:]
    for k, v in meta.items():
        graph.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out_path))
    log.info("exported %s (opset %d) to %s", model_name, opset, out_path)
    return out_path


def check_onnx(model: YOLOX, onnx_path: str | Path, images: Sequence[Path], input_size: int,
               max_abs_diff: float, batch_size: int = 2) -> ExportResult:
    """Compare the ONNX model (ONNX Runtime) with PyTorch on real letterboxed images.

    Runs batches of ``batch_size`` (exercises the dynamic batch axis). Returns the largest absolute
    difference over all raw outputs; ``passed`` is ``diff <= max_abs_diff``.

    Raises:
        ExportError: no images could be read.
    """
    frames = [img for img in (cv2.imread(str(p)) for p in images) if img is not None]
    if not frames:
        raise ExportError(f"export check: none of {len(images)} check images could be read")
    torch_backend = TorchBackend(model, "cpu")
    ort_backend = OnnxBackend(onnx_path)
    step = batch_size if ort_backend.fixed_batch is None else 1
    worst = 0.0
    for i in range(0, len(frames), step):
        batch, _ = preprocess(frames[i:i + step], input_size)
        diff = (ort_backend(batch) - torch_backend(batch)).abs().max().item()
        worst = max(worst, diff)
    opset = next((o.version for o in onnx.load(str(onnx_path)).opset_import if o.domain in ("", "ai.onnx")), -1)
    result = ExportResult(Path(onnx_path), worst, len(frames), opset, worst <= max_abs_diff)
    log.info("ONNX check: max |onnx - torch| = %.3g over %d images (limit %.3g): %s", worst, len(frames),
             max_abs_diff, "passed" if result.passed else "FAILED")
    return result


def read_metadata(onnx_path: str | Path) -> dict[str, object]:
    """The metadata written by :func:`export_onnx`: names (list), input_size (int), model_name, strides."""
    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    out: dict[str, object] = dict(meta)
    if "names" in meta:
        out["names"] = json.loads(meta["names"])
    if "input_size" in meta:
        out["input_size"] = int(meta["input_size"])
    if "strides" in meta:
        out["strides"] = json.loads(meta["strides"])
    return out


