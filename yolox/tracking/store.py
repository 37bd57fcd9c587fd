"""Where runs and models go.

``MLFLOW_TRACKING_URI`` points at a server (``http://...``) or a database. Unset, the embedded default
is a SQLite store ``mlflow.db`` and an artifact folder ``mlartifacts/`` in the working directory (the
file store ``./mlruns`` is in maintenance mode in MLflow 3). ``MLFLOW_REGISTRY_URI`` puts the model registry
elsewhere (default: the tracking store). Credentials come from the environment
(``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, or ``user:password@`` in the URI), never from params, and never
reach logs or messages (:func:`redact`).

:func:`check_stores` is the check made before any work (``run_pipeline``): seconds, not MLflow's minutes of
retries, to say that a store is unusable and what to do.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from yolox.errors import PreflightError, TrackingError

log = logging.getLogger("yolox.tracking")

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tracking_uri() -> str:
    """The effective tracking URI (env, else ``sqlite:////<cwd>/mlflow.db``)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


_derived_registry: str | None = None
"""The registry URI :func:`configure` derived from the tracking URI. ``mlflow.set_registry_uri`` copies its value into
``MLFLOW_REGISTRY_URI`` (for subprocesses), so that variable holding this value was not set by the user: read as
the user's, it would keep a process on the registry of a tracking URI it has since left (two stores mixed up)."""


def registry_uri() -> str:
    """The effective model registry URI: ``MLFLOW_REGISTRY_URI`` when the user set it, else :func:`tracking_uri`."""
    value = os.environ.get("MLFLOW_REGISTRY_URI")
    return value if value and value != _derived_registry else tracking_uri()


def configure() -> str:
    """Point MLflow at :func:`tracking_uri` and :func:`registry_uri`; returns the tracking URI."""
    import mlflow

    global _derived_registry
    uri, registry = tracking_uri(), registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry)
    _derived_registry = registry if registry == uri else None
    return uri


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")


def redact(text: str) -> str:
    """A URI, or any text holding URIs (an MLflow error message names the full request URL), with every
    ``user:password@`` replaced by ``***@``, for logs and messages."""
    return _USERINFO.sub(r"\1***@", str(text))


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created if missing (with a local artifact folder when embedded).

    Raises:
        TrackingError: the tracking server cannot be reached (names the URI, without credentials).
    """
    import mlflow

    uri = configure()
    try:
        exp = mlflow.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if uri.startswith("sqlite:"):
            location = (Path.cwd().resolve() / "mlartifacts").as_uri()
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception as err:  # MLflow raises many types for an unreachable server
        if isinstance(err, TrackingError):
            raise
        raise TrackingError(f"MLflow tracking store {redact(uri)} not usable: {type(err).__name__}: "
                            f"{redact(str(err)[:300])}. Is the server up? Check MLFLOW_TRACKING_URI.") from err


# --- the check before any work -------------------------------------------------------------------------

DB_SCHEMES = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
"""SQLAlchemy database schemes MLflow stores runs in (besides sqlite), with their default ports."""
_UNCHECKED_SCHEMES = {"databricks", "databricks-uc", "uc"}   # token-based services: MLflow's own client checks
_PROBES = {"tracking store": "/api/2.0/mlflow/experiments/search?max_results=1",
           "model registry": "/api/2.0/mlflow/registered-models/search?max_results=1"}


def check_stores(timeout: float) -> None:
    """Check that the tracking store, and the model registry when ``MLFLOW_REGISTRY_URI`` differs, can be used,
    each in about ``timeout`` seconds at most (``tracking.preflight_timeout_s``; no retries): an ``http(s)`` server answers an authenticated
    ``GET`` of its search API; a ``sqlite`` database's folder exists and is writable and the file, if any, is a
    database; a ``postgresql``/``mysql``/``mssql`` server accepts a TCP connection; a ``file`` store is
    refused unless ``MLFLOW_ALLOW_FILE_STORE=true`` (MLflow 3 keeps it read-only).

    Raises:
        PreflightError: one line naming the store, its URI (without credentials) and environment variable,
            what is wrong and what to do.
    """
    tracking, registry = tracking_uri(), registry_uri()
    _check(tracking, "MLFLOW_TRACKING_URI", "tracking store", timeout)
    if registry != tracking:
        _check(registry, "MLFLOW_REGISTRY_URI", "model registry", timeout)


def _check(uri: str, var: str, what: str, timeout: float) -> None:
    name = f"MLflow {what} {redact(uri)} ({var})"
    scheme = urlsplit(uri).scheme.lower() if "://" in uri or uri.startswith(("sqlite:", "file:")) else ""
    base = scheme.split("+", 1)[0]
    if base in ("http", "https"):
        problem = _check_http(uri, var, _PROBES[what], timeout)
    elif base == "sqlite":
        problem = _check_sqlite(uri, var)
    elif base in ("file", ""):
        problem = _check_file_store(uri, var)
    elif base in DB_SCHEMES:
        problem = _check_tcp(uri, DB_SCHEMES[base], timeout, var)
    elif base in _UNCHECKED_SCHEMES:
        problem = None
    else:
        problem = (f"has scheme {scheme!r}, which is not an MLflow store: use http(s)://HOST:PORT, "
                   "sqlite:////ABS/PATH/mlflow.db or a postgresql/mysql/mssql URL")
    if problem:
        raise PreflightError(f"{name} {problem}")
    log.debug("%s: usable", name)


def _within(timeout: float, fn: Callable[[], Any]) -> tuple[bool, Any] | None:
    """``fn()`` bounded by wall time (a DNS lookup ignores socket timeouts): ``(True, result)``,
    ``(False, exception)``, or None when it had not returned after ``timeout`` seconds."""
    box: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as err:  # noqa: BLE001 - handed back to the caller
            box.append((False, err))

    worker = threading.Thread(target=run, name="yolox-preflight", daemon=True)
    worker.start()
    worker.join(timeout)
    return box[0] if box else None


def connection_problem(err: BaseException, timeout: float) -> str:
    """What went wrong with a request or connection, from its exception chain (requests, urllib3, socket, and
    MLflow's wrapping of them): ``connection refused``, ``host not found``, ``no answer within N s``, ``TLS
    handshake failed``, ``connection lost before the answer``, or the innermost exception's class name. Never contains the URL (nor its credentials)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    kinds = [type(e).__name__ for e in seen]
    if any(isinstance(e, socket.gaierror) for e in seen) or "NameResolutionError" in kinds:
        return "host not found"
    if any(isinstance(e, ConnectionRefusedError) for e in seen):
        return "connection refused"
    if any(isinstance(e, TimeoutError) for e in seen) or any("Timeout" in k for k in kinds):
        return f"no answer within {timeout:g} s"
    if any("SSL" in k for k in kinds):
        return "TLS handshake failed"
    if {"RemoteDisconnected", "ConnectionResetError", "ConnectionAbortedError", "BrokenPipeError"} & set(kinds):
        return "connection lost before the answer"
    inner = [k for k in kinds if k not in ("MlflowException", "MaxRetryError", "ConnectionError", "ProtocolError")]
    return inner[-1] if inner else kinds[0]


def _unreachable(err: BaseException, host: str, timeout: float, var: str, server: str = "MLflow server") -> str:
    """The preflight's problem-and-remedy text for a failed connection."""
    problem = connection_problem(err, timeout)
    if problem == "host not found":
        return f"is unreachable: host {host!r} not found; fix the host name in {var}"
    if problem == "connection refused":
        return f"is unreachable: connection refused; start the {server} or point {var} at a running one"
    if problem.startswith("no answer"):
        return _no_answer(timeout)
    if problem == "TLS handshake failed":
        return "failed the TLS handshake; check the https URL and MLFLOW_TRACKING_SERVER_CERT_PATH"
    return f"is unreachable: {problem}; check the server and {var}"


def _no_answer(timeout: float) -> str:
    return (f"did not answer within {timeout:g} s; check the server and the network, or raise "
            "tracking.preflight_timeout_s")


def _check_http(uri: str, var: str, path: str, timeout: float) -> str | None:
    """GET ``path`` once (MLflow's own request code: the same credentials and TLS settings as its client)."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    host = urlsplit(uri).hostname or ""
    endpoint, query = path.split("?", 1)
    outcome = _within(timeout + 1.0, lambda: http_request(
        get_default_host_creds(uri), endpoint, "GET", max_retries=0, backoff_factor=0, timeout=timeout,
        raise_on_status=False, params=dict(q.split("=") for q in query.split("&"))))
    if outcome is None:
        return _no_answer(timeout)
    ok, result = outcome
    if not ok:
        return _unreachable(result, host, timeout, var)
    status = result.status_code
    if status == 200:
        return None
    if status in (401, 403):
        return (f"refused access (HTTP {status}); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                "(or MLFLOW_TRACKING_TOKEN), or allow this host name in the server's --allowed-hosts")
    if status == 404:
        return f"is not an MLflow server (HTTP 404 on GET {endpoint}); check the host, port and path in {var}"
    if status >= 500:
        return f"answered HTTP {status} to GET {endpoint}: the server is up but failing; see its log"
    return f"answered HTTP {status} to GET {endpoint}; check {var}"


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///rel`` or ``sqlite:////abs`` URI (None for an in-memory one)."""
    path = uri.split("://", 1)[1][1:] if "://" in uri else uri.split(":", 1)[1]
    path = path.split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _writable_folder(folder: Path, var: str) -> str | None:
    if not folder.exists():
        return f"cannot be created: folder {folder} does not exist; create it or point {var} elsewhere"
    if not folder.is_dir():
        return f"cannot be created: {folder} is not a folder; point {var} elsewhere"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".yolox-preflight-"):
            pass
    except OSError as err:
        return f"cannot be written: folder {folder} is not writable ({err.strerror}); point {var} elsewhere"
    return None


def _check_sqlite(uri: str, var: str) -> str | None:
    path = _sqlite_path(uri)
    if path is None:
        return None
    path = path.expanduser().absolute()
    problem = _writable_folder(path.parent, var)
    if problem or not path.exists():
        return problem
    if not path.is_file():
        return f"cannot be opened: {path} is not a file; point {var} at an MLflow database or a new file"
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as err:
        return f"cannot be opened: {path} is not an SQLite database ({err}); point {var} at an MLflow database"
    return None


def _check_file_store(uri: str, var: str) -> str | None:
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        return (f"is a file store, which MLflow 3 keeps read-only (maintenance mode); use "
                f"sqlite:////ABS/PATH/mlflow.db in {var}, or set MLFLOW_ALLOW_FILE_STORE=true")
    path = Path(urlsplit(uri).path if uri.startswith("file:") else uri).expanduser().absolute()
    return _writable_folder(path if path.is_dir() else path.parent, var)


def _check_tcp(uri: str, default_port: int, timeout: float, var: str) -> str | None:
    parts = urlsplit(uri)
    host, port = parts.hostname or "localhost", parts.port or default_port
    outcome = _within(timeout + 1.0, lambda: socket.create_connection((host, port), timeout=timeout).close())
    if outcome is None:
        return _no_answer(timeout)
    ok, result = outcome
    return None if ok else _unreachable(result, host, timeout, var, "database server")
