"""Training metrics through an on-disk journal to MLflow, so that a dead or slow tracking server never blocks
training.

:meth:`MetricBuffer.log_metrics` appends the metrics to ``<output_dir>/tracking-journal.jsonl`` (a JSON line,
flushed and fsync'ed) and returns; a background thread sends the entries to MLflow in journal order, one request at
a time with a short timeout (``tracking.request_timeout_s``) and none of MLflow's own retries (its defaults, up to
7 retries of up to 120 s per request, are what stalled training on a dead server), and records each entry that
the run has with an ``ack`` line. While the server is down or slow the thread waits 1, 2, 4 ... 30 s between
attempts (and tries again when a new entry comes), training goes on, and when the server answers again the pending
entries go out in order. An entry whose earlier attempt failed may have reached the run anyway (the answer was
lost, or an earlier process died before writing its ``ack``): before sending it again the thread asks MLflow which
of its metrics, by (key, step, timestamp), the run already has and sends only the others, so every metric reaches
the run once.

At the end of training :meth:`MetricBuffer.close` waits up to ``tracking.flush_timeout_s``; what is still pending
stays in the journal, and ``yolox tracking flush --out DIR`` (:func:`flush_journal`) sends it later, once.

The end of a run goes the same way when the server is gone (:func:`record_run_end`: a pipeline whose tracking
server stopped answering): its status (FAILED, KILLED) and tags (``failed_stage``, ``failure``) are a journal entry
after the metrics, tried once with the short timeout, else sent by the same flush, so the run ends in MLflow with
every epoch's metrics and the reason it failed.

Journal lines::

    {"seq": 3, "store": "http://host:5000", "run_id": "...", "metrics": [{"key": "train/total_loss",
     "value": 4.2, "timestamp": 1764600000000, "step": 3}, ...]}
    {"ack": 3}                                       the run has entry 3's metrics
    {"ack": 3, "refused": "HTTP 404: ..."}           MLflow refused it for good (e.g. the run was deleted): reported
    {"seq": 4, "store": "...", "run_id": "...", "metrics": [], "tags": {"failed_stage": "train", "failure": "..."},
     "status": "FAILED", "end_time": 1764600060000}  the run's end (tags set, then status and end time)

``store`` is the tracking URI without credentials: entries are only sent to that store. A line that is not valid
JSON (a write cut short by a crash) is reported and skipped; every other line counts.

HTTP stores are reached with MLflow's own request function (``mlflow.utils.rest_utils.http_request``: the
client's credentials, TLS settings and request format) with ``timeout`` and ``max_retries`` given per request:
the ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` environment variables would set them for
every MLflow call of the process (the checkpoint upload and the later stages too), not only for this thread.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from yolox.errors import ConfigError, TrackingError
from yolox.tracking.store import connection_problem, redact, tracking_uri

log = logging.getLogger("yolox.tracking")

JOURNAL_NAME = "tracking-journal.jsonl"
"""The journal's file name in a training output folder."""
_MAX_BACKOFF_S = 30.0
_CLOSING_BACKOFF_S = 1.0
# HTTP answers that will not change however often the entry is sent (bad metric, unknown or deleted run)
_REFUSED_STATUS = {400, 404, 409, 413, 422}
_REFUSED_CODES = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE"}


RUN_END_STATUSES = ("FINISHED", "FAILED", "KILLED")
"""The statuses a journaled run end may set."""


@dataclass(frozen=True)
class Entry:
    """One journaled ``log_batch``: metrics of one run (``timestamp`` in ms since the epoch, ``step`` the
    epoch), or the run's end: ``tags`` to set, then ``status`` (one of :data:`RUN_END_STATUSES`) at
    ``end_time`` (ms)."""

    seq: int
    store: str
    run_id: str
    metrics: tuple[dict[str, Any], ...]
    tags: tuple[tuple[str, str], ...] = ()
    status: str | None = None
    end_time: int | None = None


@dataclass
class JournalState:
    """What a journal file holds: its entries in order, the ones MLflow has (``acked``) or refused, and the
    numbers of the lines that could not be read."""

    entries: list[Entry] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    refused: dict[int, str] = field(default_factory=dict)
    bad_lines: list[int] = field(default_factory=list)

    def pending(self, store: str | None = None) -> list[Entry]:
        """Entries not yet acknowledged (of ``store`` only, when given), in journal order."""
        return [e for e in self.entries if e.seq not in self.acked and (store is None or e.store == store)]


class Journal:
    """The append-only JSON-lines file of a :class:`MetricBuffer` (see the module doc for its lines)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._tail_checked = False

    def read(self) -> JournalState:
        """Parse the file (missing: empty). Unreadable lines are skipped and listed in ``bad_lines``."""
        state = JournalState()
        if not self.path.is_file():
            return state
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                    if "ack" in row:
                        state.acked.add(int(row["ack"]))
                        if row.get("refused"):
                            state.refused[int(row["ack"])] = str(row["refused"])
                    else:
                        state.entries.append(_entry(row))
                except (ValueError, KeyError, TypeError, AttributeError):
                    state.bad_lines.append(number)
        if state.bad_lines:
            log.warning("%s: line(s) %s unreadable (a write cut short?): skipped, the other lines count", self.path,
                        ", ".join(map(str, state.bad_lines)))
        return state

    def append(self, row: dict[str, Any]) -> None:
        """Append one line and fsync it (thread-safe). A last line left without its newline by a crash is
        closed first, so it stays one unreadable line instead of spoiling this one."""
        line = json.dumps(row, separators=(",", ":")) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as fh:
                if not self._tail_checked:
                    self._tail_checked = True
                    if fh.tell() > 0:
                        with self.path.open("rb") as rd:
                            rd.seek(-1, os.SEEK_END)
                            if rd.read(1) != b"\n":
                                fh.write(b"\n")
                fh.write(line.encode())
                fh.flush()
                os.fsync(fh.fileno())


def _entry(row: dict[str, Any]) -> Entry:
    """A journal line's entry. Raises ValueError, KeyError, TypeError or AttributeError for a malformed one."""
    status = row.get("status")
    if status is not None and status not in RUN_END_STATUSES:
        raise ValueError(f"status {status!r}")
    tags = tuple((str(k), str(v)) for k, v in (row.get("tags") or {}).items())
    end_time = None if row.get("end_time") is None else int(row["end_time"])
    return Entry(int(row["seq"]), str(row["store"]), str(row["run_id"]), tuple(_metric(m) for m in row["metrics"]),
                 tags, status, end_time)


def _row(entry: Entry) -> dict[str, Any]:
    """``entry`` as its journal line."""
    row: dict[str, Any] = {"seq": entry.seq, "store": entry.store, "run_id": entry.run_id,
                           "metrics": [_json_safe(m) for m in entry.metrics]}
    if entry.tags:
        row["tags"] = dict(entry.tags)
    if entry.status is not None:
        row.update(status=entry.status, end_time=entry.end_time)
    return row


def _metric(m: dict[str, Any]) -> dict[str, Any]:
    return {"key": str(m["key"]), "value": float(m["value"]), "timestamp": int(m["timestamp"]),
            "step": int(m["step"])}


class _Unsent(Exception):
    """The store did not take the entry this time (down, slow, overloaded, refusing credentials): retry later."""


class _Sender:
    """Sends entries to one store, each request bounded by ``timeout`` seconds, no retries."""

    def __init__(self, uri: str, timeout: float) -> None:
        self.uri, self.timeout = uri, timeout
        self.http = urlsplit(uri).scheme.lower() in ("http", "https")
        self._client: Any = None

    def send(self, entry: Entry, check: bool) -> tuple[int, str | None]:
        """Log ``entry``'s metrics into its run (with ``check``, only those the run does not have yet) with its
        tags, then end the run when the entry says so (tags and status may be set twice: the same values).
        Returns (metrics sent, refusal reason or None). Raises :class:`_Unsent`."""
        metrics = list(entry.metrics)
        if check and metrics:
            have = self._logged(entry.run_id, {m["key"] for m in metrics})
            metrics = [m for m in metrics if (m["key"], m["step"], m["timestamp"]) not in have]
        refused = self._log_batch(entry.run_id, metrics, entry.tags) if metrics or entry.tags else None
        if refused is None and entry.status is not None:
            refused = self._end_run(entry.run_id, entry.status, entry.end_time)
        return len(metrics), refused

    # -- HTTP: MLflow's request function with this thread's timeout -----------------------------------------

    def _request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        try:
            return http_request(get_default_host_creds(self.uri), endpoint, method, max_retries=0, backoff_factor=0,
                                timeout=self.timeout, raise_on_status=False, **kwargs)
        except Exception as err:  # noqa: BLE001 - MlflowException wrapping requests' connection/timeout errors
            raise _Unsent(connection_problem(err, self.timeout)) from None

    @staticmethod
    def _answer(response: Any) -> str:
        try:
            body = response.json()
            return redact(f"HTTP {response.status_code} {body.get('error_code', '')}: {body.get('message', '')}")[:300]
        except (ValueError, AttributeError):
            return f"HTTP {response.status_code}"

    def _log_batch(self, run_id: str, metrics: list[dict[str, Any]], tags: tuple[tuple[str, str], ...] = ()
                   ) -> str | None:
        from mlflow.entities import RunTag

        run_tags = [RunTag(k, v) for k, v in tags]
        if not self.http:
            return self._client_call(lambda c: c.log_batch(run_id, metrics=[_entity(m) for m in metrics],
                                                           tags=run_tags))
        from mlflow.protos.service_pb2 import LogBatch
        from mlflow.utils.proto_json_utils import message_to_json

        body = json.loads(message_to_json(LogBatch(run_id=run_id, metrics=[_entity(m).to_proto() for m in metrics],
                                                   tags=[t.to_proto() for t in run_tags])))
        return self._post("/api/2.0/mlflow/runs/log-batch", body)

    def _end_run(self, run_id: str, status: str, end_time: int | None) -> str | None:
        if not self.http:
            return self._client_call(lambda c: c.set_terminated(run_id, status, end_time))
        from mlflow.entities import RunStatus
        from mlflow.protos.service_pb2 import UpdateRun
        from mlflow.utils.proto_json_utils import message_to_json

        body = json.loads(message_to_json(UpdateRun(run_id=run_id, status=RunStatus.from_string(status),
                                                    end_time=end_time)))
        return self._post("/api/2.0/mlflow/runs/update", body)

    def _post(self, endpoint: str, body: dict[str, Any]) -> str | None:
        """POST ``body``: None when taken, the refusal when MLflow will never take it. Raises :class:`_Unsent`."""
        response = self._request("POST", endpoint, json=body)
        if response.status_code == 200:
            return None
        if response.status_code in _REFUSED_STATUS:
            return self._answer(response)
        raise _Unsent(self._answer(response))

    def _logged(self, run_id: str, keys: set[str]) -> set[tuple[str, int, int]]:
        """(key, step, timestamp) of the run's values of ``keys``."""
        have: set[tuple[str, int, int]] = set()
        for key in sorted(keys):
            if not self.http:
                history = self._client_call(lambda c, k=key: c.get_metric_history(run_id, k), refusal=False)
                have |= {(key, int(m.step), int(m.timestamp)) for m in history}
                continue
            token = None
            while True:
                params = {"run_id": run_id, "metric_key": key, "max_results": 25000,
                          **({"page_token": token} if token else {})}
                response = self._request("GET", "/api/2.0/mlflow/metrics/get-history", params=params)
                if response.status_code != 200:
                    raise _Unsent(self._answer(response))
                body = response.json()
                have |= {(key, int(m.get("step", 0)), int(m.get("timestamp", 0))) for m in body.get("metrics", [])}
                token = body.get("next_page_token")
                if not token:
                    break
        return have

    # -- other stores (sqlite, databases): MLflow's client --------------------------------------------------

    def _client_call(self, fn: Any, refusal: bool = True) -> Any:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.uri)
        try:
            result = fn(self._client)
        except MlflowException as err:
            if refusal and err.error_code in _REFUSED_CODES:
                return redact(f"{err.error_code}: {err.message}")[:300]
            raise _Unsent(f"{err.error_code}: {redact(err.message)[:200]}") from None
        except Exception as err:  # noqa: BLE001 - a locked or vanished database, a dropped connection
            raise _Unsent(f"{type(err).__name__}: {redact(str(err))[:200]}") from None
        return None if refusal else result


def _entity(m: dict[str, Any]) -> Any:
    from mlflow.entities import Metric

    return Metric(m["key"], m["value"], m["timestamp"], m["step"])


class MetricBuffer:
    """Metrics of run ``run_id`` into the journal of ``folder`` and, in the background, into MLflow.

    ``log_metrics`` never waits for the server (it writes one line to the journal); :meth:`close` waits, at most
    the given time, for what is pending. Opening a journal that holds pending entries of the same store (an
    earlier process that died or gave up) sends them too, first, in order, once.

    Args:
        folder: the training output folder (``train.output_dir``) that holds ``tracking-journal.jsonl``.
        run_id: the MLflow run the metrics go to (None: only send what is pending, see :func:`flush_journal`).
        request_timeout: seconds one request to the store may take (``tracking.request_timeout_s``).
        uri: the tracking URI (default: :func:`yolox.tracking.store.tracking_uri`).
        quiet: the server's state at debug level only (the caller reports the outcome itself).
    """

    def __init__(self, folder: str | Path, run_id: str | None, request_timeout: float,
                 uri: str | None = None, quiet: bool = False) -> None:
        self.journal = Journal(Path(folder) / JOURNAL_NAME)
        self.run_id = run_id
        self.uri = uri or tracking_uri()
        self.store = redact(self.uri)
        self._sender = _Sender(self.uri, request_timeout)
        self._lock_fh = _try_lock(self.journal.path)
        state = self.journal.read()
        self._seq = max((e.seq for e in state.entries), default=0)
        self._journaled = {(e.run_id, m["key"], m["step"]) for e in state.entries for m in e.metrics}
        # pending entries of an earlier process, unless another process (yolox tracking flush) is sending them
        self._pending: deque[Entry] = deque(state.pending(self.store) if self._lock_fh is not None else [])
        self._uncertain = {e.seq for e in self._pending}    # an earlier process may have sent them: ask first
        self.other_stores = sorted({e.store for e in state.pending()} - {self.store})
        self.bad_lines = state.bad_lines
        self.sent_entries = self.sent_metrics = self.skipped_metrics = 0
        self.refused: dict[int, str] = {}
        self.ended: list[tuple[str, str]] = []      # (run id, status) of the run ends MLflow took
        self.last_problem: str | None = None
        self._cond = threading.Condition()
        self._closing = self._stop = self._wake = self._dead = self._fail_fast = False
        self._say = log.debug if quiet else log.info
        self._warn = log.debug if quiet else log.warning
        if self._pending:
            self._say("%s: %d entries not yet in MLflow at %s: sending them first", self.journal.path,
                      len(self._pending), self.store)
        self._thread = threading.Thread(target=self._run, name="yolox-tracking-journal", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Entries (of this store) not yet in MLflow."""
        with self._cond:
            return len(self._pending)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Journal ``metrics`` at ``step`` (timestamp: now) for the background thread; returns at once.
        A metric already journaled for this run and step (a resumed run reporting an epoch again) is skipped."""
        if self.run_id is None:
            raise TrackingError("MetricBuffer opened without a run id only flushes: it cannot log metrics")
        now = int(time.time() * 1000)
        rows = tuple({"key": k, "value": float(v), "timestamp": now, "step": int(step)} for k, v in metrics.items()
                     if (self.run_id, k, int(step)) not in self._journaled)
        if not rows:
            return
        with self._cond:
            self._journaled |= {(self.run_id, m["key"], m["step"]) for m in rows}
            self._add(rows)

    def end_run(self, status: str, tags: dict[str, str] | None = None) -> None:
        """Journal the run's end after everything journaled before it: ``tags`` set, then ``status`` (one of
        :data:`RUN_END_STATUSES`) with the end time now; returns at once (sent as the metrics are).

        Raises:
            TrackingError: no run id, or another status.
        """
        if self.run_id is None or status not in RUN_END_STATUSES:
            raise TrackingError(f"MetricBuffer.end_run: needs a run id and one of {', '.join(RUN_END_STATUSES)} "
                                f"(got run {self.run_id}, status {status!r})")
        with self._cond:
            self._add((), tuple((k, str(v)) for k, v in (tags or {}).items()), status, int(time.time() * 1000))

    def _add(self, rows: tuple[dict[str, Any], ...], tags: tuple[tuple[str, str], ...] = (),
             status: str | None = None, end_time: int | None = None) -> None:
        """Journal and queue one entry of this run (the caller holds ``self._cond``)."""
        assert self.run_id is not None
        self._seq += 1
        entry = Entry(self._seq, self.store, self.run_id, rows, tags, status, end_time)
        self.journal.append(_row(entry))
        self._pending.append(entry)
        self._wake = True
        self._cond.notify_all()

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        """The trainer's epoch callback (:data:`yolox.train.trainer.EpochCallback`): ``log_metrics`` at step ``epoch``."""
        self.log_metrics(metrics, step=epoch)

    def close(self, timeout: float, fail_fast: bool = False, warn: bool = True) -> int:
        """Wait up to ``timeout`` seconds for the pending entries to reach MLflow, then stop the thread. Returns
        how many are still pending; they stay in the journal, and a warning (unless not ``warn``) says how to send
        them later. ``fail_fast``: stop at the first failed attempt too (a server known to be gone is not waited
        for: one attempt of at most the request timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = self._wake = True
            self._fail_fast = fail_fast
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._pending or self._dead, timeout=max(timeout, 0.0))
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=max(deadline - time.monotonic(), 0.0) + self._sender.timeout + 1.0)
        pending = list(self._pending)
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None
        if pending and warn:
            runs = sorted({e.run_id for e in pending})
            steps = sorted({m["step"] for e in pending for m in e.metrics})
            log.warning("%d tracking entries (run %s, steps %s) not in MLflow at %s after %g s (%s): kept in %s; "
                        "send them with: yolox tracking flush --out %s", len(pending), ", ".join(runs),
                        _span(steps), self.store, timeout, self.last_problem or "still sending",
                        self.journal.path, self.journal.path.parent)
        return len(pending)

    # -- the background thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        delay, down_since = 0.0, None
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closing or self._stop)
                if self._stop or not self._pending:
                    return
                entry, self._wake = self._pending[0], False    # a new entry or close() during the attempt: retry now
            try:
                sent, refused = self._sender.send(entry, check=entry.seq in self._uncertain)
            except _Unsent as err:
                self._uncertain.add(entry.seq)
                self.last_problem = str(err)
                with self._cond:
                    if self._closing and self._fail_fast:   # one attempt was what close() allowed: give up
                        self._dead = True
                        self._cond.notify_all()
                        return
                if down_since is None:
                    down_since = time.monotonic()
                    self._warn("MLflow at %s: %s; metrics are kept in %s and sent when it answers, training "
                               "goes on", self.store, err, self.journal.path)
                delay = min(max(1.0, 2 * delay), _MAX_BACKOFF_S)
                with self._cond:
                    wait = min(delay, _CLOSING_BACKOFF_S) if self._closing else delay
                    self._cond.wait_for(lambda: self._stop or self._wake, timeout=wait)
                continue
            except Exception as err:  # a bug must not kill training: keep the entry, say why, stop sending
                log.exception("tracking journal thread stopped; %s keeps the metrics", self.journal.path)
                self.last_problem = f"{type(err).__name__}: {err}"
                with self._cond:
                    self._dead = True
                    self._cond.notify_all()
                return
            self.journal.append({"ack": entry.seq, **({"refused": refused} if refused else {})})
            if refused:
                self.refused[entry.seq] = refused
                log.warning("MLflow at %s refused entry %d (run %s): %s; it is not sent again", self.store,
                            entry.seq, entry.run_id, refused)
            else:
                self.sent_entries += 1
                self.sent_metrics += sent
                self.skipped_metrics += len(entry.metrics) - sent
                if entry.status is not None:
                    self.ended.append((entry.run_id, entry.status))
            with self._cond:
                self._pending.popleft()
                self._uncertain.discard(entry.seq)
                self._cond.notify_all()
                left = len(self._pending)
            if down_since is not None:
                self._say("MLflow at %s answers again after %.0f s: sending the %d pending entries", self.store,
                          time.monotonic() - down_since, left + 1)
                down_since = None
            delay = 0.0


def _json_safe(m: dict[str, Any]) -> dict[str, Any]:
    v = m["value"]
    return {**m, "value": v if math.isfinite(v) else str(v)}   # NaN/inf as strings: strict JSON readers


def _span(steps: list[int]) -> str:
    return "-" if not steps else str(steps[0]) if len(steps) == 1 else f"{steps[0]}..{steps[-1]}"


def _try_lock(path: Path) -> Any:
    """An exclusive lock on ``<journal>.lock`` (released when the holder ends), or None when another process
    holds it (it is sending this journal)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = (path.parent / (path.name + ".lock")).open("a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


@dataclass(frozen=True)
class FlushResult:
    """What :func:`flush_journal` did: entries and metrics sent, metrics the run already had, entries still
    pending (the store did not answer in time) or refused, unreadable lines skipped, the stores other than
    this one that pending entries belong to (left alone), and the runs it ended (run id, status: a journaled run
    end, :func:`record_run_end`). ``found`` is False when there was no journal."""

    journal: Path
    store: str
    found: bool = True
    sent_entries: int = 0
    sent_metrics: int = 0
    skipped_metrics: int = 0
    pending: int = 0
    refused: int = 0
    bad_lines: tuple[int, ...] = ()
    other_stores: tuple[str, ...] = ()
    ended: tuple[tuple[str, str], ...] = ()


def flush_journal(folder: str | Path, timeout: float, request_timeout: float) -> FlushResult:
    """Send the pending entries of ``<folder>/tracking-journal.jsonl`` to the tracking store
    (``MLFLOW_TRACKING_URI``), in order, each metric once (see the module doc); waits at most ``timeout`` s.

    Raises:
        ConfigError: ``folder`` is not a folder.
        TrackingError: the journal's pending entries all belong to another store than ``MLFLOW_TRACKING_URI``,
            or a running training sends it (it holds the journal's lock).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--out {folder}: no such folder; give the training output folder (train.output_dir)")
    path = folder / JOURNAL_NAME
    if not path.is_file():
        return FlushResult(path, redact(tracking_uri()), found=False)
    buffer = MetricBuffer(folder, None, request_timeout)
    try:
        if buffer._lock_fh is None:
            raise TrackingError(f"{path} is being sent by a running training (it holds {path.name}.lock): "
                                "let it finish, then flush what it left")
        if buffer.other_stores and not buffer.pending:
            raise TrackingError(f"{path}: its pending entries belong to {', '.join(buffer.other_stores)}, not "
                                f"{buffer.store}: set MLFLOW_TRACKING_URI to that store (with its credentials) "
                                "and flush again")
    except TrackingError:
        buffer.close(0)
        raise
    pending = buffer.close(timeout)
    return FlushResult(path, buffer.store, True, buffer.sent_entries, buffer.sent_metrics, buffer.skipped_metrics,
                       pending, len(buffer.refused), tuple(buffer.bad_lines), tuple(buffer.other_stores),
                       tuple(buffer.ended))


def record_run_end(folder: str | Path, run_id: str, status: str, tags: dict[str, str], request_timeout: float
                   ) -> int:
    """End MLflow run ``run_id`` (``tags`` set, then ``status``) through the journal of ``folder`` (a training
    output folder), for a tracking server that stopped answering: the end is journaled after the metrics still
    pending there, and sent with them in one attempt of at most ``request_timeout`` seconds (no retries, no
    backoff): a dead server costs seconds, not another minute of retries. Returns how many entries are still
    pending (0: MLflow has the metrics and the run's end); they stay in the journal for ``yolox tracking flush
    --out folder`` (:func:`flush_journal`), and no warning is logged (the caller says it).

    Raises:
        TrackingError: ``status`` is not one of :data:`RUN_END_STATUSES`.
    """
    buffer = MetricBuffer(folder, run_id, request_timeout, quiet=True)
    try:
        buffer.end_run(status, tags)
    finally:
        left = buffer.close(request_timeout, fail_fast=True, warn=False)
    return left


@contextmanager
def epoch_journal(out_dir: str | Path, run_id: str | None, request_timeout_s: float, flush_timeout_s: float
                  ) -> Iterator[MetricBuffer | None]:
    """The journal a training process sends its epoch metrics through (a :class:`MetricBuffer` on
    ``<out_dir>/tracking-journal.jsonl`` for run ``run_id``; None without a run id), closed at the end: after a
    finished block it waits up to ``flush_timeout_s`` seconds for the server; after an exception it does not wait
    (what is pending stays in the journal: a retry or ``yolox tracking flush`` sends it). Used by the train stage in
    this process and by a launched job's rank 0."""
    journal = MetricBuffer(out_dir, run_id, request_timeout_s) if run_id else None
    try:
        yield journal
    except BaseException:
        if journal is not None:
            journal.close(0)
        raise
    if journal is not None:
        journal.close(flush_timeout_s)
