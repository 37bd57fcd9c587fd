"""SimOTA: the batched assignment against the per-image reference on real coco128 boxes, and each of
the five steps on tiny handcrafted cases (REFERENCE.md, 'Label assignment')."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import yolox.train.assign as assign_module
from yolox.data.records import DetectionDataset
from yolox.models.table import STRIDES
from yolox.ops.boxes import pairwise_iou_cxcywh
from yolox.ops.decode import anchor_points
from yolox.train.assign import (
    Assignment,
    class_cost,
    geometry_prior,
    simota_assign,
    simota_assign_reference,
)

SIZE = 416
NUM_CLASSES = 80
BATCH = 8
BACKGROUND = "000000000250"  # a coco128 image without boxes


# ------------------------------------------------------------------------------------ helpers


def _letterboxed_boxes(ds: DetectionDataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per image stem: (classes (N,), boxes (N, 4) cxcywh in the 416 letterbox canvas)."""
    out = {}
    for rec in ds.records:
        r = SIZE / max(rec.height, rec.width)
        b = rec.boxes.astype(np.float64) * r
        centre, size = (b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]
        cxcywh = np.concatenate([centre, size], 1)
        out[rec.path.stem] = (rec.labels.copy(), cxcywh.astype(np.float32))
    return out


@pytest.fixture(scope="module")
def boxes416(coco128_dataset: DetectionDataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return _letterboxed_boxes(coco128_dataset)


def _batch_inputs(boxes: dict[str, tuple[np.ndarray, np.ndarray]], stems: list[str], seed: int):
    """Padded ground truths of ``stems`` and random predictions near them.

    Every anchor point inside some box's geometry prior predicts a jittered copy of one of those boxes
    (centre +- 15 % of the size, size x exp(N(0, 0.25))); the others predict a random box around their
    cell. Class and objectness logits are random.
    """
    g = torch.Generator().manual_seed(seed)
    grid, stride = anchor_points((SIZE, SIZE), STRIDES)
    A = grid.shape[0]
    B = len(stems)
    G = max(1, max(len(boxes[s][0]) for s in stems))
    gt_boxes = torch.zeros(B, G, 4)
    gt_classes = torch.zeros(B, G, dtype=torch.long)
    gt_valid = torch.zeros(B, G, dtype=torch.bool)
    for i, s in enumerate(stems):
        cls, bx = boxes[s]
        gt_boxes[i, :len(cls)] = torch.from_numpy(bx)
        gt_classes[i, :len(cls)] = torch.from_numpy(cls)
        gt_valid[i, :len(cls)] = True
    centres = (grid + 0.5) * stride[:, None]
    pred = torch.empty(B, A, 4)
    prior = geometry_prior(gt_boxes, grid, stride) & gt_valid[:, :, None]          # (B, G, A)
    for i in range(B):
        pred[i, :, :2] = centres + torch.randn(A, 2, generator=g) * stride[:, None]
        pred[i, :, 2:] = stride[:, None] * torch.exp(torch.randn(A, 2, generator=g))
        near = prior[i].any(0)
        if near.any():
            # a random box among those whose prior holds the anchor
            weights = prior[i].float().T[near] + 1e-9                              # (n, G)
            which = torch.multinomial(weights, 1, generator=g).squeeze(1)
            gb = gt_boxes[i, which]
            n = int(near.sum())
            pred[i, near, :2] = gb[:, :2] + torch.randn(n, 2, generator=g) * 0.15 * gb[:, 2:]
            pred[i, near, 2:] = gb[:, 2:] * torch.exp(torch.randn(n, 2, generator=g) * 0.25)
    cls_logits = torch.randn(B, A, NUM_CLASSES, generator=g) * 2 - 3
    obj_logits = torch.randn(B, A, generator=g) * 2
    return pred, cls_logits, obj_logits, gt_boxes, gt_classes, gt_valid, grid, stride


def _assert_same(a: Assignment, r: Assignment) -> None:
    differ = torch.nonzero(a.fg_mask != r.fg_mask)[:5].tolist()
    assert torch.equal(a.fg_mask, r.fg_mask), f"fg differs at (image, anchor) {differ}"
    fg = r.fg_mask
    assert torch.equal(a.matched_gt[fg], r.matched_gt[fg])
    assert torch.equal(a.matched_iou[fg], r.matched_iou[fg])


def _check_invariants(a: Assignment, pred, gt_boxes, gt_valid, grid, stride) -> None:
    prior = geometry_prior(gt_boxes, grid, stride) & gt_valid[:, :, None]
    B = pred.shape[0]
    for b in range(B):
        fg = a.fg_mask[b]
        assert prior[b].any(0)[fg].all()                      # positives are candidates (step 1)
        gi = a.matched_gt[b, fg]
        assert gt_valid[b, gi].all()
        iou = pairwise_iou_cxcywh(gt_boxes[b], pred[b])[gi, torch.nonzero(fg).squeeze(1)]
        assert torch.allclose(a.matched_iou[b, fg], iou, atol=1e-6)
        counts = torch.bincount(gi, minlength=gt_boxes.shape[1])
        assert int(counts.max()) <= 10                # dynamic k <= sum of 10 IoUs <= 10
        assert (a.matched_gt[b, ~fg] == 0).all() and (a.matched_iou[b, ~fg] == 0).all()


def _random_batch(boxes, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    others = sorted(s for s in boxes if s != BACKGROUND)
    return [str(s) for s in rng.choice(others, BATCH - 1, replace=False)] + [BACKGROUND]


# ------------------------------------------------------------------------------------ batched == reference


def test_batched_equals_reference_most_crowded(boxes416) -> None:
    stems = sorted(boxes416, key=lambda s: (-len(boxes416[s][0]), s))[:BATCH]
    assert [len(boxes416[s][0]) for s in stems][:2] == [42, 40]
    inputs = _batch_inputs(boxes416, stems, seed=0)
    batched = simota_assign(*inputs)
    reference = simota_assign_reference(*inputs)
    _assert_same(batched, reference)
    pred, _, _, gt_boxes, _, gt_valid, grid, stride = inputs
    _check_invariants(batched, pred, gt_boxes, gt_valid, grid, stride)
    assert batched.num_fg > 500
    # crowded images: many positives sit where several boxes' priors overlap (step 4 is exercised)
    prior = geometry_prior(gt_boxes, grid, stride) & gt_valid[:, :, None]
    contested = prior.sum(1) > 1
    assert int((batched.fg_mask & contested).sum()) > 100
    # positives are spread over many of the boxes
    assert len(torch.unique(batched.matched_gt[batched.fg_mask])) > 20


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_equals_reference_random_batches(boxes416, seed: int) -> None:
    stems = _random_batch(boxes416, seed)
    assert len(boxes416[stems[-1]][0]) == 0
    inputs = _batch_inputs(boxes416, stems, seed)
    batched = simota_assign(*inputs)
    reference = simota_assign_reference(*inputs)
    _assert_same(batched, reference)
    pred, _, _, gt_boxes, _, gt_valid, grid, stride = inputs
    _check_invariants(batched, pred, gt_boxes, gt_valid, grid, stride)
    assert not batched.fg_mask[-1].any()                       # the image with zero boxes
    assert all(batched.fg_mask[i].any() for i in range(BATCH - 1))


def test_batch_of_background_images_only(boxes416) -> None:
    inputs = _batch_inputs(boxes416, [BACKGROUND, "000000000508"], seed=5)
    a = simota_assign(*inputs)
    assert a.num_fg == 0 and not a.matched_iou.any()
    assert a.fg_mask.shape == (2, 3549)


def test_chunked_path_equals_unchunked(boxes416, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    stems = sorted(boxes416, key=lambda s: (-len(boxes416[s][0]), s))[2:BATCH + 2]
    stems[-1] = BACKGROUND
    inputs = _batch_inputs(boxes416, stems, seed=11)
    whole = simota_assign(*inputs)
    G, A = inputs[3].shape[1], inputs[0].shape[1]
    for per_chunk in (3, 1):  # chunks of 3 (uneven last chunk), then one image at a time
        monkeypatch.setattr(assign_module, "MAX_COST_ENTRIES", per_chunk * G * A)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="yolox.assign"):
            chunked = simota_assign(*inputs)
        assert f"assigning {per_chunk} image(s) at a time" in caplog.text
        assert torch.equal(chunked.fg_mask, whole.fg_mask)
        assert torch.equal(chunked.matched_gt, whole.matched_gt)
        assert torch.equal(chunked.matched_iou, whole.matched_iou)
    assert whole.num_fg > 0


# ------------------------------------------------------------------------------------ class cost


def test_class_cost_is_bce_against_one_hot() -> None:
    g = torch.Generator().manual_seed(0)
    prob = torch.rand(2, 50, NUM_CLASSES, generator=g)
    prob[0, 0, :5] = 0.0                                      # saturated probabilities: the -100 clamp
    prob[0, 1, :5] = 1.0
    prob[1, 2] = 1.0
    classes = torch.randint(0, NUM_CLASSES, (2, 6), generator=g)
    classes[0, 0], classes[0, 1], classes[1, 0] = 0, 7, 3
    got = class_cost(prob, classes)
    assert got.shape == (2, 6, 50)
    for b in range(2):
        for k in range(6):
            onehot = F.one_hot(classes[b, k], NUM_CLASSES).float().expand_as(prob[b])
            want = F.binary_cross_entropy(prob[b], onehot, reduction="none").sum(-1)
            assert torch.allclose(got[b, k], want, atol=1e-4, rtol=0), (b, k)
    assert torch.isfinite(got).all()


# ------------------------------------------------------------------------------------ handcrafted steps

H = 64  # input side: 8x8 + 4x4 + 2x2 = 84 anchor points


def _idx(s: int, col: int, row: int) -> int:
    """Anchor index of cell (col, row) at stride s for a 64x64 input (levels in stride order)."""
    base = {8: 0, 16: 64, 32: 80}[s]
    return base + row * (H // s) + col


FAR = [60.0, 60.0, 1.0, 1.0]  # a 1x1 box in the bottom-right corner: IoU 0 with every box below


def _tiny(gts: list[tuple[int, list[float]]], preds: dict[int, list[float]],
          cls: dict[int, dict[int, float]] | None = None):
    """One image at 64x64. gts: [(class, cxcywh)]; preds: anchor -> cxcywh (others predict FAR);
    cls: anchor -> {class: logit} (others -4); objectness logits 0."""
    grid, stride = anchor_points((H, H), STRIDES)
    A = grid.shape[0]
    pred = torch.tensor(FAR).repeat(1, A, 1)
    for a, box in preds.items():
        pred[0, a] = torch.tensor(box)
    cls_logits = torch.full((1, A, 4), -4.0)
    for a, logits in (cls or {}).items():
        for c, v in logits.items():
            cls_logits[0, a, c] = v
    obj_logits = torch.zeros(1, A)
    gt_boxes = torch.tensor([[b for _, b in gts]])
    gt_classes = torch.tensor([[c for c, _ in gts]])
    gt_valid = torch.ones(1, len(gts), dtype=torch.bool)
    return pred, cls_logits, obj_logits, gt_boxes, gt_classes, gt_valid, grid, stride


def _assign_both(inputs) -> Assignment:
    a = simota_assign(*inputs)
    _assert_same(a, simota_assign_reference(*inputs))
    return a


def _positives(a: Assignment) -> set[int]:
    return set(torch.nonzero(a.fg_mask[0]).squeeze(1).tolist())


def test_geometry_prior_strictly_within_one_and_a_half_strides() -> None:
    grid, stride = anchor_points((H, H), STRIDES)
    # cell (0, 0) of stride 8 has its centre at (4, 4); 1.5 strides = 12 px
    at_limit = geometry_prior(torch.tensor([[16.0, 4.0, 2.0, 2.0]]), grid, stride)[0]
    inside = geometry_prior(torch.tensor([[15.99, 4.0, 2.0, 2.0]]), grid, stride)[0]
    assert not at_limit[_idx(8, 0, 0)] and inside[_idx(8, 0, 0)]
    at_limit_y = geometry_prior(torch.tensor([[4.0, 16.0, 2.0, 2.0]]), grid, stride)[0]
    assert not at_limit_y[_idx(8, 0, 0)]
    # a box centred on the stride-8 cell (3, 3), centre (28, 28): cells whose centre is < 12/24/48 px away
    prior = geometry_prior(torch.tensor([[28.0, 28.0, 20.0, 20.0]]), grid, stride)[0]
    want = ({_idx(8, c, r) for c in (2, 3, 4) for r in (2, 3, 4)}        # centres 20, 28, 36
            | {_idx(16, c, r) for c in (0, 1, 2) for r in (0, 1, 2)}     # centres 8, 24, 40 (56 is 28 away)
            | {_idx(32, c, r) for c in (0, 1) for r in (0, 1)})          # centres 16, 48
    assert set(torch.nonzero(prior).squeeze(1).tolist()) == want
    assert len(want) == 22


def test_only_candidates_can_be_positive() -> None:
    gt = [28.0, 28.0, 20.0, 20.0]
    outside = _idx(8, 7, 7)   # centre (60, 60): 32 px away, outside every level's prior of this box
    inside = _idx(8, 2, 2)
    a = _assign_both(_tiny([(0, gt)], {outside: gt, inside: [28.0, 28.0, 20.0, 10.0]}))
    # the perfect prediction is not a candidate, so the box takes its best candidate instead
    assert _positives(a) == {inside}
    assert a.matched_iou[0, inside].item() == pytest.approx(0.5)


def test_dynamic_k_is_the_truncated_sum_of_the_top_ten_ious() -> None:
    gt = [28.0, 28.0, 20.0, 20.0]
    ones = [_idx(8, 3, 3), _idx(8, 2, 2), _idx(8, 4, 4)]
    iou06, iou05 = _idx(8, 2, 3), _idx(16, 1, 1)
    preds = {a: gt for a in ones}
    preds[iou06] = [28.0, 28.0, 20.0, 12.0]   # IoU 0.6
    preds[iou05] = [28.0, 28.0, 20.0, 10.0]   # IoU 0.5
    a = _assign_both(_tiny([(0, gt)], preds))
    # k = int(1 + 1 + 1 + 0.6 + 0.5) = 4: the three exact boxes and the IoU-0.6 one
    assert _positives(a) == {*ones, iou06}
    assert sorted(a.matched_iou[0][a.fg_mask[0]].tolist()) == pytest.approx([0.6, 1, 1, 1])

    # only the 10 largest IoUs count: 12 candidates at IoU 0.5 give k = 5, not 6
    cands = [_idx(8, c, r) for c in (2, 3, 4) for r in (2, 3, 4)] + [_idx(16, c, 0) for c in (0, 1, 2)]
    rank = {a: 3.0 - 0.1 * i for i, a in enumerate(reversed(cands))}  # class-0 logit: later anchors better
    a = _assign_both(_tiny([(0, gt)], {c: [28.0, 28.0, 20.0, 10.0] for c in cands},
                           {c: {0: v} for c, v in rank.items()}))
    best5 = sorted(cands, key=lambda c: -rank[c])[:5]
    assert _positives(a) == set(best5)


def test_dynamic_k_is_at_least_one() -> None:
    gt = [28.0, 28.0, 20.0, 20.0]
    # IoUs 0.6 + 0.3 = 0.9 -> int 0 -> k = 1: only the better one
    better, worse = _idx(8, 3, 3), _idx(8, 2, 2)
    a = _assign_both(_tiny([(0, gt)], {better: [28.0, 28.0, 20.0, 12.0], worse: [28.0, 28.0, 20.0, 6.0]}))
    assert _positives(a) == {better}
    # every candidate at IoU 0: still one positive, the one with the lowest class cost
    confident = _idx(16, 2, 2)
    a = _assign_both(_tiny([(0, gt)], {}, {confident: {0: 2.0}}))
    assert _positives(a) == {confident}
    assert a.matched_iou[0, confident].item() == 0.0


def test_outside_prior_candidates_cost_a_million() -> None:
    g0, g1 = [12.0, 12.0, 8.0, 8.0], [52.0, 52.0, 8.0, 8.0]
    q = _idx(8, 6, 6)           # centre (52, 52): in g1's prior only, but predicts g0 exactly
    own = _idx(8, 1, 1)         # in g0's prior, IoU 0 with g0, most confident class-0 prediction
    a = _assign_both(_tiny([(0, g0), (1, g1)], {q: g0}, {own: {0: 2.0}}))
    # g0: k = int(1.0) = 1; q's cost is ~1e6 higher than any of g0's own candidates, so g0 takes `own`
    assert a.fg_mask[0, own] and a.matched_gt[0, own] == 0
    assert not (a.fg_mask[0, q] and a.matched_gt[0, q] == 0)


@pytest.mark.parametrize("winner", [0, 1])
def test_prediction_claimed_by_two_boxes_goes_to_the_lower_cost(winner: int) -> None:
    g0, g1 = [28.0, 28.0, 20.0, 20.0], [36.0, 28.0, 20.0, 20.0]
    p = _idx(8, 3, 3)            # centre (28, 28): in both priors
    shared = [32.0, 28.0, 20.0, 20.0]  # IoU 2/3 with both boxes: each has k = 1 and ranks p first
    logits = {winner: 2.0, 1 - winner: -2.0}
    inputs = _tiny([(0, g0), (1, g1)], {p: shared}, {p: logits})
    a = _assign_both(inputs)
    assert _positives(a) == {p}          # the loser gets nothing (its only pick went to the winner)
    assert a.matched_gt[0, p].item() == winner
    assert a.matched_iou[0, p].item() == pytest.approx(2 / 3, abs=1e-6)
    # the winner is the box of lower cost by the REFERENCE formula
    prob = (torch.sigmoid(inputs[1][0, p]) * torch.sigmoid(inputs[2][0, p])).sqrt()
    costs = []
    for c in (0, 1):
        bce = F.binary_cross_entropy(prob, F.one_hot(torch.tensor(c), 4).float(), reduction="sum")
        costs.append(float(bce) + 3 * -math.log(2 / 3 + 1e-8))
    assert int(np.argmin(costs)) == winner


def test_claim_resolved_by_iou_when_classes_tie() -> None:
    g0, g1 = [28.0, 28.0, 20.0, 20.0], [36.0, 28.0, 20.0, 20.0]
    p = _idx(8, 3, 3)
    a = _assign_both(_tiny([(0, g0), (1, g1)], {p: [34.0, 28.0, 20.0, 20.0]}, {p: {0: 1.0, 1: 1.0}}))
    # IoU 0.82 with g1 vs 0.54 with g0: both claim p (k = 1 each); the IoU term makes g1 cheaper
    assert _positives(a) == {p} and a.matched_gt[0, p].item() == 1


def test_box_with_fewer_prior_cells_than_its_dynamic_k(monkeypatch: pytest.MonkeyPatch) -> None:
    """A box centred on the image corner has 1 prior cell per level (3 in all) while 10 candidates of a
    neighbour's prior predict it exactly (dynamic k 10): it also takes candidates outside its prior, which
    the windowed selection leaves to the dense cost (and must say so)."""
    corner, neighbour = [0.0, 0.0, 24.0, 24.0], [20.0, 20.0, 24.0, 24.0]
    preds = {_idx(s, c, r): corner for s in (8, 16, 32) for c in range(3) for r in range(3) if c < 64 // s and r < 64 // s}
    fallbacks = []
    windowed = assign_module._select_in_windows

    def spy(*args, **kwargs):
        out = windowed(*args, **kwargs)
        fallbacks.append(out is None)
        return out

    monkeypatch.setattr(assign_module, "_select_in_windows", spy)
    a = _assign_both(_tiny([(0, corner), (1, neighbour)], preds))
    assert fallbacks == [True]
    assert int((a.matched_gt[0][a.fg_mask[0]] == 0).sum()) > 3   # the corner box took more than its 3 cells
