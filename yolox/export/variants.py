"""The graphs an export can end with (:data:`yolox.models.meta.Variant`), as PyTorch modules traced by the exporter.

- ``raw``: :class:`yolox.models.InferenceModel` (the authors' layout, undecoded).
- ``decoded``: :class:`DecodedModel`: the one decode (:func:`yolox.ops.decode.decode_outputs`) inside the graph,
  on a grid built from the input's own height and width (dynamic H/W).
- ``end2end``: :class:`End2EndModel`: decoded + the project's class-aware NMS (:func:`yolox.ops.nms.postprocess`
  semantics: best class per prediction, score = obj * cls_best, score >= conf, NMS per class, top ``max_det``
  by score) with ONNX ``NonMaxSuppression`` (opset >= 10) in the graph.

How the end2end graph matches :func:`yolox.ops.nms.postprocess`:

* every prediction enters the NMS under its best class only (``ArgMax``, first index on ties), its other
  classes' scores are set to -1, below any threshold;
* ``score >= conf``: ``NonMaxSuppression`` keeps ``score > score_threshold``, so the baked threshold is the
  float32 just below ``conf`` (scores are float32);
* suppression when IoU > ``nms_thresh`` (ONNX Runtime, as :func:`yolox.ops.nms.nms`), at most ``max_det``
  per class (no class can contribute more to the final top ``max_det``);
* the kept predictions' scores are scattered back to a (B, A) map (-1 elsewhere), padded with ``max_det``
  columns of -1 and the top ``max_det`` taken (``TopK``: descending, lower index first on ties, like the
  stable sort of :func:`yolox.ops.nms.nms`): fixed-size outputs whatever the input size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from yolox.models.yolox import YOLOX, InferenceModel
from yolox.ops.boxes import cxcywh_to_xyxy
from yolox.ops.decode import decode_outputs
from yolox.ops.nms import batched_nms

OUTPUTS: dict[str, tuple[str, ...]] = {
    "raw": ("output",),
    "decoded": ("boxes", "scores"),
    "end2end": ("num_dets", "boxes", "scores", "labels"),
}
"""Output names of each variant, in order (see :data:`yolox.models.meta.Variant` for shapes and dtypes)."""


def dynamic_axes(variant: str, dynamic_batch: bool, dynamic_hw: bool) -> dict[str, dict[int, str]] | None:
    """``torch.onnx.export``'s ``dynamic_axes`` for ``variant``: ``batch`` on every tensor; with ``dynamic_hw``,
    ``height``/``width`` on the input and ``anchors`` on per-anchor outputs (raw, decoded), and the last axis of
    the decoded outputs named for what it holds (``xyxy``: 4 box corners; ``classes``: C), which the exporter
    cannot infer through the decode on a dynamic grid (it would name them ``Concatboxes_dim_2``...). The end2end
    outputs' axes besides the batch are fixed (1, K = ``max_det``, 4: :class:`End2EndModel`)."""
    axes: dict[str, dict[int, str]] = {"images": {}}
    for name in OUTPUTS[variant]:
        axes[name] = {}
    if dynamic_batch:
        for v in axes.values():
            v[0] = "batch"
    if dynamic_hw:
        axes["images"].update({2: "height", 3: "width"})
        if variant in ("raw", "decoded"):
            for name in OUTPUTS[variant]:
                axes[name][1] = "anchors"
        if variant == "decoded":
            axes["boxes"][2], axes["scores"][2] = "xyxy", "classes"
    return axes if any(axes.values()) else None


class DecodedModel(nn.Module):
    """``images`` (B, 3, H, W) float32 BGR 0-255 -> ``boxes`` (B, A, 4) float32 xyxy input pixels, ``scores``
    (B, A, C) float32 = sigmoid(obj) * sigmoid(cls). H and W: multiples of the largest stride."""

    def __init__(self, model: YOLOX) -> None:
        super().__init__()
        self.net = InferenceModel(model)
        self.strides = tuple(model.strides)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        decoded = decode_outputs(self.net(images), images.shape[2:], self.strides)
        return cxcywh_to_xyxy(decoded[..., :4]), decoded[..., 4:5] * decoded[..., 5:]


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (``center_point_box=0``: corners, either order) in an exported graph; in
    PyTorch, the same selection by :func:`yolox.ops.nms.nms` per image and class (what is traced is the symbol)."""

    @staticmethod
    def forward(ctx, boxes: torch.Tensor, scores: torch.Tensor, max_per_class: torch.Tensor,
                iou: torch.Tensor, score_thresh: torch.Tensor) -> torch.Tensor:
        rows = []
        k, t, s = int(max_per_class), float(iou), float(score_thresh)
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                idx = torch.nonzero(scores[b, c] > s).flatten()
                if idx.numel() == 0:
                    continue
                sub = batched_nms(boxes[b, idx].numpy(), scores[b, c, idx].numpy(), np.zeros(len(idx), np.int64), t)
                for i in idx[torch.from_numpy(sub[:k])].tolist():
                    rows.append((b, c, i))
        return torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou, score_thresh):
        return g.op("NonMaxSuppression", boxes, scores, max_per_class, iou, score_thresh, center_point_box_i=0)


class End2EndModel(nn.Module):
    """``images`` (B, 3, H, W) float32 BGR 0-255 -> ``num_dets`` (B, 1) int64, ``boxes`` (B, K, 4) float32 xyxy
    input pixels, ``scores`` (B, K) float32, ``labels`` (B, K) int64; K = ``max_det``, by descending score, rows
    past ``num_dets`` zero with label -1. Keeps score >= ``conf_thresh``, class-aware NMS at IoU ``nms_thresh``."""

    def __init__(self, model: YOLOX, conf_thresh: float, nms_thresh: float, max_det: int) -> None:
        super().__init__()
        self.decoded = DecodedModel(model)
        self.max_det = int(max_det)
        # buffers become graph constants: the thresholds are baked in
        below_conf = np.nextafter(np.float32(conf_thresh), np.float32(-np.inf))
        self.register_buffer("score_thresh", torch.tensor([below_conf], dtype=torch.float32), persistent=False)
        self.register_buffer("iou_thresh", torch.tensor([nms_thresh], dtype=torch.float32), persistent=False)
        self.register_buffer("max_per_class", torch.tensor([self.max_det], dtype=torch.int64), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        boxes, scores = self.decoded(images)                                  # (B, A, 4), (B, A, C)
        best, label = scores.max(dim=-1)                                      # (B, A)
        classes = torch.arange(scores.shape[-1], device=scores.device)
        only_best = torch.where(label.unsqueeze(-1) == classes, best.unsqueeze(-1), torch.full_like(scores, -1.0))
        selected = _NonMaxSuppression.apply(boxes, only_best.transpose(1, 2).contiguous(), self.max_per_class,
                                            self.iou_thresh, self.score_thresh)  # (M, 3) batch, class, anchor
        kept = torch.zeros_like(best)
        kept[selected[:, 0], selected[:, 2]] = torch.ones_like(selected[:, 0], dtype=best.dtype)
        ranked = torch.where(kept > 0, best, torch.full_like(best, -1.0))
        ranked = F.pad(ranked, (0, self.max_det), value=-1.0)                 # (B, A + K): K always available
        top, index = ranked.topk(self.max_det, dim=1)                         # (B, K)
        valid = top >= 0
        box_pad = F.pad(boxes, (0, 0, 0, self.max_det))
        out_boxes = torch.gather(box_pad, 1, index.unsqueeze(-1).expand(-1, -1, 4))
        out_labels = torch.gather(F.pad(label, (0, self.max_det)), 1, index)
        num_dets = valid.sum(dim=1, keepdim=True).to(torch.int64)
        # the fixed shapes said again (a no-op in PyTorch) so that the exported outputs are (batch, K, 4) and
        # (batch, K): through Where the exporter loses K and names the axis 'Whereboxes_dim_1'
        k = self.max_det
        return (num_dets.reshape(-1, 1),
                torch.where(valid.unsqueeze(-1), out_boxes, torch.zeros_like(out_boxes)).reshape(-1, k, 4),
                torch.where(valid, top, torch.zeros_like(top)).reshape(-1, k),
                torch.where(valid, out_labels, torch.full_like(out_labels, -1)).reshape(-1, k))


def graph_for(variant: str, model: YOLOX, conf_thresh: float | None = None, nms_thresh: float | None = None,
              max_det: int | None = None) -> nn.Module:
    """The module to export for ``variant`` (eval mode). ``end2end`` needs the three thresholds."""
    if variant == "raw":
        return InferenceModel(model).eval()
    if variant == "decoded":
        return DecodedModel(model).eval()
    if conf_thresh is None or nms_thresh is None or max_det is None:
        raise ValueError("an end2end graph needs conf_thresh, nms_thresh and max_det")
    return End2EndModel(model, conf_thresh, nms_thresh, max_det).eval()
