"""Post-processing: score filtering and class-aware NMS (the authors' evaluation protocol)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from yolox.ops.boxes import cxcywh_to_xyxy
from yolox.ops.decode import cached_anchor_points, decode_boxes


@dataclass
class Detections:
    """Detections of one image. ``boxes`` (N, 4) float32 xyxy pixels, ``scores`` (N,) float32,
    ``labels`` (N,) int64 contiguous class indices. Sorted by descending score."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64))


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Greedy NMS: indices of kept boxes, by descending score (stable for ties).

    Args:
        boxes_xyxy: (N, 4) float32 pixels. scores: (N,). iou_thresh: suppress IoU > this.
    Returns:
        (K,) int64 indices into the inputs.
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes_xyxy[order]
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0) * (y1 - y0)
    alive = np.ones(len(order), bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(order[i])
        rest = np.nonzero(alive[i + 1:])[0] + i + 1
        if rest.size == 0:
            break
        w = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
        h = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        alive[rest[iou > iou_thresh]] = False
    return np.asarray(keep, np.int64)


def batched_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other. Returns kept indices,
    by descending score. Each class's boxes are moved (after shifting all to start at 0) by
    ``label * (extent + 1)``, so boxes of different classes cannot overlap, whatever their sign."""
    if len(scores) == 0:
        return np.zeros((0,), np.int64)
    low = float(boxes_xyxy.min())
    extent = float(boxes_xyxy.max()) - low
    offset = labels.astype(np.float64)[:, None] * (extent + 1.0)
    return nms((boxes_xyxy.astype(np.float64) - low) + offset, scores, iou_thresh)


def postprocess(decoded: torch.Tensor, conf_thresh: float, nms_thresh: float, max_det: int | None = None
                ) -> list[Detections]:
    """Per image: best class per prediction, score = obj * cls_best, keep score >= conf_thresh,
    class-aware NMS, at most ``max_det`` by score.

    Args:
        decoded: (B, A, 5 + C) ``[cx, cy, w, h, obj_prob, cls_probs...]`` in input pixels (probabilities,
            i.e. after sigmoid), any float dtype.
    Returns:
        One :class:`Detections` per image, boxes xyxy in input pixels.
    """
    decoded = decoded.float()
    boxes = cxcywh_to_xyxy(decoded[..., :4])
    cls_conf, cls_idx = decoded[..., 5:].max(dim=-1)
    return select_detections(boxes, decoded[..., 4] * cls_conf, cls_idx, conf_thresh, nms_thresh, max_det)


def postprocess_raw(outputs: torch.Tensor, input_hw: tuple[int, int], strides: tuple[int, ...], conf_thresh: float,
                    nms_thresh: float, max_det: int | None = None) -> list[Detections]:
    """:func:`postprocess` of :func:`~yolox.ops.decode.decode_outputs` of raw predictions, the same detections
    (the same float32 operations on the same values), decoding only the predictions that can pass.

    A prediction's score ``obj * cls_best`` is at most its ``obj`` (class probabilities are <= 1, and a float32
    product rounds monotonically), so only predictions with ``obj >= conf_thresh`` are looked at: their best
    class, their score, and, for those with score >= ``conf_thresh``, their boxes (:func:`decode_boxes` on the
    cached grid of ``input_hw``). At serving thresholds that is a few dozen of the 3549 predictions at 416 px.

    Args:
        outputs: (B, A, 5 + C) ``[x, y, log w, log h, obj_prob, cls_probs...]`` (the raw layout), CPU.
        input_hw: the network input's (height, width), pixels. strides: of the output levels.
    Returns:
        One :class:`Detections` per image, boxes xyxy in input pixels.
    """
    outputs = outputs.float()
    grid, stride = cached_anchor_points(tuple(input_hw), tuple(strides))
    if grid.device != outputs.device:
        grid, stride = grid.to(outputs.device), stride.to(outputs.device)
    results = []
    for out in outputs:
        cand = torch.nonzero(out[:, 4] >= conf_thresh).squeeze(1)
        sub = out[cand]
        cls_conf, cls_idx = sub[:, 5:].max(dim=1)
        score = sub[:, 4] * cls_conf
        keep = score >= conf_thresh
        cand, sub = cand[keep], sub[keep]
        boxes = cxcywh_to_xyxy(decode_boxes(sub[:, :4], grid[cand], stride[cand])).cpu().numpy()
        sc, lb = score[keep].cpu().numpy(), cls_idx[keep].cpu().numpy().astype(np.int64)
        kept = batched_nms(boxes, sc, lb, nms_thresh)
        if max_det is not None:
            kept = kept[:max_det]
        results.append(Detections(boxes[kept], sc[kept], lb[kept]))
    return results


def postprocess_scores(boxes_xyxy: torch.Tensor, scores: torch.Tensor, conf_thresh: float, nms_thresh: float,
                       max_det: int | None = None) -> list[Detections]:
    """:func:`postprocess` of a ``decoded`` export's outputs: boxes (B, A, 4) xyxy input pixels, scores (B, A, C)
    = obj * cls (so the best class's score is obj * cls_best, as in :func:`postprocess`)."""
    best, label = scores.float().max(dim=-1)
    return select_detections(boxes_xyxy.float(), best, label, conf_thresh, nms_thresh, max_det)


def select_detections(boxes_xyxy: torch.Tensor, score: torch.Tensor, label: torch.Tensor, conf_thresh: float,
                      nms_thresh: float, max_det: int | None) -> list[Detections]:
    """Per image: keep score >= conf_thresh, class-aware NMS (:func:`batched_nms`), at most ``max_det``.

    Args:
        boxes_xyxy: (B, A, 4) float32 input pixels. score: (B, A) float32. label: (B, A) integer class.
    """
    results = []
    for b in range(boxes_xyxy.shape[0]):
        mask = score[b] >= conf_thresh
        bx = boxes_xyxy[b][mask].cpu().numpy()
        sc = score[b][mask].cpu().numpy()
        lb = label[b][mask].cpu().numpy().astype(np.int64)
        keep = batched_nms(bx, sc, lb, nms_thresh)
        if max_det is not None:
            keep = keep[:max_det]
        results.append(Detections(bx[keep], sc[keep], lb[keep]))
    return results
