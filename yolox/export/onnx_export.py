"""ONNX export of YOLOX and its check against PyTorch.

The exported graph takes ``images`` (B, 3, S, S) float32 BGR 0-255 (letterboxed, top-left, pad 114) and, by
variant (:data:`yolox.models.meta.Variant`, :mod:`yolox.export.variants`), returns ``output`` (B, A, 5 + C) =
``[x, y, log w, log h]`` raw grid offsets, sigmoid(objectness), sigmoid(classes) (``raw``: the layout of the
authors' released ONNX, decoded by the same :func:`yolox.ops.decode.decode_outputs` as every other backend),
``boxes`` + ``scores`` (``decoded``) or ``num_dets``, ``boxes``, ``scores``, ``labels`` (``end2end``, NMS in the
graph). ``decoded`` and ``end2end`` graphs take any H, W (multiples of 32) unless exported without dynamic_hw.
The model metadata carries the :class:`yolox.models.meta.ModelMeta` (``yolox.models.meta``, JSON; its ``export`` says the
variant, precision and baked thresholds) and flat keys (:meth:`yolox.models.meta.ModelMeta.onnx_props`): enough to
run the model with ONNX Runtime alone.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import torch

from yolox.config import EvalParams
from yolox.errors import ExportError
from yolox.export.variants import OUTPUTS, dynamic_axes, graph_for
from yolox.files import atomic_path
from yolox.inference import OnnxBackend, TorchBackend, detect_batch, preprocess
from yolox.models.meta import ExportFormat, ModelMeta
from yolox.models.yolox import YOLOX
from yolox.ops.boxes import pairwise_iou_cxcywh, xyxy_to_cxcywh
from yolox.ops.nms import Detections

log = logging.getLogger("yolox.export")


OUTPUT_NOTE = {"raw": "x,y,logw,logh raw; obj, cls sigmoid",
               "decoded": "boxes xyxy input pixels; scores obj * cls",
               "end2end": "num_dets; boxes xyxy input pixels; scores; labels (class-aware NMS in the graph)"}
"""The flat ``output`` metadata key: one line on what the outputs hold."""


@dataclass
class ExportResult:
    """An exported model and how closely it matches PyTorch on real images.

    ``max_abs_diff``: the largest |onnx - torch| over the compared outputs (raw: all raw outputs, grid offsets,
    log sizes and probabilities; decoded and end2end: the larger of the matched detections' box-corner difference,
    in input pixels, and score difference).
    ``max_score_diff``, ``max_box_diff`` (input pixels) and ``unmatched`` (detections of one side without a
    counterpart of the same class on the other) for decoded and end2end, which compare detections.
    """

    path: Path
    max_abs_diff: float
    num_check_images: int
    opset: int
    passed: bool
    variant: str = "raw"
    max_score_diff: float | None = None
    max_box_diff: float | None = None
    unmatched: int = 0


def export_onnx(model: YOLOX, out_path: str | Path, input_size: int, names: Sequence[str], model_name: str,
                opset: int = 17, dynamic_batch: bool = True, simplify: bool = True, variant: str = "raw",
                conf_thresh: float | None = None, nms_thresh: float | None = None, max_det: int | None = None,
                dynamic_hw: bool | None = None) -> Path:
    """Export ``model`` (eval mode, CPU, float32) to ONNX as ``variant`` (:data:`yolox.models.meta.Variant`) with its
    :class:`~yolox.models.meta.ModelMeta` in the metadata; optionally slimmed by onnxslim.

    Writes ``out_path`` atomically (:func:`yolox.files.atomic_path`): the graph is exported, given its metadata,
    slimmed and checked in a temp file beside it, renamed onto ``out_path`` only when complete; a failure, Ctrl-C
    or SIGTERM leaves the previous file intact and no temp file behind.

    Args:
        conf_thresh, nms_thresh, max_det: baked into an ``end2end`` graph (required for it, ignored otherwise).
        dynamic_hw: symbolic input height and width (multiples of 32); default: for decoded and end2end only.

    Uses the TorchScript-based exporter (``dynamo=False``), which needs no extra packages.

    Raises:
        ExportError: the exporter failed, or an end2end export lacks a threshold.
    """
    out_path = Path(out_path)
    if dynamic_hw is None:
        dynamic_hw = variant != "raw"
    baked = (conf_thresh, nms_thresh, max_det) if variant == "end2end" else (None, None, None)
    if variant == "end2end" and None in baked:
        raise ExportError(f"end2end export of {model_name}: conf, NMS IoU and max detections must all be given "
                          f"(got {baked})")
    try:
        fmt = ExportFormat(variant, "fp32", *baked, dynamic_hw=dynamic_hw, outputs=OUTPUTS[variant])
    except Exception as err:  # noqa: BLE001 - a ConfigError for an unknown variant
        raise ExportError(f"export of {model_name}: {err}") from None
    wrapper = graph_for(variant, model.cpu().float(), *baked).eval()
    dummy = torch.zeros(1, 3, input_size, input_size)
    meta = ModelMeta(model_name, input_size, tuple(names), tuple(model.strides), export=fmt)
    with atomic_path(out_path) as tmp:  # the exporter writes its graph here, then the final model over it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(wrapper, (dummy,), str(tmp), opset_version=opset, input_names=["images"],
                                  output_names=list(OUTPUTS[variant]),
                                  dynamic_axes=dynamic_axes(variant, dynamic_batch, dynamic_hw), dynamo=False)
        except Exception as err:  # any exporter failure, surfaced with the model and path
            raise ExportError(f"ONNX export of {model_name} to {out_path} failed: {err}") from err
        graph = onnx.load(str(tmp))
        if simplify:
            import onnxslim

            graph = onnxslim.slim(graph)
        write_metadata(graph, meta)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
    log.info("exported %s as %s (opset %d) to %s", model_name, variant, opset, out_path)
    return out_path


def write_metadata(graph: onnx.ModelProto, meta: ModelMeta) -> None:
    """Replace ``graph``'s ``metadata_props`` with ``meta``'s (:meth:`~yolox.models.meta.ModelMeta.onnx_props`, plus
    the one-line ``output`` note)."""
    props = {**meta.onnx_props(), "output": OUTPUT_NOTE[meta.variant]}
    del graph.metadata_props[:]
    for k, v in props.items():
        graph.metadata_props.add(key=k, value=v)


def with_precision(meta: ModelMeta, precision: str) -> ModelMeta:
    """``meta`` of the same export at another numeric precision (``int8`` after quantization)."""
    fmt = meta.export or ExportFormat()
    return replace(meta, export=replace(fmt, precision=precision))


def check_onnx(model: YOLOX, onnx_path: str | Path, images: Sequence[Path], input_size: int,
               max_abs_diff: float, batch_size: int = 2, max_score_diff: float = 1e-4,
               max_box_diff: float = 1e-2, backend: Any = None, label: str = "ONNX") -> ExportResult:
    """Compare the ONNX model (ONNX Runtime) with PyTorch on real letterboxed images, by its variant; or, with
    ``backend`` (an exported model opened by another runtime, e.g. :class:`yolox.inference.OpenVinoBackend` on
    the IR ``onnx_path``), that backend, its log lines named ``label``.

    ``raw``: the largest absolute difference over all raw outputs; ``passed`` is ``diff <= max_abs_diff``.
    ``decoded`` and ``end2end``: the detections (:func:`yolox.inference.detect_batch`; at the baked thresholds
    for end2end, the authors' eval protocol for decoded) must be the same: same classes, scores within
    ``max_score_diff``, boxes within ``max_box_diff`` input pixels (:func:`compare_detections`). Runs batches of
    ``batch_size`` (exercises the dynamic batch axis).

    Raises:
        ExportError: no images could be read.
    """
    frames = [img for img in (cv2.imread(str(p)) for p in images) if img is not None]
    if not frames:
        raise ExportError(f"export check: none of {len(images)} check images could be read")
    torch_backend = TorchBackend(model, "cpu")
    ort_backend = OnnxBackend(onnx_path) if backend is None else backend
    variant = ort_backend.variant
    fmt = ort_backend.meta.export if ort_backend.meta is not None else None
    step = batch_size if ort_backend.fixed_batch is None else 1
    if variant == "end2end" and fmt is not None:
        thresholds = (fmt.conf_thresh, fmt.nms_thresh, fmt.max_det)
    else:
        ep = EvalParams()
        thresholds = (ep.conf_thresh, ep.nms_thresh, ep.max_det)
    worst, diff = 0.0, DetectionDiff()
    for i in range(0, len(frames), step):
        batch, _ = preprocess(frames[i:i + step], input_size)
        if variant == "raw":
            worst = max(worst, (ort_backend(batch) - torch_backend(batch)).abs().max().item())
            continue
        for a, b in zip(detect_batch(torch_backend, batch, *thresholds), detect_batch(ort_backend, batch, *thresholds)):
            diff = diff.merge(compare_detections(a, b, thresholds[0], max_score_diff))
    opset = -1 if backend is not None else next(
        (o.version for o in onnx.load(str(onnx_path)).opset_import if o.domain in ("", "ai.onnx")), -1)
    if variant == "raw":
        result = ExportResult(Path(onnx_path), worst, len(frames), opset, worst <= max_abs_diff)
        log.info("%s check (raw): max |%s - torch| = %.3g on the raw outputs (grid offsets, log sizes, "
                 "probabilities) over %d images (limit %.3g): %s", label, label.lower(), worst, len(frames), max_abs_diff,
                 "passed" if result.passed else "FAILED")
        return result
    worst = max(diff.max_score_diff, diff.max_box_diff)
    passed = diff.unmatched == 0 and diff.max_score_diff <= max_score_diff and diff.max_box_diff <= max_box_diff
    result = ExportResult(Path(onnx_path), worst, len(frames), opset, passed, variant, diff.max_score_diff,
                          diff.max_box_diff, diff.unmatched)
    log.info("%s check (%s): %d detections matched, %d unmatched, max |score diff| %.3g (limit %.3g), max "
             "|box diff| %.3g px (limit %.3g) over %d images: %s", label, variant, diff.matched, diff.unmatched,
             diff.max_score_diff, max_score_diff, diff.max_box_diff, max_box_diff, len(frames),
             "passed" if passed else "FAILED")
    return result


@dataclass(frozen=True)
class DetectionDiff:
    """How two sets of detections differ: ``matched`` pairs (same class, best IoU), ``unmatched`` detections
    (either side), and the largest score and box-coordinate differences of the matched pairs."""

    matched: int = 0
    unmatched: int = 0
    max_score_diff: float = 0.0
    max_box_diff: float = 0.0

    def merge(self, other: DetectionDiff) -> DetectionDiff:
        return DetectionDiff(self.matched + other.matched, self.unmatched + other.unmatched,
                             max(self.max_score_diff, other.max_score_diff), max(self.max_box_diff, other.max_box_diff))


def compare_detections(a: Detections, b: Detections, conf_thresh: float = 0.0, score_tol: float = 1e-4
                       ) -> DetectionDiff:
    """Match ``a``'s detections to ``b``'s: each to the unused one of the same class with the highest IoU.

    A detection without a counterpart counts as unmatched unless it sits on a cut-off, where float rounding may
    decide either way: its score within ``score_tol`` of ``conf_thresh``, or of the lowest score of a side (the
    ``max_det`` cut).
    """
    used = np.zeros(len(b), bool)
    matched, unmatched, ds, db = 0, 0, 0.0, 0.0
    if len(a) and len(b):
        iou = pairwise_iou_cxcywh(xyxy_to_cxcywh(torch.from_numpy(a.boxes).double()),
                                  xyxy_to_cxcywh(torch.from_numpy(b.boxes).double())).numpy()
        iou[a.labels[:, None] != b.labels[None, :]] = -1.0
    cut = min([float(d.scores.min()) for d in (a, b) if len(d)] or [conf_thresh])
    for i in range(len(a)):
        j = -1
        if len(b):
            cand = np.where(used, -1.0, iou[i])
            j = int(cand.argmax()) if cand.max() > 0.5 else -1
        if j < 0:
            unmatched += not _on_cut(float(a.scores[i]), conf_thresh, cut, score_tol)
            continue
        used[j] = True
        matched += 1
        ds = max(ds, abs(float(a.scores[i]) - float(b.scores[j])))
        db = max(db, float(np.abs(a.boxes[i] - b.boxes[j]).max()))
    unmatched += sum(not _on_cut(float(s), conf_thresh, cut, score_tol) for s in b.scores[~used])
    return DetectionDiff(matched, unmatched, ds, db)


def _on_cut(score: float, conf_thresh: float, cut: float, tol: float) -> bool:
    return abs(score - conf_thresh) <= tol or abs(score - cut) <= tol


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


