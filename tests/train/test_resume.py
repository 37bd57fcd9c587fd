"""Crash-proof resume (issue 4 item 5): a CPU training process killed with SIGKILL mid-epoch and
continued with ``resume=True`` ends with the weights of an uninterrupted run of the same seed, and its
metrics go on in the same MLflow run (one run, every epoch once).

The uninterrupted run is ``yolox train --params F --prepared P --out D``; the killed and resumed runs use
a small driver doing what the pipeline does around :func:`yolox.train.trainer.train`: continue the
MLflow run of :func:`yolox.train.checkpoint.read_run_id` (or start one), log each epoch's metrics to
it. The driver parks the first run inside epoch 2 (after the epoch-1 checkpoint) so that the kill
lands mid-epoch every time, without racing the clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.train import assert_same_run, checkpoint, tiny_params

from yolox.train.checkpoint import read_run_id, write_run_info
from yolox.train.schedule import WarmupCosineSchedule
from yolox.train.trainer import train

EXPERIMENT = "resume-test"
HANG_AT_STEP = 5          # epoch 2 of 3 iterations each: its second step
pytestmark = pytest.mark.usefixtures("one_torch_thread")

DRIVER = textwrap.dedent('''
    import logging, os, sys, time
    from pathlib import Path

    import torch

    from yolox.config import load_params
    from yolox.tracking.run import MlflowRun
    from yolox.train import trainer
    from yolox.train.checkpoint import read_run_id

    logging.basicConfig(level=logging.INFO)
    params_file, prepared, out, resume = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "resume"
    hang_at, marker = int(os.environ.get("HANG_AT_STEP", "0")), os.environ.get("HANG_MARKER")
    if hang_at:
        real_step, calls = trainer.train_step, [0]

        def parked_step(*args, **kwargs):
            calls[0] += 1
            if calls[0] == hang_at:
                Path(marker).write_text(str(calls[0]))
                time.sleep(3600)
            return real_step(*args, **kwargs)

        trainer.train_step = parked_step
    params = load_params(params_file)
    run = MlflowRun(params.tracking.experiment, run_name="resume-test", run_id=read_run_id(out) if resume else None)
    result = trainer.train(params, prepared, out, resume=resume, progress=False, run_id=run.run_id,
                           on_epoch_end=lambda epoch, metrics: run.log_metrics(metrics, step=epoch))
    run.end()
    print("done", result.run_id, result.epochs)
''')


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"})
    return env


def _mlflow_runs(tmp: Path) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name(EXPERIMENT)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def _metric_steps(tmp: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(prepared_subset: Path,
                                                                       tmp_path: Path) -> None:
    params = tiny_params(workers=1).model_dump(mode="json")
    params["tracking"] = {"experiment": EXPERIMENT}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = _env(tmp_path)
    yolox_cli = Path(sys.executable).with_name("yolox")
    ref_out, out, marker = tmp_path / "uninterrupted", tmp_path / "killed", tmp_path / "parked"

    with open(tmp_path / "ref.log", "w") as ref_log, open(tmp_path / "killed.log", "w") as killed_log:
        reference = subprocess.Popen([str(yolox_cli), "train", "--params", str(params_file), "--prepared",
                                      str(prepared_subset), "--out", str(ref_out)], cwd=tmp_path, env=env,
                                     stdout=ref_log, stderr=subprocess.STDOUT)
        victim = subprocess.Popen([sys.executable, str(driver), str(params_file), str(prepared_subset),
                                   str(out), "new"],
                                  cwd=tmp_path, env={**env, "HANG_AT_STEP": str(HANG_AT_STEP),
                                                     "HANG_MARKER": str(marker)},
                                  stdout=killed_log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 180
            while not marker.exists():
                assert victim.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                assert time.time() < deadline, "the training process never reached epoch 2"
                time.sleep(0.2)
            first = checkpoint(out / "last.pth")
            assert first["epoch"] == 1 and first["iteration"] == 3          # mid-epoch 2: one epoch saved
            os.kill(victim.pid, signal.SIGKILL)
            assert victim.wait(timeout=30) == -signal.SIGKILL
        finally:
            if victim.poll() is None:
                victim.kill()

        runs = _mlflow_runs(tmp_path)
        assert len(runs) == 1 and runs[0].info.status == "RUNNING"      # killed: nobody ended it
        run_id = runs[0].info.run_id
        assert read_run_id(out) == run_id == first["mlflow_run_id"]
        assert [s for s, _ in _metric_steps(tmp_path, run_id, "train/total_loss")] == [1]

        resumed = subprocess.run([sys.executable, str(driver), str(params_file), str(prepared_subset),
                                  str(out), "resume"],
                                 cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
        assert "resumed from" in resumed.stderr and f"done {run_id} 3" in resumed.stdout
        assert reference.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()[-3000:]

    want, got = checkpoint(ref_out / "last.pth"), checkpoint(out / "last.pth")
    assert (got["epoch"], got["iteration"], got["ema_updates"]) == (3, 9, 9)
    assert_same_run(want, got)

    # the same MLflow run, continued: one run, finished, every epoch once, the uninterrupted values
    runs = _mlflow_runs(tmp_path)
    assert [r.info.run_id for r in runs] == [run_id] and runs[0].info.status == "FINISHED"
    steps = _metric_steps(tmp_path, run_id, "train/total_loss")
    assert [s for s, _ in steps] == [1, 2, 3]
    assert [v for _, v in steps] == pytest.approx([h["train/total_loss"] for h in want["history"]], rel=1e-6)
    assert json.loads((out / "run.json").read_text()) == {"mlflow_run_id": run_id, "reported_epoch": 3}

    # extending train.epochs on resume: one more epoch, the schedule recomputed for the new total
    longer = tiny_params(workers=1, epochs=4)
    extended = train(longer, prepared_subset, out, resume=True, progress=False)
    state = checkpoint(extended.checkpoint)
    assert state["epoch"] == 4 and state["iteration"] == 12 and [h["epoch"] for h in state["history"]] == [1, 2, 3, 4]
    lr = longer.train.basic_lr_per_img * longer.train.batch_size
    assert state["history"][-1]["train/lr"] == pytest.approx(WarmupCosineSchedule(lr, 12, 3, 3)(12))
    assert state["phase"] == {"mosaic": False, "l1": True} and extended.run_id == run_id


def test_resume_without_checkpoint_starts_over_in_the_same_run(prepared_subset: Path, tmp_path: Path) -> None:
    """Killed before its first checkpoint: resume starts at epoch 0 (the same result, the randomness
    being a function of the seed) and keeps the run id recorded when the run started."""
    write_run_info(tmp_path, mlflow_run_id="abc123")
    result = train(tiny_params(epochs=1, no_aug_epochs=0, max_iters_per_epoch=2), prepared_subset, tmp_path,
                   resume=True, progress=False)
    assert result.run_id == "abc123" and checkpoint(result.checkpoint)["mlflow_run_id"] == "abc123"
    assert read_run_id(tmp_path) == "abc123" and checkpoint(result.checkpoint)["epoch"] == 1


def test_epochs_checkpointed_but_not_reported_are_reported_on_resume(prepared_subset: Path,
                                                                     tmp_path: Path) -> None:
    """Killed between a checkpoint and the epoch callback: on resume the callback first gets the epochs
    it missed (from the checkpoint's history), then the new ones: every epoch reaches MLflow once."""
    class Killed(Exception):
        pass

    def dies_at_epoch_2(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 2:
            raise Killed

    params = tiny_params()
    with pytest.raises(Killed):
        train(params, prepared_subset, tmp_path, progress=False, on_epoch_end=dies_at_epoch_2)
    assert checkpoint(tmp_path / "last.pth")["epoch"] == 2
    seen: list[tuple[int, float]] = []
    train(params, prepared_subset, tmp_path, resume=True, progress=False,
          on_epoch_end=lambda epoch, m: seen.append((epoch, m["train/total_loss"])))
    assert [e for e, _ in seen] == [2, 3]
    history = checkpoint(tmp_path / "last.pth")["history"]
    assert seen[0][1] == history[1]["train/total_loss"]


def test_checkpoint_interval_and_epochs_trained_again_are_not_reported_twice(prepared_subset: Path,
                                                                             tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``checkpoint_interval`` 2: checkpoints after epochs 2 and 3 (the last). Killed in epoch 2, after
    epoch 1 was reported but before any checkpoint: the resumed run trains epoch 1 again but reports it
    only once."""
    from yolox.train import trainer

    class Killed(Exception):
        pass

    saved: list[int] = []
    steps = [0]
    real_save, real_step = trainer.save_checkpoint, trainer.train_step

    def dies_in_epoch_2(*args, **kwargs):
        steps[0] += 1
        if steps[0] == 5:
            raise Killed
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "save_checkpoint", lambda state, path: saved.append(state["epoch"]) or real_save(state, path))
    monkeypatch.setattr(trainer, "train_step", dies_in_epoch_2)
    seen: list[int] = []
    params = tiny_params(checkpoint_interval=2)
    with pytest.raises(Killed):
        train(params, prepared_subset, tmp_path, progress=False, on_epoch_end=lambda e, m: seen.append(e),
              run_id="r1")
    assert seen == [1] and saved == [] and not (tmp_path / "last.pth").exists()
    monkeypatch.setattr(trainer, "train_step", real_step)
    result = train(params, prepared_subset, tmp_path, resume=True, progress=False,
                   on_epoch_end=lambda e, m: seen.append(e))
    assert saved == [2, 3] and seen == [1, 2, 3] and result.run_id == "r1"
    assert [h["epoch"] for h in checkpoint(result.checkpoint)["history"]] == [1, 2, 3]
