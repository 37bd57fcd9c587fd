"""Bad-input matrix, tracking (issue 11): what the pipeline does when MLflow is not there, not right, or goes
away, and what the metrics journal does with what it could not send.

- The check before any work (``run_pipeline`` -> ``yolox.tracking.store.check_stores``): each bad store gives
  one exact line (PreflightError; the CLI prints it as ``error: ...`` and exits 1) and nothing is prepared.
  Servers are a closed loopback port, an unresolvable ``.invalid`` host, and a tiny ``http.server`` stand-in
  (tests/helpers/mlflow_stub.py) answering 500, 403 or too late.
- The journal (``yolox.tracking.journal``): a server that dies mid-run leaves the entries pending with one
  warning saying how to flush; a truncated last line loses nothing before it; ``yolox tracking flush`` with no
  journal, no folder, or another store's entries.
- Credentials in MLFLOW_TRACKING_URI reach the server but never the messages, logs or journal.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.mlflow_stub import MlflowStub
from helpers.project_files import REPO

from yolox.config import PipelineParams
from yolox.errors import PreflightError, TrackingError
from yolox.tracking.journal import JOURNAL_NAME, MetricBuffer, flush_journal
from yolox.train.torchrun import free_port

YOLOX = str(Path(sys.executable).parent / "yolox")
RUN = "0123456789abcdef0123456789abcdef"
PROBE = "/api/2.0/mlflow/experiments/search"


def case(kind: str) -> pytest.MarkDecorator:
    """A one-case matrix entry: the test's pytest id is ``pipeline-<kind>``."""
    return pytest.mark.parametrize("kind", [kind], ids=[f"pipeline-{kind}"])


@pytest.fixture(scope="module")
def stub() -> MlflowStub:
    """One stand-in server for the module; each test sets (and the fixture below resets) its behaviour."""
    s = MlflowStub().start()
    yield s
    s.stop()


@pytest.fixture
def fresh(stub: MlflowStub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MlflowStub:
    stub.status, stub.delay, stub.swallow = None, 0.0, 0
    stub.metrics.clear()
    stub.requests.clear()
    stub.auth.clear()
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ALLOW_FILE_STORE",
                "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return stub


def cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    full.update({"COLUMNS": "400", "PYTHONPATH": str(REPO), **env})
    return subprocess.run([YOLOX, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120,
                          check=False)


# --- the check before any work: one line each, nothing prepared ------------------------------------------


def _preflight_cases(tmp: Path, stub: MlflowStub) -> dict[str, tuple[dict[str, str], float, str]]:
    """kind -> (environment, preflight timeout, the exact error line)."""
    dead = free_port()
    (tmp / "a-file").write_text("not a folder\n")
    (tmp / "junk.db").write_text("this is no database\n" * 20)
    refused = ("is unreachable: connection refused; start the MLflow server or point {var} at a running one")
    return {
        "unresolvable-host": ({"MLFLOW_TRACKING_URI": "http://mlflow.invalid:5000"}, 5.0,
                              ("MLflow tracking store http://mlflow.invalid:5000 (MLFLOW_TRACKING_URI) is unreachable: "
                              "host 'mlflow.invalid' not found; fix the host name in MLFLOW_TRACKING_URI")),
        "bad-scheme": ({"MLFLOW_TRACKING_URI": "ftp://127.0.0.1/mlflow"}, 5.0,
                       ("MLflow tracking store ftp://127.0.0.1/mlflow (MLFLOW_TRACKING_URI) has scheme 'ftp', which is "
                       "not an MLflow store: use http(s)://HOST:PORT, sqlite:////ABS/PATH/mlflow.db or a "
                       "postgresql/mysql/mssql URL")),
        "sqlite-missing-folder": ({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/no/such/mlflow.db"}, 5.0,
                                  (f"MLflow tracking store sqlite:///{tmp}/no/such/mlflow.db (MLFLOW_TRACKING_URI) "
                                  f"cannot be created: folder {tmp}/no/such does not exist; create it or point "
                                  "MLFLOW_TRACKING_URI elsewhere")),
        "sqlite-parent-is-file": ({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/a-file/mlflow.db"}, 5.0,
                                  (f"MLflow tracking store sqlite:///{tmp}/a-file/mlflow.db (MLFLOW_TRACKING_URI) "
                                  f"cannot be created: {tmp}/a-file is not a folder; point MLFLOW_TRACKING_URI "
                                  "elsewhere")),
        "sqlite-not-a-database": ({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/junk.db"}, 5.0,
                                  (f"MLflow tracking store sqlite:///{tmp}/junk.db (MLFLOW_TRACKING_URI) cannot be "
                                  f"opened: {tmp}/junk.db is not an SQLite database (file is not a database); "
                                  "point MLFLOW_TRACKING_URI at an MLflow database")),
        "file-store": ({"MLFLOW_TRACKING_URI": f"file://{tmp}/mlruns"}, 5.0,
                       (f"MLflow tracking store file://{tmp}/mlruns (MLFLOW_TRACKING_URI) is a file store, which "
                       "MLflow 3 keeps read-only (maintenance mode); use sqlite:////ABS/PATH/mlflow.db in "
                       "MLFLOW_TRACKING_URI, or set MLFLOW_ALLOW_FILE_STORE=true")),
        "server-500": ({"MLFLOW_TRACKING_URI": stub.uri, "stub": "500"}, 5.0,
                       (f"MLflow tracking store {stub.uri} (MLFLOW_TRACKING_URI) answered HTTP 500 to GET {PROBE}: "
                       "the server is up but failing; see its log")),
        "server-403": ({"MLFLOW_TRACKING_URI": stub.uri, "stub": "403"}, 5.0,
                       (f"MLflow tracking store {stub.uri} (MLFLOW_TRACKING_URI) refused access (HTTP 403); set "
                       "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), or allow "
                       "this host name in the server's --allowed-hosts")),
        "slow-server": ({"MLFLOW_TRACKING_URI": stub.uri, "stub": "slow"}, 1.0,
                        (f"MLflow tracking store {stub.uri} (MLFLOW_TRACKING_URI) did not answer within 1 s; check "
                        "that the server is up and that MLFLOW_TRACKING_URI is its address, or raise "
                        "tracking.preflight_timeout_s")),
        "registry-dead": ({"MLFLOW_TRACKING_URI": stub.uri, "MLFLOW_REGISTRY_URI": f"http://127.0.0.1:{dead}"}, 5.0,
                          f"MLflow model registry http://127.0.0.1:{dead} (MLFLOW_REGISTRY_URI) "
                          + refused.format(var="MLFLOW_REGISTRY_URI")),
        "credentials-in-uri": ({"MLFLOW_TRACKING_URI": f"http://alice:s3cret@127.0.0.1:{dead}"}, 5.0,
                               f"MLflow tracking store http://***@127.0.0.1:{dead} (MLFLOW_TRACKING_URI) "
                               + refused.format(var="MLFLOW_TRACKING_URI")),
    }


PREFLIGHT_KINDS = ["unresolvable-host", "bad-scheme", "sqlite-missing-folder", "sqlite-parent-is-file",
                   "sqlite-not-a-database", "file-store", "server-500", "server-403", "slow-server", "registry-dead",
                   "credentials-in-uri"]


@pytest.mark.parametrize("kind", PREFLIGHT_KINDS, ids=[f"pipeline-{k}" for k in PREFLIGHT_KINDS])
def test_preflight_fails_in_one_line_before_any_work(kind: str, fresh: MlflowStub, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from yolox.pipeline import run_pipeline

    env, timeout, expected = _preflight_cases(tmp_path, fresh)[kind]
    behaviour = env.pop("stub", None)
    fresh.status = int(behaviour) if behaviour in ("500", "403") else None
    fresh.delay = 3.0 if behaviour == "slow" else 0.0
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    params = PipelineParams.model_validate({"data": {"source": "coco128"},
                                            "tracking": {"preflight_timeout_s": timeout}})
    with caplog.at_level(logging.DEBUG), pytest.raises(PreflightError) as err:
        run_pipeline(params)
    assert str(err.value) == expected
    assert "\n" not in str(err.value)
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlflow.db").exists()   # nothing was done
    assert "s3cret" not in caplog.text + str(err.value)
    if behaviour:
        assert fresh.requests == [("GET", PROBE)]    # one request, no retries


@case('dead-http')
def test_pipeline_dead_tracking_uri_cli_exits_in_seconds(kind: str, tmp_path: Path) -> None:
    """pipeline-dead-http: ``yolox pipeline`` with MLFLOW_TRACKING_URI on a closed loopback port."""
    port = free_port()
    t0 = time.monotonic()
    proc = cli(["pipeline", "--params", str(REPO / "params" / "default.yaml")], tmp_path,
               {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})
    seconds = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        (f"error: MLflow tracking store http://127.0.0.1:{port} (MLFLOW_TRACKING_URI) is unreachable: connection "
        "refused; start the MLflow server or point MLFLOW_TRACKING_URI at a running one")]
    assert proc.stdout == "" and not (tmp_path / "data").exists()
    assert seconds < 30, f"took {seconds:.1f} s"


@case('flow-preflight')
def test_flow_does_not_retry_a_failed_preflight(kind: str, fresh: MlflowStub, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """pipeline-flow-preflight: the Prefect flow fails with the same line, and the retry policy calls a failed
    preflight permanent (a tracking error later in the run stays transient)."""
    from flows.resilience import is_transient
    from flows.train_yolox import train_yolox

    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    lib = logging.getLogger("yolox")
    monkeypatch.setattr(lib, "handlers", list(lib.handlers))    # the flow adds Prefect's handlers: not for later tests
    monkeypatch.setattr(lib, "level", lib.level)
    with pytest.raises(PreflightError, match=f"^MLflow tracking store http://127.0.0.1:{port} .* connection refused"):
        train_yolox.fn(str(REPO / "params" / "default.yaml"))
    assert not is_transient(PreflightError("x")) and is_transient(TrackingError("x"))
    assert not (tmp_path / "data").exists()


# --- the journal -----------------------------------------------------------------------------------------


def _epochs(buffer: MetricBuffer, steps: range) -> None:
    for step in steps:
        buffer.log_metrics({"train/total_loss": 10.0 / step, "train/lr": 0.01}, step)


def _wait(predicate, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@case('server-dies-mid-run')
def test_pipeline_server_dies_mid_run(kind: str, fresh: MlflowStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """pipeline-server-dies-mid-run: epochs logged while the server is gone are kept; the end of the run waits
    its bounded time, then one warning says where they are and how to send them; the flush sends them once."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh.uri)
    out = tmp_path / "train"
    buffer = MetricBuffer(out, RUN, request_timeout=1.0)
    _epochs(buffer, range(1, 3))
    _wait(lambda: len(fresh.logged()) == 4)
    fresh.stop()
    try:
        _epochs(buffer, range(3, 6))
        with caplog.at_level(logging.WARNING, "yolox"):
            assert buffer.close(0.5) == 3
    finally:
        fresh.start()
    warning = [r.getMessage() for r in caplog.records if "not in MLflow" in r.getMessage()]
    assert warning == [(f"3 tracking entries (run {RUN}, steps 3..5) not in MLflow at {fresh.uri} after 0.5 s "
                       f"(connection refused): kept in {out / JOURNAL_NAME}; send them with: yolox tracking flush "
                       f"--out {out}")]
    proc = cli(["tracking", "flush", "--out", str(out)], tmp_path, {"MLFLOW_TRACKING_URI": fresh.uri})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (f"{out / JOURNAL_NAME}: sent 3 entries (6 metrics, 0 already in "
                                                    f"MLflow) to {fresh.uri}; nothing pending")
    assert fresh.logged(RUN) == [(k, s) for s in range(1, 6) for k in ("train/total_loss", "train/lr")]


@case('slow-server-mid-run')
def test_pipeline_slow_server_mid_run(kind: str, fresh: MlflowStub, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that takes longer to answer than the request timeout: logging returns before the server has
    anything (it is not waited for), the request that timed out still lands (late), and the flush afterwards
    finds it in the run and sends only the rest: each metric once."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh.uri)
    fresh.delay = 2.0
    buffer = MetricBuffer(tmp_path, RUN, request_timeout=0.5)
    _epochs(buffer, range(1, 4))
    assert fresh.logged() == [] and buffer.pending == 3            # returned while the server still sleeps
    assert buffer.close(0) == 3
    _wait(lambda: len(fresh.logged()) >= 2)                        # the timed-out request, taken late
    fresh.delay = 0.0
    result = flush_journal(tmp_path, 20.0, 2.0)
    assert (result.sent_entries, result.sent_metrics, result.skipped_metrics, result.pending) == (3, 4, 2, 0)
    assert fresh.logged(RUN) == [(k, s) for s in range(1, 4) for k in ("train/total_loss", "train/lr")]


@case('journal-truncated')
def test_pipeline_journal_truncated_last_line(kind: str, fresh: MlflowStub, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """pipeline-journal-truncated: a crash cut the last line short; the entries before it are sent, the cut line
    is reported and skipped, and a later append does not glue onto it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh.uri)
    fresh.stop()
    try:
        buffer = MetricBuffer(tmp_path, RUN, request_timeout=0.5)
        _epochs(buffer, range(1, 4))
        assert buffer.close(0) == 3
    finally:
        fresh.start()
    journal = tmp_path / JOURNAL_NAME
    journal.write_bytes(journal.read_bytes() + b'{"seq": 4, "store": "http://127.0.0.1:1", "run_id": "abc", "met')
    buffer = MetricBuffer(tmp_path, RUN, request_timeout=2.0)
    buffer.log_metrics({"train/total_loss": 1.0}, 4)               # appended after the cut line, not glued to it
    assert buffer.close(20) == 0
    assert buffer.bad_lines == [4]
    assert fresh.logged(RUN) == [(k, s) for s in range(1, 4) for k in ("train/total_loss", "train/lr")] + [
        ("train/total_loss", 4)]
    lines = journal.read_text().splitlines()
    assert lines[3].endswith('"met') and json.loads(lines[4])["seq"] == 4


@case('credentials-journal')
def test_pipeline_credentials_in_uri_not_in_logs_or_journal(kind: str, fresh: MlflowStub, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """pipeline-credentials-journal: user:password in MLFLOW_TRACKING_URI authenticate the requests (the server
    sees Basic auth) but appear in no log line, message or journal line, even when the server fails."""
    uri = fresh.uri.replace("http://", "http://alice:s3cret@")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    fresh.status = 503
    with caplog.at_level(logging.DEBUG):
        buffer = MetricBuffer(tmp_path, RUN, request_timeout=1.0)
        _epochs(buffer, range(1, 3))
        _wait(lambda: len(fresh.requests) >= 1)
        fresh.status = None
        assert buffer.close(20) == 0
    assert fresh.logged(RUN) == [(k, s) for s in (1, 2) for k in ("train/total_loss", "train/lr")]
    assert {a for a in fresh.auth} == {"Basic YWxpY2U6czNjcmV0"}     # alice:s3cret
    text = caplog.text + (tmp_path / JOURNAL_NAME).read_text()
    assert "s3cret" not in text and "alice" not in text
    assert f"MLflow at {fresh.uri.replace('http://', 'http://***@')}: HTTP 503" in caplog.text


FLUSH_KINDS = ["flush-no-journal", "flush-no-folder", "flush-other-store"]


@pytest.mark.parametrize("kind", FLUSH_KINDS, ids=[f"pipeline-{k}" for k in FLUSH_KINDS])
def test_pipeline_flush_edge_cases(kind: str, fresh: MlflowStub, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``yolox tracking flush`` on a folder with no journal (nothing to do: exit 0), on no folder (exit 1), and on
    a journal whose pending entries belong to another store than MLFLOW_TRACKING_URI (refused; they wait)."""
    if kind == "flush-no-journal":
        empty = tmp_path / "empty"
        empty.mkdir()
        proc = cli(["tracking", "flush", "--out", str(empty)], tmp_path, {"MLFLOW_TRACKING_URI": fresh.uri})
        assert (proc.returncode, proc.stderr.strip()) == (0, f"no tracking journal in {empty}: nothing to send")
        return
    if kind == "flush-no-folder":
        proc = cli(["tracking", "flush", "--out", str(tmp_path / "nope")], tmp_path,
                   {"MLFLOW_TRACKING_URI": fresh.uri})
        assert (proc.returncode, proc.stderr.strip()) == (
            1, f"error: --out {tmp_path / 'nope'}: no such folder; give the training output folder (train.output_dir)")
        return
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh.uri)
    fresh.stop()
    try:
        buffer = MetricBuffer(tmp_path / "run", RUN, request_timeout=0.5)
        _epochs(buffer, range(1, 3))
        assert buffer.close(0) == 2
    finally:
        fresh.start()
    other = f"sqlite:///{tmp_path}/other.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    with pytest.raises(TrackingError) as err:
        flush_journal(tmp_path / "run", 1.0, 2.0)
    assert str(err.value) == (f"{tmp_path / 'run' / JOURNAL_NAME}: its pending entries belong to {fresh.uri}, not "
                              f"{other}: set MLFLOW_TRACKING_URI to that store (with its credentials) and flush again")
    assert fresh.logged() == []                                       # the entries wait for their own store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh.uri)
    assert flush_journal(tmp_path / "run", 20.0, 2.0).sent_entries == 2
    assert fresh.logged(RUN) == [(k, s) for s in (1, 2) for k in ("train/total_loss", "train/lr")]
