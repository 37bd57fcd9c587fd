"""Box conversions and IoU. Boxes are float tensors in pixels; names say the format."""

from __future__ import annotations

import numpy as np
import torch


def cxcywh_to_xyxy(boxes_cxcywh: torch.Tensor) -> torch.Tensor:
    """(..., 4) ``cx, cy, w, h`` -> (..., 4) ``x0, y0, x1, y1``."""
    c, wh = boxes_cxcywh[..., :2], boxes_cxcywh[..., 2:4]
    return torch.cat([c - wh / 2, c + wh / 2], dim=-1)


def xyxy_to_cxcywh(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """(..., 4) ``x0, y0, x1, y1`` -> (..., 4) ``cx, cy, w, h``."""
    p0, p1 = boxes_xyxy[..., :2], boxes_xyxy[..., 2:4]
    return torch.cat([(p0 + p1) / 2, p1 - p0], dim=-1)


def pairwise_iou_cxcywh(a_cxcywh: torch.Tensor, b_cxcywh: torch.Tensor) -> torch.Tensor:
    """IoU of every pair: (..., N, 4) x (..., M, 4) cxcywh -> (..., N, M).

    As the authors' ``bboxes_iou(xyxy=False)``: the intersection is taken as zero when the boxes do not
    overlap, and IoU = inter / (area_a + area_b - inter) with no epsilon (areas are > 0 for real boxes).
    """
    a0 = a_cxcywh[..., :, None, :2] - a_cxcywh[..., :, None, 2:4] / 2
    a1 = a_cxcywh[..., :, None, :2] + a_cxcywh[..., :, None, 2:4] / 2
    b0 = b_cxcywh[..., None, :, :2] - b_cxcywh[..., None, :, 2:4] / 2
    b1 = b_cxcywh[..., None, :, :2] + b_cxcywh[..., None, :, 2:4] / 2
    tl = torch.maximum(a0, b0)
    br = torch.minimum(a1, b1)
    overlap = (tl < br).all(dim=-1)
    inter = (br - tl).prod(dim=-1) * overlap
    area_a = a_cxcywh[..., :, None, 2:4].prod(-1)
    area_b = b_cxcywh[..., None, :, 2:4].prod(-1)
    return inter / (area_a + area_b - inter)


def iou_cxcywh(a_cxcywh: torch.Tensor, b_cxcywh: torch.Tensor, eps: float = 1e-16) -> torch.Tensor:
    """Element-wise IoU of aligned boxes (..., 4) cxcywh -> (...). As the authors' ``IOUloss``
    (``inter / (area_p + area_g - inter + 1e-16)``, intersection zero when disjoint)."""
    tl = torch.maximum(a_cxcywh[..., :2] - a_cxcywh[..., 2:4] / 2, b_cxcywh[..., :2] - b_cxcywh[..., 2:4] / 2)
    br = torch.minimum(a_cxcywh[..., :2] + a_cxcywh[..., 2:4] / 2, b_cxcywh[..., :2] + b_cxcywh[..., 2:4] / 2)
    overlap = (tl < br).all(dim=-1)
    inter = (br - tl).prod(dim=-1) * overlap
    union = a_cxcywh[..., 2:4].prod(-1) + b_cxcywh[..., 2:4].prod(-1) - inter
    return inter / (union + eps)


def pairwise_iou_xyxy(a_xyxy: torch.Tensor, b_xyxy: torch.Tensor) -> torch.Tensor:
    """IoU of every pair: (N, 4) x (M, 4) xyxy -> (N, M); 0 where the union is empty."""
    tl = torch.maximum(a_xyxy[:, None, :2], b_xyxy[None, :, :2])
    br = torch.minimum(a_xyxy[:, None, 2:], b_xyxy[None, :, 2:])
    inter = (br - tl).clamp(min=0).prod(-1)
    area_a = (a_xyxy[:, 2:] - a_xyxy[:, :2]).clamp(min=0).prod(-1)
    area_b = (b_xyxy[:, 2:] - b_xyxy[:, :2]).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def clip_xyxy(boxes_xyxy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Clip (N, 4) xyxy pixel boxes to an image of ``height`` x ``width`` pixels in place (x in [0, width],
    y in [0, height]) and return them. For reported detections only: evaluation keeps boxes unclipped."""
    np.clip(boxes_xyxy[:, 0::2], 0, width, out=boxes_xyxy[:, 0::2])
    np.clip(boxes_xyxy[:, 1::2], 0, height, out=boxes_xyxy[:, 1::2])
    return boxes_xyxy
