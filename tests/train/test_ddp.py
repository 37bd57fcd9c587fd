"""Distributed training (issue 4 item 4): 2 processes, torch.distributed with gloo on CPU, launched by
torchrun (``python -m torch.distributed.run``), a few iterations of the real trainer.

Checks: both ranks end with identical parameters (DDP averages the gradients; BatchNorm running
statistics stay per rank, ``broadcast_buffers=False`` as the authors), the ranks trained on different
images, and only rank 0 wrote checkpoints and reported metrics (and evaluated, while rank 1 waited at
the barrier instead of deadlocking).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
import yaml
from helpers.ddp import nano_named_parameters
from helpers.train import checkpoint, tiny_params

from yolox.train.torchrun import free_port

DRIVER = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path

    import torch

    from yolox.config import load_params
    from yolox.train import trainer

    params_file, prepared, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    rank = int(os.environ["RANK"])
    saves, images = [], []
    real_save, real_step = trainer.save_checkpoint, trainer.train_step

    def counting_save(state, path):
        saves.append(int(state["epoch"]))
        return real_save(state, path)

    def recording_step(model, images_, targets, num_targets, *args, **kwargs):
        images.append(float(images_.sum()))
        return real_step(model, images_, targets, num_targets, *args, **kwargs)

    trainer.save_checkpoint, trainer.train_step = counting_save, recording_step
    reported = []
    result = trainer.train(load_params(params_file), prepared, out, progress=False,
                           on_epoch_end=lambda epoch, metrics: reported.append(sorted(metrics)))
    torch.save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, out / f"final_rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps({"saves": saves, "reported": reported, "images": images,
                                                      "world": int(os.environ["WORLD_SIZE"])}))
''')


def test_two_gloo_processes_end_with_identical_weights(prepared_subset: Path, tmp_path: Path) -> None:
    params = tiny_params(epochs=2, no_aug_epochs=1, max_iters_per_epoch=2, batch_size=4)   # 2 images per rank
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           str(driver), str(params_file), str(prepared_subset), str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    finals = [torch.load(out / f"final_rank{r}.pt", weights_only=True) for r in (0, 1)]
    params_names = {n for n, _ in nano_named_parameters()}
    for name in params_names:
        assert torch.equal(finals[0][name], finals[1][name]), f"{name} differs between the ranks"
    state = checkpoint(out / "last.pth")
    for name in params_names:
        assert torch.equal(state["model_raw"][name], finals[0][name])
    assert state["epoch"] == 2 and state["iteration"] == 4 and state["world_size"] == 2
    assert state["ema_updates"] == 4 and "val/AP50_95" in state["history"][-1]

    info = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert info[0]["world"] == info[1]["world"] == 2
    assert info[0]["saves"] == [1, 2] and info[1]["saves"] == []                 # checkpoints from rank 0 only
    assert len(info[0]["reported"]) == 2 and info[1]["reported"] == []           # metrics from rank 0 only
    assert len(info[0]["images"]) == len(info[1]["images"]) == 4
    assert info[0]["images"] != info[1]["images"]                                # each rank its share
    assert sorted(p.name for p in out.glob("*.pth")) == ["last.pth"]
