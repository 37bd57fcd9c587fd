"""Controlled experiment (issue 9): the authors' mosaic and affine, draw for draw, through our augmentation.

Their nano pipeline (``MosaicDetection`` + ``TrainTransform`` over their ``COCODataset``, HSV and flip off so
that only the geometry is compared) runs in their venv and records every Python ``random`` draw its mosaic
and affine make (mosaic or not, centre, the three other images, angle, scale, shears, translation), its
output images and targets. Our :class:`yolox.data.augment.TrainAugment` (same recipe, HSV and flip off) then
replays exactly those draws (its ``py`` generator answers with them, checking that each call is the same
kind of draw) on the same images, and the outputs are compared:

- pixels: the largest absolute difference per sample;
- boxes: per sample, the boxes with a side over 1 px on both sides (sorted), their count and largest
  coordinate difference; the target rows only theirs has are listed with why (a degenerate row from their
  fallback, or a "phantom" box: the enclosing rectangle of a rotated box that lies wholly outside the
  output image, whose pixels the sample does not show).

HSV and flip are the same algorithm with other random generators (:class:`yolox.data.augment.YoloxHSV`,
``A.HorizontalFlip``): ``bench/data.py --stats`` compares the full pipeline's outputs by their statistics.

    YOLOX_ASSETS_DIR=../shared .venv/bin/python bench/augment_replay.py --peer /work/peer [--samples 300]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from data import default_data_dir, read_yolo_dataset
from sidebyside import authors_worker

from yolox.config import AugmentParams
from yolox.data.augment import TrainAugment, recipe_for_model


class Replay:
    """Stands in for ``random.Random``: answers ``random``, ``uniform`` and ``randint`` with recorded draws.

    Raises:
        AssertionError: a call of another kind than the recorded one (the two pipelines draw in another order).
    """

    def __init__(self, draws: list) -> None:
        self.draws = list(draws)

    def _next(self, name: str) -> float:
        recorded, args, value = self.draws.pop(0)
        assert recorded == name, f"ours drew {name}, theirs {recorded}{tuple(args)}"
        return value

    def random(self) -> float:
        return self._next("random")

    def uniform(self, a: float, b: float) -> float:
        return self._next("uniform")

    def randint(self, a: int, b: int) -> int:
        return int(self._next("randint"))


def as_rows(boxes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, 5) [class, cx, cy, w, h] from xyxy boxes, sorted (the authors' target layout)."""
    rows = np.c_[labels, (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                 boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]]
    return rows[np.lexsort(rows.T[::-1])] if len(rows) else rows.reshape(0, 5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", type=Path, required=True, help="the authors' code: PATH/yolox and PATH/venv")
    ap.add_argument("--peer-coco", type=Path, default=None, help="coco128 in their COCO layout (default PATH/coco)")
    ap.add_argument("--data", type=Path, default=default_data_dir(), help="coco128 (YOLO layout)")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)
    cv2.setNumThreads(0)
    coco = args.peer_coco or args.peer / "coco"
    images_file = Path(tempfile.mkdtemp(prefix="augment-replay-")) / "theirs.npz"
    with authors_worker(args.peer, "augment_record", "--coco", str(coco), "--out", str(images_file),
                        "--seed", str(args.seed), "--threads", "1") as theirs:
        samples = theirs.call("record", n=args.samples)["samples"]
    their_images = np.load(images_file)["images"]
    os.unlink(images_file)

    dataset = read_yolo_dataset(args.data)     # the same 128 images in the same order (sorted file names)
    ours = TrainAugment(dataset, recipe_for_model("yolox-nano", AugmentParams(hsv_prob=0.0, flip_prob=0.0)), 0)
    worst_pixel, worst_box, mosaics = 0.0, 0.0, 0
    count_mismatch, degenerate, phantom = [], 0, 0
    for k, sample in enumerate(samples):
        ours.py = Replay(sample["draws"])
        img, boxes, labels = ours(sample["index"], their_images.shape[1], True)
        assert not ours.py.draws, f"sample {k}: {len(ours.py.draws)} of their draws left unused"
        mosaics += sample["draws"][0][2] < ours.params.mosaic_prob
        worst_pixel = max(worst_pixel, float(np.abs(img.astype(np.int16) - their_images[k]).max()))
        t = np.asarray(sample["targets"], np.float64).reshape(-1, 5)
        real = t[np.minimum(t[:, 3], t[:, 4]) > 1]
        degenerate += len(t) - len(real)
        mine = as_rows(boxes, labels)
        real = real[np.lexsort(real.T[::-1])] if len(real) else real
        if len(mine) == len(real):
            if len(real):
                worst_box = max(worst_box, float(np.abs(mine - real).max()))
            continue
        extra = [r for r in real.tolist() if not any(np.allclose(r, m, atol=1.0) for m in mine.tolist())]
        phantom += len(extra)
        count_mismatch.append({"sample": k, "ours": len(mine), "theirs": len(real), "only_theirs": extra})
    n = len(samples)
    print(f"{n} samples ({mosaics} mosaics), their draws replayed through ours (HSV and flip off):")
    print(f"  pixels: largest difference {worst_pixel:.0f} (0-255)")
    print(f"  boxes with a side > 1 px: same count in {n - len(count_mismatch)} samples, largest coordinate "
          f"difference {worst_box:.2f} px")
    print(f"  only theirs: {degenerate} degenerate target rows (min side <= 1 px: their fallback keeps them), "
          f"{phantom} boxes in {len(count_mismatch)} samples that ours drops")
    for m in count_mismatch[:5]:
        print(f"    sample {m['sample']}: ours {m['ours']}, theirs {m['theirs']}; only theirs {np.round(m['only_theirs'], 1).tolist()}")
    print(json.dumps({"bench": "augment_replay", "samples": n, "mosaics": int(mosaics), "max_pixel_diff": worst_pixel,
                      "max_box_diff_px": round(worst_box, 3), "count_mismatches": len(count_mismatch),
                      "only_theirs_boxes": phantom, "their_degenerate_rows": degenerate}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
