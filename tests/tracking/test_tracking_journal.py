"""The training metrics journal (yolox/tracking/journal.py) against a stand-in server that records every metric
it is sent (tests/helpers/mlflow_stub.py, no deduplication of its own), and against a real SQLite store:

- while the server is down, log_metrics keeps journaling (nothing reaches the server, nothing is lost);
- when it is back, the pending entries go out in order, each metric once, even when the answer to one request
  is lost after the server took it (the resend asks the run what it has first);
- a journal whose ack lines are gone (the process died before writing them) is flushed without sending a
  metric twice; a resumed run reporting an epoch again journals nothing new.

A slow end-to-end check with a real ``mlflow server`` killed and restarted during training is in
tests/tracking/test_tracking_outage.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers.mlflow_stub import MlflowStub

from yolox.tracking.journal import JOURNAL_NAME, MetricBuffer, flush_journal

RUN = "fedcba9876543210fedcba9876543210"
KEYS = ("train/total_loss", "train/lr")


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> MlflowStub:
    s = MlflowStub().start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", s.uri)
    yield s
    s.stop()


def _log(buffer: MetricBuffer, steps: range) -> None:
    for step in steps:
        buffer.log_metrics({"train/total_loss": 10.0 / step, "train/lr": 0.01 * step}, step)


def _wait(predicate, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_dead_server_buffers_then_flushes_each_metric_once(stub: MlflowStub, tmp_path: Path) -> None:
    buffer = MetricBuffer(tmp_path, RUN, request_timeout=1.0)
    _log(buffer, range(1, 3))
    _wait(lambda: len(stub.logged()) == 4)

    stub.stop()                                                  # dead: connection refused
    _log(buffer, range(3, 7))
    time.sleep(0.5)
    assert buffer.pending == 4 and stub.logged() == [(k, s) for s in (1, 2) for k in KEYS]
    journal = [json.loads(line) for line in (tmp_path / JOURNAL_NAME).read_text().splitlines()]
    assert [e["seq"] for e in journal if "seq" in e] == [1, 2, 3, 4, 5, 6]
    assert [e["ack"] for e in journal if "ack" in e] == [1, 2]

    stub.start()                                                 # back, on the same port
    stub.swallow = 1                  # it takes the next batch but its answer is lost: the client must not resend
    assert buffer.close(30) == 0
    assert stub.logged(RUN) == [(k, s) for s in range(1, 7) for k in KEYS]     # in order, each once
    assert buffer.sent_entries == 6 and buffer.skipped_metrics == 2            # the swallowed batch, found there
    acks = [json.loads(line).get("ack") for line in (tmp_path / JOURNAL_NAME).read_text().splitlines()]
    assert sorted(a for a in acks if a) == [1, 2, 3, 4, 5, 6]

    # idempotent: nothing pending, nothing sent again; nor when the acks were lost (the run is asked first)
    assert flush_journal(tmp_path, 10, 2.0).sent_entries == 0
    path = tmp_path / JOURNAL_NAME
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines() if '"ack"' not in line))
    result = flush_journal(tmp_path, 30, 2.0)
    assert (result.sent_entries, result.sent_metrics, result.skipped_metrics, result.pending) == (6, 0, 12, 0)
    assert stub.logged(RUN) == [(k, s) for s in range(1, 7) for k in KEYS]


def test_resumed_epochs_are_not_journaled_twice(stub: MlflowStub, tmp_path: Path) -> None:
    buffer = MetricBuffer(tmp_path, RUN, request_timeout=1.0)
    _log(buffer, range(1, 4))
    assert buffer.close(20) == 0
    buffer = MetricBuffer(tmp_path, RUN, request_timeout=1.0)    # a resumed run reports epochs 2 and 3 again
    _log(buffer, range(2, 5))
    assert buffer.close(20) == 0
    assert stub.logged(RUN) == [(k, s) for s in range(1, 5) for k in KEYS]


def test_sqlite_store_through_the_mlflow_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-HTTP store goes through MLflow's client: same journal, same once-only flush."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    exp = client.create_experiment("journal", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(exp).info.run_id
    buffer = MetricBuffer(tmp_path / "out", run_id, 5.0)
    _log(buffer, range(1, 4))
    assert buffer.close(30) == 0
    path = tmp_path / "out" / JOURNAL_NAME
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines() if '"ack"' not in line))
    assert flush_journal(tmp_path / "out", 30, 2.0).skipped_metrics == 6
    for key in KEYS:
        assert [m.step for m in client.get_metric_history(run_id, key)] == [1, 2, 3]
