"""A real ``mlflow server`` (the installed MLflow, SQLite backend) SIGKILLed during training and restarted on the
same port with the same backend (issue 11): training goes on while the server is gone (epochs keep completing,
their metrics wait in the journal), and at the end every epoch's metrics are in the run exactly once.

The training is the pipeline's train stage (``yolox.train.stage.train``, in-process launcher) in a subprocess:
yolox-nano at 128 px from scratch on 8 coco128 images, 1 iteration of batch 2 per epoch, evaluation at the last
epoch only, one torch thread (about a second an epoch here). The test waits for an epoch to reach the server
(or for epoch 6), SIGKILLs it and starts it again at once; the epochs that complete before the new server answers
(its start-up takes 10-50 s here) are counted, and when training ends before it answers, the end of training
waits for it (``tracking.flush_timeout_s``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from helpers.mlflow_server import MlflowServer
from helpers.project_files import REPO
from helpers.train import prepare_subset, tiny_params

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
EPOCHS = 16
KILL_BY_EPOCH = 6   # kill once MLflow has an epoch, or at this epoch if its answers lag (a loaded machine)

TRAINER = textwrap.dedent('''
    import logging, sys
    from yolox.config import load_params
    from yolox.train.stage import train

    logging.basicConfig(level=logging.INFO, format="%(created).3f %(name)s %(levelname)s %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    result = train(load_params(sys.argv[1]), sys.argv[2], sys.argv[3], run_id=sys.argv[4], progress=False)
    print("trained", result.epochs, "epochs", flush=True)
''')


def _journal(path: Path) -> tuple[int, int]:
    """(entries, acks) in the journal so far."""
    if not path.is_file():
        return 0, 0
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return sum("seq" in r for r in rows), sum("ack" in r for r in rows)


def _until(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None and not predicate():
            pytest.fail(f"training ended ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


def test_training_goes_on_while_the_server_is_killed_and_logs_every_epoch_once(tmp_path: Path,
                                                                               coco128_dir: Path) -> None:
    from mlflow import MlflowClient

    server, out = MlflowServer(tmp_path), tmp_path / "out"
    server.launch()                                              # starts while the data is prepared
    prepared = prepare_subset(coco128_dir, tmp_path, n=8)
    params = tiny_params(epochs=EPOCHS, max_iters_per_epoch=1, batch_size=2)
    params.tracking.request_timeout_s = 2.0
    params.tracking.flush_timeout_s = 90.0
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json")))

    journal, log = out / "tracking-journal.jsonl", tmp_path / "train.log"
    uri = server.uri
    trainer = None
    try:
        print(f"mlflow server healthy in {server.wait_healthy(120):.1f} s")
        client = MlflowClient(tracking_uri=uri)
        run_id = client.create_run(client.create_experiment(params.tracking.experiment)).info.run_id
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONPATH": str(REPO)}
        with log.open("w") as fh:
            trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(params_file), str(prepared), str(out),
                                        run_id], cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _until(lambda: _journal(journal)[1] >= 1 or _journal(journal)[0] >= KILL_BY_EPOCH, 180, "an epoch in MLflow",
               trainer, log)
        server.kill()
        killed_at = time.time()
        server.launch()                                          # same port, same database
        print(f"mlflow server back {server.wait_healthy(120):.1f} s after the kill")
        back_at = time.time()
        assert trainer.wait(240) == 0, log.read_text()[-3000:]
        client = MlflowClient(tracking_uri=uri)
        for key in ("train/total_loss", "train/iou_loss", "train/lr"):
            assert [m.step for m in client.get_metric_history(run_id, key)] == list(range(1, EPOCHS + 1)), key
        assert [m.step for m in client.get_metric_history(run_id, "val/AP50_95")] == [EPOCHS]
        assert [a.path for a in client.list_artifacts(run_id)] == ["checkpoint"]
    finally:
        if trainer is not None and trainer.poll() is None:
            trainer.kill()
        server.kill()

    text = log.read_text()
    ended = [float(line.split()[0]) for line in text.splitlines() if " yolox.train INFO epoch " in line]
    during = sum(killed_at < t < back_at for t in ended)
    print(f"{during} of {EPOCHS} epochs completed while the server was down ({back_at - killed_at:.1f} s); epochs "
          f"ended at {', '.join(f'{t - killed_at:+.1f}' for t in ended)} s from the kill")
    assert len(ended) == EPOCHS and during >= 2
    entries, acks = _journal(journal)
    assert entries == acks == EPOCHS
    assert text.count("metrics are kept in") == 1 and "answers again" in text
