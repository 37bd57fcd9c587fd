"""YOLOX losses (REFERENCE.md, 'Label assignment' step 5; the authors' ``YOLOXHead.get_losses``).

All terms are summed over the batch and divided by the number of positives (at least 1):

- IoU loss ``5.0 * (1 - IoU^2)`` on positives (IoU between the decoded prediction and its box);
- objectness BCE on every anchor point, target 1 for positives and 0 otherwise;
- class BCE on positives, target ``one_hot(class) * IoU(prediction, matched box)``;
- in the no-augmentation epochs, L1 between the raw regression ``(x, y, log w, log h)`` and the box
  encoded the same way (``gt_cx / stride - col``, ..., ``log(gt_w / stride + 1e-8)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from yolox.models.table import STRIDES
from yolox.ops.boxes import iou_cxcywh
from yolox.ops.decode import anchor_points, decode_boxes
from yolox.train.assign import Assignment, simota_assign

REG_WEIGHT = 5.0


@dataclass
class LossOutput:
    """Scalar tensors: ``total`` (backpropagated) and its parts; ``num_fg`` positives in the batch."""

    total: torch.Tensor
    iou: torch.Tensor
    obj: torch.Tensor
    cls: torch.Tensor
    l1: torch.Tensor
    num_fg: int

    def as_dict(self) -> dict[str, float]:
        """Plain floats for logging: total_loss, iou_loss, obj_loss, cls_loss, l1_loss, num_fg."""
        parts = {"total_loss": self.total, "iou_loss": self.iou, "obj_loss": self.obj, "cls_loss": self.cls,
                 "l1_loss": self.l1}
        return {**{k: float(v.detach()) for k, v in parts.items()}, "num_fg": float(self.num_fg)}


def yolox_loss(raw: torch.Tensor, targets: torch.Tensor, num_targets: torch.Tensor,
               input_hw: tuple[int, int], strides: tuple[int, ...] = STRIDES,
               use_l1: bool = False) -> LossOutput:
    """Assign with SimOTA and compute the YOLOX loss for one batch.

    Args:
        raw: (B, A, 5 + C) raw head outputs ``[x, y, log w, log h, obj logit, class logits]``
            (:class:`yolox.models.head.YOLOXHead`), any float dtype.
        targets: (B, G, 5) float32 rows ``[class, cx, cy, w, h]`` in input pixels, zero padded.
        num_targets: (B,) int64 valid rows of each image (the first ones).
        input_hw: input height and width (pixels). use_l1: add the L1 term (no-aug epochs).
    Returns:
        :class:`LossOutput`.
    """
    raw = raw.float()
    if targets.shape[1] == 0:  # no box anywhere in the batch: one zero row keeps the gathers valid
        targets = targets.new_zeros(targets.shape[0], 1, 5)
        num_targets = torch.zeros_like(num_targets)
    B, A = raw.shape[:2]
    G = targets.shape[1]
    grid, stride = anchor_points(input_hw, strides, raw.device, raw.dtype)
    # One split, not four slices: the backward then writes the (B, A, 5 + C) gradient once (a cat)
    # instead of zero-filling and summing one full-size gradient per slice.
    box_raw, obj_raw, cls_logits = raw.split((4, 1, raw.shape[-1] - 5), dim=-1)
    obj_logits = obj_raw.squeeze(-1)                               # (B, A)
    pred_boxes = decode_boxes(box_raw, grid, stride)               # (B, A, 4) cxcywh pixels

    gt_valid = torch.arange(G, device=raw.device)[None, :] < num_targets.to(raw.device)[:, None]
    gt_classes = targets[..., 0].long().clamp(min=0)
    gt_boxes = targets[..., 1:5]
    assignment: Assignment = simota_assign(pred_boxes.detach(), cls_logits.detach(), obj_logits.detach(),
                                           gt_boxes, gt_classes, gt_valid, grid, stride)
    fg = assignment.fg_mask
    num_fg = max(assignment.num_fg, 1)

    box_targets = gt_boxes.gather(1, assignment.matched_gt[..., None].expand(B, A, 4))[fg]   # (F, 4)
    cls_targets = (F.one_hot(gt_classes.gather(1, assignment.matched_gt)[fg], cls_logits.shape[-1]).float()
                   * assignment.matched_iou[fg][:, None])
    loss_iou = (1 - iou_cxcywh(pred_boxes[fg], box_targets) ** 2).sum() / num_fg
    loss_obj = F.binary_cross_entropy_with_logits(obj_logits, fg.float(), reduction="sum") / num_fg
    loss_cls = F.binary_cross_entropy_with_logits(cls_logits[fg], cls_targets, reduction="sum") / num_fg
    if use_l1:
        s = stride.expand(B, A)[fg][:, None]
        cells = grid.expand(B, A, 2)[fg]
        l1_targets = torch.cat([box_targets[:, :2] / s - cells, torch.log(box_targets[:, 2:4] / s + 1e-8)], dim=1)
        loss_l1 = F.l1_loss(box_raw[fg], l1_targets, reduction="sum") / num_fg
    else:
        loss_l1 = raw.new_zeros(())
    total = REG_WEIGHT * loss_iou + loss_obj + loss_cls + loss_l1
    return LossOutput(total, loss_iou, loss_obj, loss_cls, loss_l1, assignment.num_fg)
