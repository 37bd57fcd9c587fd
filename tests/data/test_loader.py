"""The training loader (yolox/data/dataset.py) as training and resuming need it: its batches are a function of
the seed and the epoch only (what exact resume needs), and a process that exits with a live loader does not
hang."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch

from yolox.config import AugmentParams
from yolox.data.dataset import WORKER_STOP_GRACE_S, build_train_loader
from yolox.data.prepare import load_dataset


def test_loader_batches_are_a_function_of_seed_and_epoch_only(coco128_dir: Path) -> None:
    """Per-sample augmentation seeds: the same batches with 0 or 2 workers, in an epoch reached
    directly or after other epochs (what exact resume needs), different in another epoch."""
    data = load_dataset(str(coco128_dir / "dataset.yaml"), "train")

    def epoch_batches(workers: int, epochs: list[int]) -> list[list[tuple[torch.Tensor, ...]]]:
        loader = build_train_loader(data, AugmentParams(), "yolox-s", 160, batch_size=4, workers=workers, seed=3)
        out = []
        for e in epochs:
            loader.batch_sampler.set_epoch(e)
            out.append([b for _, b in zip(range(3), loader)])
        return out

    (a2,) = epoch_batches(0, [2])
    _, b1, b2 = epoch_batches(2, [0, 1, 2])
    for x, y in zip(a2, b2):
        assert all(torch.equal(u, v) for u, v in zip(x, y))
    assert not torch.equal(a2[0][0], b1[0][0])
    assert all(b[0].shape[-1] in range(32, 321, 32) for b in a2)


LIVE_LOADER_AT_EXIT = '''
import sys
from pathlib import Path
import cv2, numpy as np
from yolox.config import AugmentParams
from yolox.data.dataset import build_train_loader
from yolox.data.records import DetectionDataset, ImageRecord
root = Path(sys.argv[1])
records = []
for k, path in enumerate(sorted((root / "images" / "train2017").glob("*.jpg"))[:8]):
    h, w = cv2.imread(str(path)).shape[:2]
    records.append(ImageRecord(k + 1, path.resolve(), w, h, np.array([[10, 10, 60, 60]], np.float32),
                               np.zeros(1, np.int64)))
dataset = DetectionDataset(["thing"], [1], records)
it = iter(build_train_loader(dataset, AugmentParams(), "yolox-nano", 128, 4, 2, seed=0, multiscale=False))
images, targets = next(it)[:2]
print("batch", tuple(images.shape), flush=True)
# exits with the iterator (and its 2 workers) alive: multiprocessing terminates (SIGTERM), then joins them
'''


def test_a_process_exiting_with_a_live_training_loader_does_not_hang(coco128_dir: Path, tmp_path: Path) -> None:
    """The loader's workers defer SIGTERM (the trainer stops them itself after finishing its step), but not
    forever: a script that exits while its training-loader iterator is alive (multiprocessing's exit
    handler SIGTERMs its daemonic workers, then joins them) ended only by SIGKILL before; it must now
    exit within the workers' grace (``WORKER_STOP_GRACE_S``)."""
    script = tmp_path / "live_loader.py"
    script.write_text(LIVE_LOADER_AT_EXIT)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), str(coco128_dir)], capture_output=True, text=True, check=False,
                          timeout=WORKER_STOP_GRACE_S + 60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batch (4, 3, 128, 128)" in proc.stdout
    assert time.perf_counter() - t0 < WORKER_STOP_GRACE_S + 45
