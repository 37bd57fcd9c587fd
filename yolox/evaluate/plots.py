"""Figures a person looks at in the MLflow UI: training curves, PR curves, per-class AP, example
detections, and the confusion of classes.

Every function returns a :class:`matplotlib.figure.Figure` drawn on the Agg canvas (no pyplot, no GUI,
no global state); :meth:`yolox.tracking.run.MlflowRun.log_figures` logs them. Inputs are the training
history (:attr:`yolox.train.trainer.TrainResult.history`), an
:class:`yolox.evaluate.coco_eval.EvalResult` and the :class:`yolox.data.records.DetectionDataset` it was
measured on.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from yolox.config import ServeParams
from yolox.data.records import DetectionDataset
from yolox.files import atomic_path
from yolox.ops.boxes import pairwise_iou_xyxy
from yolox.ops.draw import draw
from yolox.ops.nms import Detections

SHOW_SCORE = ServeParams().conf_thresh  # detections drawn and counted in the confusion matrix: served ones


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def training_curves(history: Sequence[dict[str, float]]) -> Figure:
    """Per-epoch losses, learning rate and val AP (where evaluated) from the trainer's history rows
    (``{"epoch", "train/<x>_loss", "train/lr", "val/AP50_95", ...}``)."""
    fig = _figure(13, 3.6)
    axes = fig.subplots(1, 3)
    epochs = [row["epoch"] for row in history]
    keys = list(dict.fromkeys(k for row in history for k in row))
    panels = [("losses", [k for k in keys if k.startswith("train/") and k.endswith("_loss")]),
              ("learning rate", [k for k in keys if k == "train/lr"]),
              ("val AP", [k for k in keys if k in ("val/AP50_95", "val/AP50")])]
    for ax, (title, names) in zip(axes, panels):
        for k in names:
            pts = [(e, row[k]) for e, row in zip(epochs, history) if row.get(k) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=k.split("/", 1)[1])
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if names:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def _mean_precision(precision: np.ndarray) -> np.ndarray:
    """Mean of ``(..., R, K)`` precision over everything but the recall axis R, ignoring -1 (classes
    without ground truth): returns (R,)."""
    p = np.moveaxis(np.where(precision > -1, precision, np.nan), -2, 0).reshape(precision.shape[-2], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of an all-nan row (no class there)
        return np.nan_to_num(np.nanmean(p, 1))


def pr_curves(precision: np.ndarray | None, names: Sequence[str]) -> Figure:
    """Precision vs recall, averaged over classes, at IoU 0.5 and over IoU 0.5:0.95 (area all, 100 dets);
    light lines: each class at IoU 0.5.

    Args:
        precision: COCOeval's (T, R, K, A, M) array (T IoUs 0.5..0.95, R=101 recall points, K classes,
            A areas, M maxDets); None draws an empty chart.
    """
    fig = _figure(6, 5)
    ax = fig.subplots()
    if precision is None:
        ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes)
    else:
        recall = np.linspace(0, 1, precision.shape[1])
        p50 = precision[0, :, :, 0, -1]  # (R, K)
        for k in range(p50.shape[1]):
            if (p50[:, k] > -1).any():
                ax.plot(recall, np.clip(p50[:, k], 0, None), color="0.8", lw=0.6)
        m50 = _mean_precision(p50)
        mall = _mean_precision(precision[:, :, :, 0, -1])
        ax.plot(recall, m50, lw=2, label=f"IoU 0.5 (AP50 {m50.mean():.3f})")
        ax.plot(recall, mall, lw=2, label=f"IoU 0.5:0.95 (AP {mall.mean():.3f})")
        ax.legend(loc="lower left")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("precision-recall (mean over classes; grey: per class @0.5)")
    fig.tight_layout()
    return fig


def per_class_ap(per_class: dict[str, float]) -> Figure:
    """Horizontal bars of AP50:95 per class (classes with ground truth in the val set), best first."""
    items = sorted(per_class.items(), key=lambda kv: kv[1], reverse=True)
    fig = _figure(7, max(2.5, 0.22 * len(items) + 1))
    ax = fig.subplots()
    if items:
        ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="tab:blue")
        mean = float(np.mean([v for _, v in items]))
        ax.axvline(mean, color="tab:red", ls="--", lw=1, label=f"mean {mean:.3f}")
        ax.legend(loc="lower right")
    ax.set_xlim(0, 1)
    ax.set_xlabel("AP50:95")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"AP per class ({len(items)} classes in val)")
    fig.tight_layout()
    return fig


def detection_grid(dataset: DetectionDataset, detections: dict[int, Detections], n: int = 8, cols: int = 4,
                   score_thresh: float = SHOW_SCORE, width: int = 640) -> Figure:
    """The first ``n`` val images (by image id) with ground truth (thin white) and detections with
    score >= ``score_thresh`` (coloured, labelled, as ``yolox predict`` draws them), each image resized
    to ``width`` pixels."""
    records = sorted(dataset.records, key=lambda r: r.image_id)[:n]
    rows = max(1, -(-len(records) // cols))
    fig = _figure(4 * cols, 3.2 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, rec in zip(axes, records):
        img = cv2.imread(str(rec.path))
        if img is None:
            continue
        s = width / img.shape[1]  # drawn at a common width so that labels stay readable
        img = cv2.resize(img, (width, max(1, round(img.shape[0] * s))), interpolation=cv2.INTER_AREA)
        for x0, y0, x1, y1 in (rec.boxes * s).round().astype(int).tolist():
            cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 3)
            cv2.rectangle(img, (x0, y0), (x1, y1), (255, 255, 255), 1)
        det = detections.get(rec.image_id, Detections.empty())
        keep = det.scores >= score_thresh
        img = draw(img, Detections(det.boxes[keep] * s, det.scores[keep], det.labels[keep]), dataset.names)
        ax.imshow(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        ax.set_title(f"{rec.path.name}: {int(keep.sum())} det / {len(rec.labels)} gt", fontsize=8)
    fig.suptitle(f"val detections (score >= {score_thresh}; white: ground truth)")
    fig.tight_layout()
    return fig


def confusion_matrix(dataset: DetectionDataset, detections: dict[int, Detections], iou_thresh: float = 0.5,
                     score_thresh: float = SHOW_SCORE) -> np.ndarray:
    """Class confusion at IoU ``iou_thresh`` of the detections with score >= ``score_thresh``.

    Per image, detections in descending score each take one unmatched ground-truth box with IoU >=
    ``iou_thresh``: the best-overlapping one of their own class if any, else the best-overlapping one of
    any class (a confusion). Unmatched detections count as background predicted as their class; unmatched
    ground truth as its class predicted as background.

    Returns:
        (C + 1, C + 1) int64 counts: rows the true class, columns the predicted class; index C is
        background (row: false positive, column: missed).
    """
    c = dataset.num_classes
    matrix = np.zeros((c + 1, c + 1), np.int64)
    for rec in dataset.records:
        det = detections.get(rec.image_id, Detections.empty())
        keep = det.scores >= score_thresh
        boxes, labels = det.boxes[keep], det.labels[keep]
        gt_labels = rec.labels
        matched = np.zeros(len(gt_labels), bool)
        iou = np.zeros((len(boxes), len(gt_labels)))
        if len(boxes) and len(gt_labels):   # torch.tensor copies: rec.boxes may be a read-only view of
            # the dataset's shared arrays (torch.from_numpy of one warns: "NumPy array is not writable")
            iou = pairwise_iou_xyxy(torch.tensor(boxes, dtype=torch.float32),
                                    torch.tensor(rec.boxes, dtype=torch.float32)).numpy()
        for i, label in enumerate(labels.tolist()):
            cand = np.where(~matched & (iou[i] >= iou_thresh))[0] if len(gt_labels) else np.zeros(0, int)
            same = cand[gt_labels[cand] == label]
            pool = same if len(same) else cand
            if len(pool):
                j = pool[np.argmax(iou[i, pool])]
                matched[j] = True
                matrix[gt_labels[j], label] += 1
            else:
                matrix[c, label] += 1
        for j in np.where(~matched)[0]:
            matrix[gt_labels[j], c] += 1
    return matrix


def confusion_figure(matrix: np.ndarray, names: Sequence[str], max_classes: int = 30,
                     score_thresh: float = SHOW_SCORE) -> Figure:
    """The confusion matrix as a heat map with counts; only classes that occur (in ground truth or
    predictions), at most ``max_classes`` of them (the most frequent), plus background."""
    c = len(names)
    totals = matrix[:c, :].sum(1) + matrix[:, :c].sum(0)
    shown = [int(k) for k in np.argsort(-totals, kind="stable") if totals[k] > 0][:max_classes]
    shown = sorted(shown) + [c]
    sub = matrix[np.ix_(shown, shown)]
    labels = [names[k] if k < c else "background" for k in shown]
    side = max(5.0, 0.32 * len(shown) + 2)
    fig = _figure(side + 1, side)
    ax = fig.subplots()
    im = ax.imshow(np.log1p(sub), cmap="Blues")
    if len(shown) <= 40:
        for (i, j), v in np.ndenumerate(sub):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                        color="white" if np.log1p(v) > 0.6 * np.log1p(sub.max()) else "black")
    ax.set_xticks(range(len(shown)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"class confusion (IoU 0.5, score >= {score_thresh:g})")
    fig.colorbar(im, ax=ax, fraction=0.046, label="log(1 + count)")
    fig.tight_layout()
    return fig


def save_figures(figures: dict[str, Figure], folder: str | Path) -> list[Path]:
    """Write ``{name: figure}`` as PNG files into ``folder`` (by the name's last part, e.g.
    ``plots/pr_curves.png`` -> ``<folder>/pr_curves.png``; the format by its suffix, PNG without one), each
    atomically (:func:`yolox.files.atomic_path`: an interrupted write leaves the previous file intact and no
    temp file behind); returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        path = folder / Path(name).name
        with atomic_path(path) as tmp:  # say the format: a name without suffix gives a temp ending in ".tmp"
            fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".").lower() or "png")
        paths.append(path)
    return paths


def evaluation_figures(result: Any, dataset: DetectionDataset, score_thresh: float = SHOW_SCORE
                       ) -> tuple[dict[str, Figure], dict[str, Any]]:
    """All evaluation figures of an :class:`~yolox.evaluate.coco_eval.EvalResult` on ``dataset``; detections
    are drawn and counted in the confusion matrix from ``score_thresh`` (the serving threshold,
    ``serve.conf_thresh``).

    Returns:
        (``{artifact_file: figure}`` under ``plots/``, the confusion matrix as a json-able dict).
    """
    matrix = confusion_matrix(dataset, result.detections, score_thresh=score_thresh)
    figures = {
        "plots/pr_curves.png": pr_curves(result.precision, dataset.names),
        "plots/per_class_ap.png": per_class_ap(result.per_class),
        "plots/val_detections.png": detection_grid(dataset, result.detections, score_thresh=score_thresh),
        "plots/confusion_matrix.png": confusion_figure(matrix, dataset.names, score_thresh=score_thresh),
    }
    table = {"rows": "true class", "columns": "predicted class", "labels": [*dataset.names, "background"],
             "iou_thresh": 0.5, "score_thresh": score_thresh, "matrix": matrix.tolist()}
    return figures, table
