"""SimOTA label assignment (YOLOX paper, section 2.2; REFERENCE.md 'Label assignment').

Five steps, per image:

1. Geometry prior: an anchor point is a candidate for ground-truth box g when its cell centre
   ``((col + 0.5) * stride, (row + 0.5) * stride)`` lies strictly within ``1.5 * stride`` of g's centre in
   x and in y. Only anchor points that are candidates for at least one box are considered.
2. Cost(g, p) = BCE(one_hot(class_g), sqrt(sigmoid(cls_p) * sigmoid(obj_p))) summed over classes
   + 3 * (-log(IoU(g, p) + 1e-8)) + 1e6 where p is outside g's geometry prior.
3. Dynamic k of g: sum of its 10 largest IoUs with the candidates (fewer if there are fewer
   candidates), truncated to int, at least 1. g takes its k lowest-cost candidates.
4. A prediction claimed by several boxes keeps only its lowest-cost box.
5. (losses.py) positives are trained towards their matched box.

:func:`simota_assign` does this for a whole batch in tensor operations: ground truths are padded to
the largest count in the batch, candidates are gathered per image into a padded (B, P) index, and
every step is a masked tensor operation; there is no Python loop over images or boxes.
:func:`simota_assign_reference` is the plain per-image version, kept as the oracle for tests and the
baseline of ``bench/assign.py``. Ties in cost are broken by anchor index (stable sort) in both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from yolox.ops.boxes import pairwise_iou_cxcywh

log = logging.getLogger("yolox.assign")

CENTER_RADIUS = 1.5
IOU_COST_WEIGHT = 3.0
OUTSIDE_PRIOR_COST = 1e6
TOPK_IOU = 10
# Above this many (image, box, candidate) cost entries, a batch is assigned in chunks of images to
# bound memory on crowded images (~16 bytes an entry across the live tensors).
MAX_COST_ENTRIES = 40_000_000


@dataclass
class Assignment:
    """SimOTA result for a batch.

    Attributes:
        fg_mask: (B, A) bool, True for positive anchor points.
        matched_gt: (B, A) int64 index of the matched box in the image's ground truths (0 where not fg).
        matched_iou: (B, A) float32 IoU between the prediction and its matched box (0 where not fg).
        num_fg: total number of positives in the batch (int).
    """

    fg_mask: torch.Tensor
    matched_gt: torch.Tensor
    matched_iou: torch.Tensor

    @property
    def num_fg(self) -> int:
        return int(self.fg_mask.sum())


def class_cost(cls_prob: torch.Tensor, gt_classes: torch.Tensor) -> torch.Tensor:
    """BCE between one-hot classes and predicted probabilities, summed over classes, for every pair.

    Computed as ``sum_c BCE(p_c, 0) + BCE(p_y, 1) - BCE(p_y, 0)`` so that no (G, P, C) tensor is built;
    log terms are clamped at -100 like ``F.binary_cross_entropy``.

    Args:
        cls_prob: (..., P, C) float32 probabilities (sqrt(cls * obj) in SimOTA).
        gt_classes: (..., G) int64 class indices.
    Returns:
        (..., G, P) float32.
    """
    neg_sum = (-torch.log1p(-cls_prob).clamp(min=-100)).sum(-1)                      # (..., P); BCE(p, 0)
    idx = gt_classes.unsqueeze(-2).expand(*cls_prob.shape[:-1], gt_classes.shape[-1])  # (..., P, G)
    p_y = cls_prob.gather(-1, idx)                          # the element-wise terms only where needed
    delta = -torch.log(p_y).clamp(min=-100) - -torch.log1p(-p_y).clamp(min=-100)      # BCE(p_y, 1) - BCE(p_y, 0)
    return (neg_sum.unsqueeze(-1) + delta).transpose(-1, -2)


def geometry_prior(gt_cxcywh: torch.Tensor, grid: torch.Tensor, stride: torch.Tensor) -> torch.Tensor:
    """(..., G, 4) boxes, (A, 2) cells, (A,) strides -> (..., G, A) bool: cell centre strictly within
    1.5 strides of the box centre in x and y."""
    centres = (grid + 0.5) * stride[:, None]                     # (A, 2)
    radius = (CENTER_RADIUS * stride)[:, None]                  # (A, 1)
    delta = (centres - gt_cxcywh[..., :, None, :2]).abs()        # (..., G, A, 2)
    return (delta < radius).all(dim=-1)


def _level_layout(grid: torch.Tensor, stride: torch.Tensor) -> list[tuple[int, int, int]] | None:
    """``[(start, rows, cols), ...]`` per level when the anchor points are the row-major grids of
    :func:`yolox.ops.decode.anchor_points`, else None (callers fall back to the dense prior)."""
    counts = torch.unique_consecutive(stride, return_counts=True)[1]
    layout, start = [], 0
    for count in counts.tolist():
        cols, rows = (int(v) + 1 for v in grid[start + count - 1].tolist())
        if rows * cols != count:
            return None
        layout.append((start, rows, cols))
        start += count
    return layout


def candidate_mask(gt_cxcywh: torch.Tensor, gt_valid: torch.Tensor, grid: torch.Tensor,
                   stride: torch.Tensor) -> torch.Tensor:
    """(B, G, 4), (B, G) bool, (A, 2), (A,) -> (B, A) bool: anchor points inside the geometry prior of
    at least one valid box; equal to ``(geometry_prior(...) & gt_valid[..., None]).any(1)``.

    The prior is separable: per level, a column test (B, G, W) and a row test (B, G, H) computed with
    the same float operations as :func:`geometry_prior`, combined over the boxes by a 0/1 matrix
    product (counts, exact in float), so no (B, G, A) tensor is built.
    """
    layout = _level_layout(grid, stride)
    if layout is None:
        return (geometry_prior(gt_cxcywh, grid, stride) & gt_valid[:, :, None]).any(dim=1)
    centres = (grid + 0.5) * stride[:, None]                     # (A, 2), as geometry_prior
    radius = CENTER_RADIUS * stride                              # (A,)
    valid = gt_valid.to(gt_cxcywh.dtype)[:, :, None]
    parts = []
    for start, rows, cols in layout:
        r = radius[start]
        col_in = ((centres[start:start + cols, 0] - gt_cxcywh[:, :, None, 0]).abs() < r).to(valid.dtype)
        row_in = ((centres[start:start + rows * cols:cols, 1] - gt_cxcywh[:, :, None, 1]).abs() < r
                  ).to(valid.dtype)
        hits = torch.bmm(row_in.transpose(1, 2), col_in * valid)            # (B, H, W): boxes per cell
        parts.append(hits.reshape(hits.shape[0], rows * cols) > 0)
    return torch.cat(parts, dim=1)


def _pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:func:`yolox.ops.boxes.pairwise_iou_cxcywh` for (B, N, 4) x (B, M, 4) -> (B, N, M), the same
    float operations written per coordinate (no (B, N, M, 2) tensors reduced over their last dim), so
    bit-identical results (up to the sign of a zero IoU), ~2x faster on CPU. The overlap is
    ``max(w, 0) * max(h, 0)``, equal to ``w * h * (w > 0 and h > 0)`` without the mask's passes."""
    ax0, ay0 = a[..., 0] - a[..., 2] / 2, a[..., 1] - a[..., 3] / 2
    ax1, ay1 = a[..., 0] + a[..., 2] / 2, a[..., 1] + a[..., 3] / 2
    bx0, by0 = b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2
    bx1, by1 = b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2
    tlx, tly = torch.maximum(ax0[..., :, None], bx0[..., None, :]), torch.maximum(ay0[..., :, None], by0[..., None, :])
    brx, bry = torch.minimum(ax1[..., :, None], bx1[..., None, :]), torch.minimum(ay1[..., :, None], by1[..., None, :])
    inter = (brx - tlx).clamp_(min=0) * (bry - tly).clamp_(min=0)
    area_a = (a[..., 2] * a[..., 3])[..., :, None]
    area_b = (b[..., 2] * b[..., 3])[..., None, :]
    return inter / (area_a + area_b - inter)


def _ascending_keys(values: torch.Tensor) -> torch.Tensor:
    """(..., P) float32 -> (..., P) int64 keys, distinct, whose order is that of a stable ascending
    sort of ``values`` (the value's IEEE bits made monotonic, then the position as tie-breaker)."""
    bits = (values.float() + 0.0).contiguous().view(torch.int32).to(torch.int64)  # + 0.0: -0.0 -> +0.0
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)                        # monotonic in value
    return (ordered << 32) | torch.arange(values.shape[-1], device=values.device)


@torch.no_grad()
def simota_assign(pred_boxes: torch.Tensor, cls_logits: torch.Tensor, obj_logits: torch.Tensor,
                  gt_boxes: torch.Tensor, gt_classes: torch.Tensor, gt_valid: torch.Tensor,
                  grid: torch.Tensor, stride: torch.Tensor) -> Assignment:
    """Batched SimOTA.

    Args:
        pred_boxes: (B, A, 4) decoded predictions, cxcywh input pixels.
        cls_logits: (B, A, C) class logits. obj_logits: (B, A) objectness logits.
        gt_boxes: (B, G, 4) cxcywh input pixels, padded. gt_classes: (B, G) int64. gt_valid: (B, G) bool.
        grid: (A, 2) cells (col, row); stride: (A,) pixels (from :func:`yolox.ops.decode.anchor_points`).
    Returns:
        :class:`Assignment`. Images without boxes get no positives.
    """
    B, A = pred_boxes.shape[:2]
    G = gt_boxes.shape[1]
    if B > 1 and B * G * A > MAX_COST_ENTRIES:
        step = max(1, MAX_COST_ENTRIES // max(G * A, 1))
        log.info("SimOTA: crowded batch (%d boxes max per image), assigning %d image(s) at a time", G, step)
        parts = [simota_assign(pred_boxes[i:i + step], cls_logits[i:i + step], obj_logits[i:i + step],
                               gt_boxes[i:i + step], gt_classes[i:i + step], gt_valid[i:i + step], grid, stride)
                 for i in range(0, B, step)]
        return Assignment(torch.cat([p.fg_mask for p in parts]), torch.cat([p.matched_gt for p in parts]),
                          torch.cat([p.matched_iou for p in parts]))
    device = pred_boxes.device
    fg_mask = torch.zeros(B, A, dtype=torch.bool, device=device)
    matched_gt = torch.zeros(B, A, dtype=torch.long, device=device)
    matched_iou = torch.zeros(B, A, dtype=torch.float32, device=device)
    if G == 0 or not bool(gt_valid.any()):
        return Assignment(fg_mask, matched_gt, matched_iou)
    gt_boxes = gt_boxes.float()
    grid, stride = grid.float(), stride.float()

    # 1. candidates of each image (no (B, G, A) tensor), gathered into (B, P) in ascending anchor order;
    #    padding slots point at anchor 0 and are masked by cand_valid. The class probabilities, the
    #    widest per-candidate tensor, are kept unpadded: (N, C) rows, image b's at offset[b].
    is_cand = candidate_mask(gt_boxes, gt_valid, grid, stride)                     # (B, A)
    n_cand = is_cand.sum(dim=1)                                                    # (B,)
    P = int(n_cand.max())
    if P == 0:
        return Assignment(fg_mask, matched_gt, matched_iou)
    cand_valid = torch.arange(P, device=device)[None, :] < n_cand[:, None]              # (B, P)
    cand_b, cand_a = torch.nonzero(is_cand, as_tuple=True)                              # (N,) row-major
    offset = n_cand.cumsum(0) - n_cand                                                  # (B,) first row
    slot = torch.arange(cand_b.shape[0], device=device) - offset[cand_b]               # (N,) place in image
    order = torch.zeros(B, P, dtype=torch.long, device=device)
    order[cand_b, slot] = cand_a
    rows = cand_b * A + cand_a                                                          # (N,) rows of (B * A)
    C = cls_logits.shape[-1]
    # row selects on (B * A, .) views: a contiguous copy per row, ~10x faster than a gather on dim 1
    boxes_p = pred_boxes.float().reshape(B * A, 4).index_select(
        0, (order + torch.arange(B, device=device)[:, None] * A).flatten()).view(B, P, 4)   # (B, P, 4)
    prob = cls_logits.float().reshape(B * A, C).index_select(0, rows)                   # (N, C)
    obj_n = obj_logits.float().reshape(B * A).index_select(0, rows)                     # (N,)
    centres_p = ((grid + 0.5) * stride[:, None])[order]                                 # (B, P, 2)
    radius_p = (CENTER_RADIUS * stride)[order][:, None, :]                              # (B, 1, P)

    # 2. IoUs (dense: the dynamic k of a box is over all the image's candidates) and dynamic k
    pair_valid = gt_valid[:, :, None] & cand_valid[:, None, :]                          # (B, G, P)
    ious = _pairwise_iou(gt_boxes, boxes_p).masked_fill_(~pair_valid, 0.0)              # (B, G, P)
    k_top = min(TOPK_IOU, P)
    dynamic_k = ious.topk(k_top, dim=2).values.sum(2).int().clamp(min=1)               # (B, G)
    prob = prob.sigmoid_().mul_(obj_n.sigmoid_()[:, None]).sqrt_()                      # (N, C)
    neg_sum = _neg_log_sum(prob)                                                        # (N,)

    # 3.-4. each box's k lowest-cost candidates, conflicts to the lowest-cost box
    layout = _level_layout(grid, stride)
    picked = None
    if layout is not None:
        picked = _select_in_windows(layout, gt_boxes, gt_classes, gt_valid, grid, stride, is_cand, ious, prob,
                                    neg_sum, offset, dynamic_k, centres_p, radius_p)
    if picked is None:
        prior_p = (((centres_p[:, None, :, 0] - gt_boxes[:, :, None, 0]).abs() < radius_p)
                   & ((centres_p[:, None, :, 1] - gt_boxes[:, :, None, 1]).abs() < radius_p))  # (B, G, P)
        prob_p, neg_sum_p = prob.new_zeros(B, P, C), neg_sum.new_zeros(B, P)           # padded: masked below
        prob_p[cand_valid], neg_sum_p[cand_valid] = prob, neg_sum
        picked = _select_dense(ious, prob_p, neg_sum_p, gt_classes, prior_p, pair_valid, dynamic_k, k_top)
    gt_idx, claimed = picked
    pos = claimed[cand_b, slot]                                                         # (N,)
    gt_n = gt_idx[cand_b, slot]
    iou_n = ious[cand_b, gt_n, slot]
    # back to anchor points: candidates are in the same row-major order in both
    fg_mask[cand_b, cand_a] = pos
    matched_gt[cand_b, cand_a] = gt_n.masked_fill_(~pos, 0)
    matched_iou[cand_b, cand_a] = iou_n.masked_fill_(~pos, 0.0)
    return Assignment(fg_mask, matched_gt, matched_iou)


def _neg_log_sum(prob: torch.Tensor) -> torch.Tensor:
    """(..., P, C) -> (..., P): ``sum_c BCE(p_c, 0)`` with the log clamped at -100 (:func:`class_cost`'s
    first term; the negation after the sum, which is exact, saves a pass over (..., P, C))."""
    return prob.neg().log1p_().clamp_(min=-100).sum(-1).neg_()          # in place: one (..., P, C) buffer


def _class_delta(p_y: torch.Tensor) -> torch.Tensor:
    """BCE(p_y, 1) - BCE(p_y, 0), logs clamped at -100 (:func:`class_cost`'s second term)."""
    # = -clamp(log p) - -clamp(log1p(-p)), bit for bit (x - -y is x + y), in fewer passes
    return torch.log1p(p_y.neg()).clamp_(min=-100).sub_(torch.log(p_y).clamp_(min=-100))


def _pair_cost(class_part: torch.Tensor, ious: torch.Tensor, in_prior: torch.Tensor | None) -> torch.Tensor:
    """SimOTA cost from its parts, in one order of float operations for every caller (so the dense and the
    windowed selection compare bit-identical costs). ``in_prior`` None: all pairs inside the prior."""
    cost = class_part + IOU_COST_WEIGHT * -torch.log(ious + 1e-8)
    if in_prior is not None:
        cost = cost + OUTSIDE_PRIOR_COST * (~in_prior).float()
    return cost


def _select_dense(ious: torch.Tensor, prob: torch.Tensor, neg_sum: torch.Tensor, gt_classes: torch.Tensor,
                  prior_p: torch.Tensor, pair_valid: torch.Tensor, dynamic_k: torch.Tensor, k_top: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 3-4 on the full (B, G, P) cost: (matched box per candidate (B, P) int64, claimed (B, P) bool)."""
    B, G, P = ious.shape
    idx = gt_classes.unsqueeze(-2).expand(B, P, G)
    class_part = (neg_sum.unsqueeze(-1) + _class_delta(prob.gather(-1, idx))).transpose(-1, -2)   # (B, G, P)
    cost = _pair_cost(class_part, ious, prior_p).masked_fill_(~pair_valid, float("inf"))
    # ties: lower anchor index first, as a stable sort; topk on distinct int64 keys
    lowest = _ascending_keys(cost).topk(k_top, dim=2, largest=False).indices           # (B, G, k)
    take = torch.arange(k_top, device=ious.device)[None, None, :] < dynamic_k[..., None]
    matching = torch.zeros(B, G, P, dtype=torch.bool, device=ious.device)
    matching.scatter_(2, lowest, take)
    matching &= pair_valid
    claims = matching.sum(dim=1)                                                        # (B, P)
    gt_idx = torch.where(claims > 1, cost.argmin(dim=1), matching.to(torch.uint8).argmax(dim=1))
    return gt_idx, claims > 0


WINDOW = 4
"""Cells per axis and level around a box centre that can lie in its geometry prior (|centre - c| <
1.5 strides holds for at most 3 cells; one more absorbs the rounding of ``floor(c / stride)``)."""


def _select_in_windows(layout: list[tuple[int, int, int]], gt_boxes: torch.Tensor, gt_classes: torch.Tensor,
                       gt_valid: torch.Tensor, grid: torch.Tensor, stride: torch.Tensor, is_cand: torch.Tensor,
                       ious: torch.Tensor, prob: torch.Tensor, neg_sum: torch.Tensor, offset: torch.Tensor,
                       dynamic_k: torch.Tensor, centres_p: torch.Tensor, radius_p: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Steps 3-4 without the (B, G, P) cost: what :func:`_select_dense` returns, or None when some box has
    fewer candidates inside its own prior than its dynamic k (then it also takes candidates outside, which
    only the dense cost ranks).

    A box's candidates inside its prior cost less than 1e6 (class BCE <= 80 * 100, IoU term <= 55) and every
    other candidate more, so its k lowest-cost candidates are among the <= 27 cells of its prior: those are
    enumerated per level in a ``WINDOW`` x ``WINDOW`` window of cells around the box centre, tested with the
    prior's own float operations, and costed with the dense formula's (:func:`_pair_cost`), ties broken by
    anchor index: the same selection. A candidate claimed by several boxes then takes the argmin of its
    dense cost column over all boxes (the authors' rule), computed for those candidates only.

    ``ious`` is (B, G, P) over the padded candidates; ``prob`` (N, C) and ``neg_sum`` (N,) hold the
    candidates unpadded, image b's P_b rows from ``offset[b]`` (B,) on.
    """
    B, G, P = ious.shape
    device = ious.device
    centres = (grid + 0.5) * stride[:, None]                                            # (A, 2), as the prior
    radius = CENTER_RADIUS * stride
    offsets = torch.arange(WINDOW, device=device) - (WINDOW // 2)                       # -2 .. 1
    anchors, inside = [], []
    for start, rows, cols in layout:
        s = stride[start]
        col = torch.floor(gt_boxes[..., 0] / s).long()[..., None] + offsets             # (B, G, W)
        row = torch.floor(gt_boxes[..., 1] / s).long()[..., None] + offsets
        ok = (((col >= 0) & (col < cols))[..., None, :] & ((row >= 0) & (row < rows))[..., :, None])
        a = start + row.clamp(0, rows - 1)[..., :, None] * cols + col.clamp(0, cols - 1)[..., None, :]
        anchors.append(a.flatten(2))
        inside.append(ok.flatten(2))
    a = torch.cat(anchors, dim=2)                                                       # (B, G, N) anchor ids
    ok = torch.cat(inside, dim=2) & gt_valid[..., None]
    ok &= ((centres[a] - gt_boxes[..., None, :2]).abs() < radius[a][..., None]).all(-1)   # x and y in the prior
    n_in = ok.sum(2)
    if bool(((n_in < dynamic_k) & gt_valid).any()):
        return None
    # position of each anchor in the image's candidate list (every anchor in a valid box's prior is one)
    position = (is_cand.cumsum(1) - 1).clamp_(min=0)                                    # (B, A)
    pos = position.gather(1, a.flatten(1)).view_as(a)                                   # (B, G, N)
    iou_w = ious.gather(2, pos)
    C = prob.shape[-1]
    # (B, G, N) rows of prob; outside ``ok`` (masked below) a row may point past an image without
    # candidates, hence the clamp
    row = (offset[:, None, None] + pos).clamp_(max=prob.shape[0] - 1)
    p_y = prob.view(-1).gather(0, (row * C + gt_classes[..., None]).flatten()).view_as(iou_w)
    class_part = neg_sum.gather(0, row.flatten()).view_as(iou_w) + _class_delta(p_y)
    cost = _pair_cost(class_part, iou_w, None).masked_fill_(~ok, float("inf"))          # (B, G, N)
    bits = (cost + 0.0).view(torch.int32).to(torch.int64)
    keys = (torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) << 32) | pos                 # ties: anchor order
    k = min(TOPK_IOU, keys.shape[2])
    lowest = keys.topk(k, dim=2, largest=False).indices                                 # (B, G, k)
    take = (torch.arange(k, device=device)[None, None, :] < dynamic_k[..., None]) & gt_valid[..., None]
    chosen = pos.gather(2, lowest)                                                      # (B, G, k) positions
    flat = torch.where(take, chosen, torch.full_like(chosen, P)).flatten(1)             # P: a dropped slot
    claims = torch.zeros(B, P + 1, dtype=torch.long, device=device).scatter_add_(1, flat, take.flatten(1).long())
    owner = torch.zeros(B, P + 1, dtype=torch.long, device=device)
    box = torch.arange(G, device=device)[None, :, None].expand_as(chosen)
    owner.scatter_(1, flat, box.flatten(1))
    claims, owner = claims[:, :P], owner[:, :P]
    multi = claims > 1
    if bool(multi.any()):   # the dense cost column of each multiply claimed candidate, all boxes
        mb, mp = multi.nonzero(as_tuple=True)
        mrow = offset[mb] + mp
        p_mg = prob[mrow].gather(1, gt_classes[mb])                                     # (M, G)
        prior = (((centres_p[mb, mp, 0][:, None] - gt_boxes[mb, :, 0]).abs() < radius_p[mb, 0, mp][:, None])
                 & ((centres_p[mb, mp, 1][:, None] - gt_boxes[mb, :, 1]).abs() < radius_p[mb, 0, mp][:, None]))
        column = _pair_cost(neg_sum[mrow][:, None] + _class_delta(p_mg), ious[mb, :, mp], prior)
        owner[mb, mp] = column.masked_fill_(~gt_valid[mb], float("inf")).argmin(dim=1)
    return owner, claims > 0


@torch.no_grad()
def simota_assign_reference(pred_boxes: torch.Tensor, cls_logits: torch.Tensor, obj_logits: torch.Tensor,
                            gt_boxes: torch.Tensor, gt_classes: torch.Tensor, gt_valid: torch.Tensor,
                            grid: torch.Tensor, stride: torch.Tensor) -> Assignment:
    """Plain per-image SimOTA, one image and one box at a time (the five steps as written).

    Same arguments and result as :func:`simota_assign`; used as the oracle in tests and benchmarks.
    The class cost here is the plain ``F.binary_cross_entropy`` against a one-hot target.
    """
    B, A = pred_boxes.shape[:2]
    C = cls_logits.shape[-1]
    fg_mask = torch.zeros(B, A, dtype=torch.bool)
    matched_gt = torch.zeros(B, A, dtype=torch.long)
    matched_iou = torch.zeros(B, A, dtype=torch.float32)
    for b in range(B):
        gts = gt_boxes[b][gt_valid[b]].float()
        classes = gt_classes[b][gt_valid[b]]
        G = gts.shape[0]
        if G == 0:
            continue
        in_prior = geometry_prior(gts, grid, stride)                   # (G, A)
        cand = torch.nonzero(in_prior.any(0)).squeeze(1)               # anchor indices, ascending
        if cand.numel() == 0:
            continue
        ious = pairwise_iou_cxcywh(gts, pred_boxes[b, cand].float())   # (G, P)
        prob = (cls_logits[b, cand].float().sigmoid() * obj_logits[b, cand].float().sigmoid()[:, None]).sqrt()
        onehot = torch.nn.functional.one_hot(classes, C).float()
        cls_cost = torch.stack([
            torch.nn.functional.binary_cross_entropy(prob, onehot[g].expand_as(prob), reduction="none").sum(-1)
            for g in range(G)])
        cost = cls_cost + IOU_COST_WEIGHT * -torch.log(ious + 1e-8) + OUTSIDE_PRIOR_COST * (~in_prior[:, cand]).float()
        matching = torch.zeros_like(cost, dtype=torch.bool)
        for g in range(G):
            k = max(int(ious[g].topk(min(TOPK_IOU, len(cand))).values.sum().int()), 1)
            matching[g, cost[g].argsort(stable=True)[:k]] = True
        for p in range(len(cand)):
            if matching[:, p].sum() > 1:
                best = int(cost[:, p].argmin())
                matching[:, p] = False
                matching[best, p] = True
        for p in range(len(cand)):
            if matching[:, p].any():
                g = int(matching[:, p].float().argmax())
                fg_mask[b, cand[p]] = True
                matched_gt[b, cand[p]] = int(torch.nonzero(gt_valid[b]).squeeze(1)[g])
                matched_iou[b, cand[p]] = ious[g, p]
    return Assignment(fg_mask, matched_gt, matched_iou)
