"""Learning test: a short real training run must learn as much as the authors' code does in the same run.

Every piece of a step can be exact while a run still learns badly (issue 9), so this trains end to end:
from the authors' yolox-nano weights with the class predictors re-initialised (a fresh model's, seed 0),
the first 20 coco128 images prepared (seeded 80/20 split: 16 train images), no augmentation (letterbox
only), 416 px, batch 8, lr 0.01/64 per image (the authors'), warm-up 1 epoch then cosine, EMA, for
``EPOCHS`` epochs of 2 iterations. The EMA model's AP50:95 on its 16 train images ("fit") and the mean
total loss of the last epoch are compared with the figures the AUTHORS' code reaches under the same
settings from the same weights file (``bench/learning_ci.py``: their Exp, data loader, optimizer,
scheduler and EMA in their trainer's order, ``bench/authors_loop.py``). Calibrated on 2026-12-01 on this
machine class (2 CPU cores, torch 2.13 CPU), with::

    YOLOX_ASSETS_DIR=../shared .venv/bin/python bench/learning_ci.py \
        --peer-python /work/peer/venv/bin/python --peer-src /work/peer/yolox

Over seeds 0, 1, 2 (one thread per run) it printed, theirs: fit AP50:95 0.2115 / 0.3134 / 0.2625 (mean
0.2625), last-epoch loss 4.370 / 4.293 / 4.327; ours: fit 0.1320 / 0.2859 / 0.2706 (mean 0.2295), last loss
4.577 / 4.491 / 4.245. The fit AP of one short run varies with the order of the batches (0.13-0.31 above, on
both sides), the loss curve much less (within 4 % of the authors' mean at every epoch from the third, on
their side; within 10 % on ours). So the test asserts the loss curve closely and the AP loosely: the AP
must leave the start (about 0.005) for at least 0.35x the authors' mean; a trainer that learns half as fast,
or not at all, fails both.
"""

from __future__ import annotations

from pathlib import Path

import torch
from helpers.learning import EPOCHS, fit_ap, prepare_learning_subset, reinit_start, run_learning

from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights

AUTHORS_FIT_AP = 0.2625    # mean over 3 seeds of the authors' code (module docstring)
AUTHORS_LOSSES = (23.384, 18.407, 13.651, 11.363, 10.053, 9.192, 8.536, 7.938, 7.368, 6.837, 6.425, 6.032,
                  5.679, 5.414, 5.149, 5.001, 4.879, 4.682, 4.621, 4.547, 4.482, 4.435, 4.363, 4.33)
"""The authors' mean total loss of each epoch (same runs)."""


def test_short_run_learns_as_well_as_the_authors_code(coco128_dir: Path, nano_pth: Path, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        prepared = prepare_learning_subset(coco128_dir, tmp_path)
        start = reinit_start(nano_pth, tmp_path / "start.pth")
        model = build_model("yolox-nano", 80)
        load_weights(model, start)
        before = fit_ap(model, prepared)
        got = run_learning(prepared, start, tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    assert before < 0.01
    assert len(got["losses"]) == len(AUTHORS_LOSSES) == EPOCHS
    ratios = [ours / theirs for ours, theirs in zip(got["losses"][2:], AUTHORS_LOSSES[2:])]
    assert max(ratios) <= 1.15, f"loss per epoch {got['losses']} vs the authors' {AUTHORS_LOSSES}"
    assert got["last_loss"] <= 1.1 * AUTHORS_LOSSES[-1], got
    assert got["fit"] >= 0.35 * AUTHORS_FIT_AP, got
