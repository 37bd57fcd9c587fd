"""Calibrate ``tests/train/test_step_parity.py``: one training step of the authors' code on the test's batch.

Builds the test's batch (the first 8 coco128 images with boxes, letterboxed to 416) and runs one step of their
code from the shared nano weights (``authors_worker.py train_step``, op ``figures``: their model, loss,
optimizer groups at lr 0.01/64 * 8), then ours (the test's ``one_step``, NCHW and channels_last). Prints the
authors' figures as the test's literals and each side's deviation from them; ends with one JSON line.

    YOLOX_ASSETS_DIR=../shared .venv/bin/python bench/step_parity.py --peer /work/peer
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from common import add_common_args, parse_args, read_yolo_dataset
from helpers.step_parity import LR_PER_IMG, one_step, parity_batch  # noqa: F401  (the test's protocol)
from sidebyside import authors_worker

from yolox.assets import resolve_weights


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, peer="required", data=True)
    args = parse_args(ap, argv)
    torch.set_num_threads(2)
    weights = resolve_weights("yolox_nano.pth")
    batch = parity_batch(read_yolo_dataset(args.data).records)
    with tempfile.TemporaryDirectory(prefix="step-parity-") as tmp:
        path = Path(tmp) / "batch.pt"
        torch.save([batch], path)
        with authors_worker(args.peer, "train_step", "--model", "yolox-nano", "--weights", str(weights),
                            "--batches", str(path), "--threads", "2") as theirs:
            authors = theirs.call("figures")
    loss = {k: round(v, 6) for k, v in authors["loss"].items() if k != "num_fg"}
    print(f"AUTHORS_LOSS = {loss}")
    print(f"AUTHORS_UPDATE_L1 = {{{', '.join(f'{k!r}: {v:.6g}' for k, v in authors['update_l1'].items())}}}")
    result = {"bench": "step_parity", "authors_total": authors["loss"]["total_loss"]}
    for tag, cl in (("nchw", False), ("channels_last", True)):
        ours_loss, ours_upd = one_step(weights, batch, cl)
        worst = max(abs(ours_upd[k] / v - 1) for k, v in authors["update_l1"].items())
        rel = abs(ours_loss["total_loss"] / authors["loss"]["total_loss"] - 1)
        print(f"ours {tag}: total loss {ours_loss['total_loss']:.6f} (rel. diff {rel:.2e}), worst update size "
              f"rel. diff {worst:.2e}")
        result.update({f"{tag}_total": ours_loss["total_loss"], f"{tag}_loss_rel": rel, f"{tag}_update_rel": worst})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
