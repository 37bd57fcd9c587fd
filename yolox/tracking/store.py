"""Where runs and models go.

``MLFLOW_TRACKING_URI`` points at a server (``http://...``) or a database. Unset, the embedded default
is a SQLite store ``mlflow.db`` and an artifact folder ``mlartifacts/`` in the working directory (the
file store ``./mlruns`` is in maintenance mode in MLflow 3). ``MLFLOW_REGISTRY_URI`` puts the model registry
elsewhere (default: the tracking store). Credentials come from the environment
(``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, or ``user:password@`` in the URI), never from params, and never
reach logs or messages (:func:`redact`).

:func:`check_stores` is the check made before any work (``run_pipeline``): seconds, not MLflow's minutes of
retries, to say that a store is unusable and what to do.

Every MLflow HTTP request of a process that imports this module is bounded (:func:`bound_requests`: a timeout
per attempt, ``tracking.http_timeout_s`` = 10 s, 2 retries, 1 s backoff, no ``Retry-After`` sleeps; an
``MLFLOW_HTTP_REQUEST_*`` value the user set is kept), so a server that dies or hangs mid-command fails a call
in about half a minute (:func:`call_budget_s`), not MLflow's many minutes; :func:`server_lost` turns such a
failure into one line. :func:`preflight` is what every command that reaches a store runs first: the registry
names in the params checked (before any request), the bounds set from the params, the stores checked.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from yolox.config import TrackingParams
from yolox.errors import ConfigError, PreflightError, TrackingError
from yolox.files import project_lock

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


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""The experiment tag in which MLflow 3 records what an experiment is for (its UI's experiment-type selector, and
``mlflow.demo``, which tags its experiments ``genai_development``)."""
TRAINING_KIND = "custom_model_development"
"""The value of :data:`EXPERIMENT_KIND_TAG` for model training (shown as "Machine learning" in MLflow's UI; the
other kinds it knows: ``genai_development``, ``finetuning``, ``classification``, ``regression``, ...)."""


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created if missing (with a local artifact folder when embedded), recorded
    as a model-training experiment (tag :data:`EXPERIMENT_KIND_TAG` = :data:`TRAINING_KIND`; also set on an
    existing experiment that has no kind yet, and kept on one whose kind was chosen already).

    Raises:
        TrackingError: the tracking server cannot be reached (names the URI, without credentials).
    """
    import mlflow

    uri = configure()
    try:
        with first_use_lock(uri, registry_uri()):
            exp = mlflow.get_experiment_by_name(name)
            if exp is not None:
                if not (exp.tags or {}).get(EXPERIMENT_KIND_TAG):
                    mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
                return exp.experiment_id
            location = None
            if uri.startswith("sqlite:"):
                location = (Path.cwd().resolve() / "mlartifacts").as_uri()
            return mlflow.create_experiment(name, artifact_location=location,
                                            tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
    except Exception as err:  # MLflow raises many types for an unreachable server
        if isinstance(err, TrackingError):
            raise
        lost = server_lost(err)       # the server stopped answering: one complete line, not its URL cut short
        if lost is not None:
            raise lost from err
        detail = redact(str(err)).strip().splitlines()[0] if str(err).strip() else ""   # redacted before any cut
        if len(detail) > 300:
            detail = detail[:300].rsplit(" ", 1)[0] + " ..."
        raise TrackingError(f"MLflow tracking store {redact(uri)} not usable: {type(err).__name__}"
                            f"{': ' + detail.rstrip('.') if detail else ''}; check MLFLOW_TRACKING_URI and the "
                            "server's log") from err


@contextlib.contextmanager
def first_use_lock(*uris: str) -> Iterator[None]:
    """Serialise this process's first use of SQLite stores (``uris``: the tracking and registry URIs) with every
    other process's, by the lock file ``<db>.lock`` beside each database: MLflow creates a new database's schema
    and runs its migrations on first use, and two processes doing so at once fail half-way ("table already
    exists"). A no-op for a server (it migrates once, at start), for an in-memory database and for a database
    this process has used already. A holder that died frees the lock at once (:func:`yolox.files.project_lock`)."""
    paths = []
    for uri in uris:
        path = _sqlite_path(uri) if uri.startswith("sqlite:") else None
        path = path.expanduser().absolute() if path is not None else None
        if path is not None and path not in _first_used and path not in paths:
            paths.append(path)
    with contextlib.ExitStack() as stack:
        for path in paths:
            stack.enter_context(project_lock(
                path.with_name(path.name + ".lock"), f"MLflow store {path}",
                on_wait=lambda who, p=path: log.info("waiting for %s to finish its first use of %s", who, p)))
        yield
    _first_used.update(paths)


_first_used: set[Path] = set()


# --- every MLflow HTTP request bounded -----------------------------------------------------------------

HTTP_RETRIES = 2
"""Retries of a failed MLflow HTTP request (connection refused or lost, no answer within the timeout, HTTP
408, 429, 500, 502, 503, 504) after its first attempt (MLflow's default: 7)."""
HTTP_BACKOFF_FACTOR_S = 1
"""urllib3's backoff between attempts: none before the first retry, then this x 2, 4, ... s (MLflow's: 2)."""
HTTP_BACKOFF_JITTER_S = 0.5
"""At most this many seconds added at random to each backoff (MLflow's default: 1)."""
_BACKOFF_MAX_S = 120.0   # urllib3's Retry.DEFAULT_BACKOFF_MAX: no single backoff is longer
_DEFAULT_HTTP_TIMEOUT_S: int = TrackingParams.model_fields["http_timeout_s"].default
_BOUNDS_MARK = "YOLOX_MLFLOW_HTTP_DEFAULTS"
"""``NAME=VALUE;...``: the ``MLFLOW_HTTP_*`` values :func:`bound_requests` set (child processes inherit it
with them). A variable holding the value listed there is this project's, derived again from the params; any
other value was set by the user and is kept."""


def _whole(low: int, high: int) -> Callable[[str], bool]:
    return lambda v: v.strip().isdigit() and low <= int(v) <= high


def _finite(value: str) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) >= 0
    except ValueError:
        return False


# what MLflow can read in each variable (else it raises at every request), and its default
_MLFLOW_FORMS: dict[str, tuple[Callable[[str], bool], str, float]] = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": (_whole(1, 10**6), "a whole number of seconds >= 1", 120),
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": (_whole(0, 10), "a whole number 0..10", 7),
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": (_whole(0, 120), "a whole number of seconds 0..120", 2),
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": (_finite, "a number of seconds >= 0", 1.0),
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": (lambda v: v.strip().lower() in ("true", "false", "1", "0"),
                                               "true or false", 1),
}


def request_bounds(timeout_s: int) -> dict[str, str]:
    """The MLflow environment variables that bound each HTTP request of its client, for a timeout of
    ``timeout_s`` seconds per attempt (``tracking.http_timeout_s``): :data:`HTTP_RETRIES` retries after
    :data:`HTTP_BACKOFF_FACTOR_S` backoff, no ``Retry-After`` sleeps (urllib3 honours up to 6 h of them)."""
    return {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout_s)),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(HTTP_RETRIES),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(HTTP_BACKOFF_FACTOR_S),
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": str(HTTP_BACKOFF_JITTER_S),
            "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false"}


def bound_requests(timeout_s: int = _DEFAULT_HTTP_TIMEOUT_S) -> float:
    """Bound every HTTP request the MLflow client makes in this process, and in the processes it starts (they
    inherit the environment): set the variables of :func:`request_bounds`. MLflow reads them at each request
    (``mlflow.utils.rest_utils.http_request``; its session cache is keyed by their values), so they apply from
    the next request on. Without them, a call to a server that accepts connections and never answers waits
    120 s per attempt for 8 attempts with up to 2 min between them, and a ``Retry-After`` header can stall it
    for hours. Applied at import with the default ``tracking.http_timeout_s``, and by :func:`preflight` with
    the params'.

    A variable the user set in the environment is kept: ``MLFLOW_HTTP_REQUEST_TIMEOUT=60`` wins over
    ``tracking.http_timeout_s``, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=7`` over :data:`HTTP_RETRIES` (a value this
    project set earlier, listed in :data:`_BOUNDS_MARK`, is replaced).

    Returns the worst case of one MLflow call with the bounds in force (:func:`call_budget_s`): by default
    3 attempts x 10 s + 2.5 s of backoff = 32.5 s against a server that accepts connections and never
    answers; about 2.5 s against a refused connection or one HTTP 503 after another. Not bounded here: an
    answer trickled a byte at a time (the timeout bounds each read, not the whole answer) and a DNS lookup
    (the resolver's own timeouts); the preflight (:func:`check_stores`) bounds both by wall time.

    Raises:
        ConfigError: a variable the user set is not what MLflow can read (e.g.
            ``MLFLOW_HTTP_REQUEST_TIMEOUT=2.5``: MLflow reads whole seconds); names it and what it must be.
    """
    _apply_bounds(timeout_s)
    for var, (ok, form, _default) in _MLFLOW_FORMS.items():
        value = os.environ.get(var)
        if value is not None and not ok(value):
            raise ConfigError(f"{var}={value!r} (set in the environment): MLflow needs {form}; fix or unset "
                              "it (unset: tracking.http_timeout_s and 2 retries apply)")
    return call_budget_s()


def _apply_bounds(timeout_s: int) -> None:
    ours = dict(item.split("=", 1) for item in os.environ.get(_BOUNDS_MARK, "").split(";") if "=" in item)
    for var, value in request_bounds(timeout_s).items():
        current = os.environ.get(var)
        if current is None or ours.get(var) == current:
            os.environ[var] = ours[var] = value
        else:
            ours.pop(var, None)
            log.debug("%s=%s set in the environment: kept", var, current)
    os.environ[_BOUNDS_MARK] = ";".join(f"{k}={v}" for k, v in ours.items())


def _env_number(var: str) -> float:
    """The number MLflow reads in ``var`` (its default when unset or unreadable)."""
    ok, _form, default = _MLFLOW_FORMS[var]
    value = os.environ.get(var)
    return float(value) if value is not None and ok(value) else default


def call_budget_s() -> float:
    """Worst-case seconds of one MLflow call to a server that accepts connections and never answers, with the
    bounds in force: (retries + 1) x timeout, plus the backoffs between attempts (urllib3: none before the
    first retry, then factor x 2, 4, ... + jitter, each at most 120 s)."""
    timeout = _env_number("MLFLOW_HTTP_REQUEST_TIMEOUT")
    retries = int(_env_number("MLFLOW_HTTP_REQUEST_MAX_RETRIES"))
    factor = _env_number("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
    jitter = _env_number("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER")
    backoff = sum(min(_BACKOFF_MAX_S, factor * 2 ** (n - 1) + jitter) for n in range(2, retries + 1))
    return (retries + 1) * timeout + backoff


_apply_bounds(_DEFAULT_HTTP_TIMEOUT_S)


def server_lost(err: BaseException, during: str | None = "the command",
                remedy: Callable[[str], str] | None = None) -> TrackingError | None:
    """One line for an MLflow call that failed because the tracking server or registry stopped answering
    after the preflight passed (it died, hangs, or answers HTTP 5xx: MLflow's retries within
    :func:`bound_requests` ran out), naming the store (without credentials), what happened and what to do;
    None when ``err`` is another failure (a refusal, a missing model: the caller's message says more).

    ``during``: when it happened (None: not said). ``remedy(var)``: what to do, given the environment variable
    that names the store (``MLFLOW_TRACKING_URI`` or ``MLFLOW_REGISTRY_URI``); default: start the server or point
    the variable at a running one, then run the command again."""
    import requests
    import urllib3

    network = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, ConnectionError,
               TimeoutError, socket.gaierror)
    if not any(isinstance(e, network) for e in _chain(err)) and _server_error_answer(err) is None:
        return None
    uri, var = tracking_uri(), "MLFLOW_TRACKING_URI"
    registry = registry_uri()
    where = urlsplit(registry).netloc.rsplit("@", 1)[-1] if "://" in registry else ""
    if registry != uri and where and where in str(err):
        uri, var = registry, "MLFLOW_REGISTRY_URI"
    problem = connection_problem(err, _env_number("MLFLOW_HTTP_REQUEST_TIMEOUT"))
    attempts = int(_env_number("MLFLOW_HTTP_REQUEST_MAX_RETRIES")) + 1
    todo = remedy(var) if remedy is not None else (f"start the server or point {var} at a running one, then run "
                                                    "the command again")
    when = f" during {during}" if during else ""
    return TrackingError(f"MLflow at {redact(uri)} ({var}) stopped answering{when}: {problem} ({attempts} "
                         f"attempts, at most about {call_budget_s():.0f} s); {todo}")


# --- names the registry accepts, checked before any request ----------------------------------------------

_ALIAS = re.compile(r"[\w-]{1,255}")             # mlflow.utils.validation._validate_model_alias_name
_RESERVED_ALIAS = re.compile(r"latest|v\d+", re.IGNORECASE)
_VERSION = re.compile(r"[1-9][0-9]{0,17}")
_RUN_ID = re.compile(r"[a-zA-Z0-9][\w-]{0,255}")  # mlflow.utils.validation._RUN_ID_REGEX
MODEL_NAME_FORM = ("a registered model name is 1-256 characters, not all spaces, without '/' or ':', and not "
                   "'.' or starting with '..' (e.g. yolox-coco128)")
ALIAS_FORM = ("an alias is 1-255 letters, digits, '_' or '-', and not 'latest' or 'v<N>' (reserved) "
              "(e.g. champion)")
VERSION_FORM = "a version is a whole number >= 1 (e.g. 3)"
MODELS_URI_FORM = ("a registered model is models:/NAME/VERSION or models:/NAME@ALIAS "
                   "(e.g. models:/yolox-coco128@champion)")


def check_model_name(name: str, arg: str) -> str:
    """``name`` when the registry accepts it as a registered model name (MLflow's rules), else ConfigError
    naming ``arg`` (the option or param it came from) and the allowed form."""
    problem = ("is empty" if not name.strip() else "contains '/' or ':'" if "/" in name or ":" in name
               else "reads as a path" if name == "." or name.startswith("..")
               else "is longer than 256 characters" if len(name) > 256 else None)
    if problem:
        raise ConfigError(f"{arg} {name!r} {problem}: {MODEL_NAME_FORM}")
    return name


def check_alias(alias: str, arg: str) -> str:
    """``alias`` when the registry accepts it as an alias (MLflow's rules), else ConfigError naming
    ``arg``."""
    if not _ALIAS.fullmatch(alias) or _RESERVED_ALIAS.fullmatch(alias):
        raise ConfigError(f"{arg} {alias!r} is not an alias the registry accepts: {ALIAS_FORM}")
    return alias


def check_version(version: str | int, arg: str) -> str:
    """``version`` as the registry spells it (``"3"``) when it is a whole number >= 1, else ConfigError
    naming ``arg``."""
    text = str(version).strip()
    if not _VERSION.fullmatch(text):
        raise ConfigError(f"{arg} {str(version)!r} is not a model version: {VERSION_FORM}")
    return text


def check_run_id(run_id: str, arg: str) -> str:
    """``run_id`` when MLflow accepts it as a run id, else ConfigError naming ``arg``."""
    if not _RUN_ID.fullmatch(run_id):
        raise ConfigError(f"{arg} {run_id!r} is not an MLflow run id: a run id is letters, digits, '_' and "
                          "'-', starting with a letter or digit (e.g. 0123456789abcdef0123456789abcdef)")
    return run_id


def parse_models_uri(uri: str, arg: str) -> tuple[str, str, str]:
    """``(name, "version", "3")`` for ``models:/NAME/3``, ``(name, "alias", "champion")`` for
    ``models:/NAME@champion``, every part checked (:func:`check_model_name`, :func:`check_version`,
    :func:`check_alias`); else ConfigError naming ``arg`` and the allowed forms."""
    rest = uri[len("models:/"):] if uri.startswith("models:/") else None
    if rest is None or rest.count("/") > 1 or ("/" not in rest and "@" not in rest):
        raise ConfigError(f"{arg} {uri!r}: {MODELS_URI_FORM}")
    where = f"{arg} {uri!r}:"
    if "/" in rest:
        name, version = rest.split("/")
        return check_model_name(name, f"{where} name"), "version", check_version(version, f"{where} version")
    name, alias = rest.rsplit("@", 1)
    return check_model_name(name, f"{where} name"), "alias", check_alias(alias, f"{where} alias")


def check_registry_params(params: Any) -> None:
    """``tracking.registered_model``, ``gate.champion_alias`` and ``gate.challenger_alias`` of ``params`` (a
    :class:`~yolox.config.PipelineParams`) have the forms the registry accepts; else ConfigError naming
    the param."""
    check_model_name(params.tracking.registered_model, "tracking.registered_model")
    check_alias(params.gate.champion_alias, "gate.champion_alias")
    check_alias(params.gate.challenger_alias, "gate.challenger_alias")


def preflight(params: Any) -> float:
    """What a command does before it reaches the tracking server or registry, in seconds: the registry names
    of ``params`` checked (:func:`check_registry_params`, no request), every MLflow HTTP request of the
    process bounded by ``tracking.http_timeout_s`` (:func:`bound_requests`), and the stores checked within
    ``tracking.preflight_timeout_s`` (:func:`check_stores`). Returns the worst case of one later MLflow call
    (:func:`call_budget_s`).

    Raises:
        ConfigError: a bad name or ``MLFLOW_HTTP_*`` value. PreflightError: a store is unusable (one line:
            its URI without credentials, what is wrong, what to do).
    """
    check_registry_params(params)
    budget = bound_requests(params.tracking.http_timeout_s)
    check_stores(params.tracking.preflight_timeout_s)
    return budget


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


_SERVER_ERROR_ANSWER = re.compile(r"failed with error code (50[234]) != 200")
# MLflow's error codes for a server that is not answering (gateway errors, unavailable): its 500 INTERNAL_ERROR is
# a server that answered with a failure (a bug, a database error), which the caller reports with MLflow's message
_UNAVAILABLE_CODES = {"TEMPORARILY_UNAVAILABLE": "503"}


def _server_error_answer(err: BaseException) -> str | None:
    """The HTTP status (``"502"``, ``"503"``, ``"504"``) when MLflow's retries of a server-unavailable answer ran
    out and it raised the last answer rather than a transport error, else None. MLflow >= 3.18 returns 5xx
    responses after its retries and raises from the body: ``RestException("TEMPORARILY_UNAVAILABLE: ...")`` when
    the body is MLflow's JSON error, ``"API request to endpoint ... failed with error code 503 != 200"``
    otherwise (3.17 raised requests' ``RetryError`` instead)."""
    for e in _chain(err):
        if (m := _SERVER_ERROR_ANSWER.search(str(e))) is not None:
            return m[1]
        body = getattr(e, "json", None)           # RestException: the server's JSON error
        if isinstance(body, dict) and str(body.get("error_code")) in _UNAVAILABLE_CODES:
            return _UNAVAILABLE_CODES[str(body["error_code"])]
    return None


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and every exception it wraps (causes, contexts, urllib3's ``reason``, exceptions in args)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return seen


def connection_problem(err: BaseException, timeout: float) -> str:
    """What went wrong with a request or connection, from its exception chain (requests, urllib3, socket, and
    MLflow's wrapping of them): ``connection refused``, ``host not found``, ``no answer within N s``, ``TLS
    handshake failed``, ``connection lost before the answer``, ``HTTP 503 to every attempt`` (MLflow's
    retries of a 5xx answer ran out), or the innermost exception's class name. Never contains the URL (nor its
    credentials)."""
    seen = _chain(err)
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
    statuses = [m[1] for e in seen if type(e).__name__ == "ResponseError"
                for m in [re.search(r"too many (\d{3}) error responses", str(e))] if m]
    status = statuses[0] if statuses else _server_error_answer(err)
    if status:
        return f"HTTP {status} to every attempt"
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
        return _no_answer(timeout, var)
    if problem == "TLS handshake failed":
        return "failed the TLS handshake; check the https URL and MLFLOW_TRACKING_SERVER_CERT_PATH"
    return f"is unreachable: {problem}; check the server and {var}"


def _no_answer(timeout: float, var: str) -> str:
    return (f"did not answer within {timeout:g} s; check that the server is up and that {var} is its address, "
            "or raise tracking.preflight_timeout_s")


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
        return _no_answer(timeout, var)
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
        return _no_answer(timeout, var)
    ok, result = outcome
    return None if ok else _unreachable(result, host, timeout, var, "database server")
