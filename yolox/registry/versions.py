"""The MLflow model registry: registering a pipeline's model, and moving the champion alias.

Aliases, not stages (deprecated in MLflow 3): ``challenger`` on registration; ``champion`` only via the
promotion gate, a recorded manual override, or a rollback.

**Promotion history.** Every move of the champion alias made here is recorded twice:

- on the new champion's version: tags ``previous_champion`` (the version it replaced, or ``none``),
  ``promotion`` (``gate``, ``manual``) and ``promoted_at``; a rollback leaves ``previous_champion`` as it
  was (so a second rollback walks further back) and sets ``rollback_from``;
- on the registered model: one tag per event, ``champion.history.000001``, ``...000002``, ... with a json
  ``{"seq", "version", "previous", "how", "at", "by", "note"}``: an append-only log whose last event
  always names the current champion.

**Descriptions.** A version's description starts with one plain sentence, its status line (:func:`status_line`:
the aliases it holds now and the last move that touched it; the first line is what MLflow's versions list shows),
followed by its gate record (Markdown, rendered on the version's page). Every alias move rewrites the status line of
each version that gained or lost an alias: :func:`promote` and :func:`rollback` at once, a registration taking
``challenger`` at the next write (the gate's record of the new version, :func:`sync_status`).

**Concurrency.** An alias is single-valued, so two racing promotions always leave exactly one champion;
what can go wrong is the history (two events numbered alike, or a ``previous_champion`` naming a version
that was displaced in between) and a gate promoting against a champion that is no longer the one it
evaluated. So each promotion runs read -> check -> write -> verify inside :func:`promotion_lock`:

- local SQLite store (``sqlite:////path/mlflow.db``, the default): an exclusive ``fcntl.flock`` on
  ``<db>.promote.lock`` next to the database. The OS releases it when the process dies (no stale lock),
  and every process that can write the database can take it. This is the lock the tests race on.
- any other store (a tracking server): MLflow offers no compare-and-set, so a lease held in the
  registered-model tag ``promotion.lease`` (``<token> <expiry>``): write it when absent or expired, wait
  ``LEASE_SETTLE`` seconds, and proceed only if it still holds our token. Best effort (a writer slower
  than the settle time can still interleave); a server deployment that promotes from many places at once
  should funnel promotions through one scheduled job.

Inside the lock, the alias is moved after the version tags and before the history event; then the alias
is read back (verify) and, if a previous holder of the lock crashed between the two, or someone moved the
alias by hand in the UI, the next promotion first appends an ``external`` event so the log matches the
alias again (:func:`_reconcile`).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yolox.errors import GateError, TrackingError
from yolox.files import sha256_file
from yolox.serve.pyfunc import OUTPUT_COLUMNS, OUTPUT_DTYPES, YoloxOnnxModel, encode_image
from yolox.tracking.store import configure, parse_models_uri, redact, tracking_uri

log = logging.getLogger("yolox.tracking")

CHALLENGER = "challenger"
CHAMPION = "champion"
HISTORY_PREFIX = "champion.history."
LEASE_TAG = "promotion.lease"
LEASE_SETTLE = 0.5  # seconds between writing the lease and reading it back
LEASE_TTL = 120.0  # seconds: a lease older than this is taken over (its holder died)


@dataclass
class RegisteredVersion:
    """A registered model version: ``name``, ``version`` (string, as MLflow), ``model_uri``."""

    name: str
    version: str
    model_uri: str


@dataclass
class VersionInfo:
    """A model version with its tags, its aliases and its source run's tags."""

    name: str
    version: str
    run_id: str | None
    tags: dict[str, str]
    aliases: list[str]
    run_tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Promotion:
    """One move of the champion alias (one event of the history)."""

    seq: int
    version: str
    previous: str | None
    how: str  # gate | manual | rollback | external
    at: str
    by: str = ""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _client() -> Any:
    import mlflow

    configure()
    return mlflow.MlflowClient()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _wrap(what: str, err: Exception) -> TrackingError:
    return TrackingError(f"{what} at {redact(tracking_uri())}: {type(err).__name__}: {redact(str(err))[:300]}")


def log_and_register(run_id: str, onnx_path: str | Path, registered_model: str, sample_image: str | Path,
                     extra_tags: dict[str, str] | None = None, conf_thresh: float | None = None,
                     nms_thresh: float | None = None, max_det: int | None = None,
                     alias: str = CHALLENGER, end2end_path: str | Path | None = None,
                     budgets: dict[str, int] | None = None) -> RegisteredVersion:
    """Log the ONNX-backed pyfunc to the run, register it as a new version of ``registered_model`` and
    give it the ``alias`` (``challenger``).

    The logged model has a signature (input column ``image``, the output columns, and params
    ``conf_thresh``, ``nms_thresh``, ``max_det`` whose defaults are the serving thresholds, those of
    ``yolox predict`` unless given) and an input example (``sample_image``). ``end2end_path``: an end2end graph
    of the same network logged beside it (artifact ``end2end``), which the pyfunc serves from. ``budgets``: the
    request budgets the served model enforces (:data:`yolox.serve.pyfunc.BUDGETS`, from ``serve.*``; default
    :class:`~yolox.config.ServeParams`'s).

    Only what the run produced is registered, checked by content hash: ``onnx_path`` must hash to the run's
    ``onnx_sha256`` tag (set by the export stage) when it has one, and the model logged to the run must hold
    exactly the bytes hashed here (read back from the artifact store) before a version is created. The version
    is tagged ``onnx_sha256``.

    Raises:
        TrackingError: the registry refused the operation; a file is not the run's own (nothing registered).
    """
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, DataType, Schema

    client = _client()
    sent = {"onnx": sha256_file(onnx_path), **({"end2end": sha256_file(end2end_path)} if end2end_path else {})}
    try:
        exported = client.get_run(run_id).data.tags.get("onnx_sha256")
    except Exception as err:
        raise _wrap(f"reading run {run_id}", err) from err
    if exported and exported != sent["onnx"]:
        raise TrackingError(f"not registering {onnx_path}: its sha256 {sent['onnx'][:12]} is not the {exported[:12]} "
                            f"run {run_id} exported (another run wrote over the file); nothing was registered")
    pyfunc = YoloxOnnxModel(**{k: v for k, v in {"conf_thresh": conf_thresh, "nms_thresh": nms_thresh,
                                                   "max_det": max_det}.items() if v is not None}, **(budgets or {}))
    example = pd.DataFrame({"image": [encode_image(sample_image)]})
    # the output schema declared, not inferred from an example: its integer columns (image, class_id) never
    # miss a value, and inferring them makes MLflow warn that they might
    inferred = infer_signature(example, None, params=pyfunc.thresholds())
    outputs = Schema([ColSpec(DataType.from_numpy_type(np.dtype(t)), c)
                      for c, t in zip(OUTPUT_COLUMNS, OUTPUT_DTYPES)])
    signature = ModelSignature(inputs=inferred.inputs, outputs=outputs, params=inferred.params)
    tags = {**(extra_tags or {}), **{k: str(v) for k, v in pyfunc.thresholds().items()}}
    try:
        with mlflow.start_run(run_id=run_id), _without_log_lines(_REGISTER_NOISE):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=pyfunc,
                artifacts={"onnx": str(onnx_path), **({"end2end": str(end2end_path)} if end2end_path else {})},
                signature=signature, input_example=example, metadata=pyfunc.thresholds(),
                pip_requirements=["onnxruntime", "opencv-python-headless", "numpy", "pandas", "torch"],
            )
        logged = _logged_hashes(info.model_uri)
        if logged != {_ARTIFACT_FILE[k](onnx_path, end2end_path): v for k, v in sent.items()}:
            raise TrackingError(f"not registering {info.model_uri}: the files logged to run {run_id} ({logged}) are "
                                f"not the ones this run exported ({sent}); nothing was registered")
        with _without_log_lines(_REGISTER_NOISE):
            mv = mlflow.register_model(info.model_uri, registered_model,
                                       tags={**tags, "onnx_sha256": sent["onnx"]})
        client.set_registered_model_alias(registered_model, alias, mv.version)
    except TrackingError:
        raise
    except Exception as err:
        raise _wrap(f"registering {registered_model}", err) from err
    log.info("registered %s version %s as %s", registered_model, mv.version, alias)
    return RegisteredVersion(registered_model, str(mv.version), f"models:/{registered_model}/{mv.version}")


_REGISTER_NOISE = {
    "mlflow.pyfunc": ("Passing a Python object as `python_model` causes it to be serialized",   # CloudPickle
                      "Validating input example against model signature"),
    "mlflow.store.model_registry.abstract_store": ("Waiting up to ",),
}
"""What MLflow logs for every model :func:`log_and_register` logs and registers, which means nothing to a
user here (by logger, the messages' beginnings): the pyfunc is this project's own class, pickled by the
project itself; the input example is validated anyway (a failure is still logged and raised); the wait for a
new version is bounded by MLflow. Every other record of those loggers passes."""


@contextlib.contextmanager
def _without_log_lines(starts_by_logger: dict[str, tuple[str, ...]]) -> Iterator[None]:
    """Within: the records of each logger whose message starts with one of its beginnings are dropped."""
    filters = []
    for name, starts in starts_by_logger.items():
        def keep(record: logging.LogRecord, starts: tuple[str, ...] = starts) -> bool:
            return not record.getMessage().startswith(starts)

        logging.getLogger(name).addFilter(keep)
        filters.append((name, keep))
    try:
        yield
    finally:
        for name, keep in filters:
            logging.getLogger(name).removeFilter(keep)


_ARTIFACT_FILE = {"onnx": lambda onnx, e2e: Path(onnx).name, "end2end": lambda onnx, e2e: Path(e2e).name}


def _logged_hashes(model_uri: str) -> dict[str, str]:
    """``{file name: sha256}`` of the ONNX files a logged pyfunc model holds (its ``artifacts/`` folder), read back
    from the artifact store."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="yolox-logged-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        return {p.name: sha256_file(p) for p in sorted((local / "artifacts").rglob("*.onnx"))}


def alias_version(name: str, alias: str) -> Any | None:
    """The model version holding ``alias``, or None (also when the model does not exist).

    Raises:
        TrackingError: the registry failed otherwise (a server lost mid-command: not "no such version").
    """
    import mlflow

    try:
        return _client().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as err:
        if any(code in str(err.error_code) for code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")):
            return None
        raise _wrap(f"reading alias {alias!r} of {name}", err) from err


def _registered(client: Any, name: str) -> Any:
    """The registered model ``name`` (aliases, tags), read fresh.

    Raises:
        TrackingError: no such registered model (says how to create one).
    """
    import mlflow

    try:
        return client.get_registered_model(name)
    except mlflow.exceptions.MlflowException as err:
        if "RESOURCE_DOES_NOT_EXIST" in str(err.error_code):
            raise TrackingError(f"no registered model {name!r}: run the pipeline to register one, or check "
                                "tracking.registered_model in the params") from None
        raise _wrap(f"reading {name}", err) from err


def _alias_holder(client: Any, name: str, alias: str) -> str | None:
    """The version number holding ``alias``, read from the registered model (no cache), or None."""
    holder = _registered(client, name).aliases.get(alias)
    return None if holder is None else str(holder)


def version_info(name: str, version: str) -> VersionInfo:
    """Tags, aliases and run tags of version ``version`` of ``name``.

    Raises:
        TrackingError: no such model or version (names both), or the registry cannot be reached.
    """
    import mlflow

    client = _client()
    _registered(client, name)
    try:
        mv = client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException as err:
        if "RESOURCE_DOES_NOT_EXIST" in str(err.error_code):
            raise TrackingError(f"registered model {name!r} has no version {version}: see the Models page "
                                "of the MLflow UI for its versions") from None
        raise _wrap(f"reading {name} version {version}", err) from err
    run_tags: dict[str, str] = {}
    if mv.run_id:
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            run_tags = dict(client.get_run(mv.run_id).data.tags)
    return VersionInfo(name, str(mv.version), mv.run_id, dict(mv.tags), list(mv.aliases or []), run_tags)


def load_version_model(name: str, version: str) -> Any:
    """The registered pyfunc of a version, unwrapped: a loaded :class:`YoloxOnnxModel` (``.backend`` an
    OnnxBackend, ``.input_size``, ``.names``), as ``mlflow models serve`` would load it.

    Raises:
        TrackingError: the version or its artifacts cannot be loaded.
    """
    import mlflow

    version_info(name, version)  # a clear error for a missing version
    try:
        return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
    except Exception as err:
        raise _wrap(f"loading models:/{name}/{version}", err) from err


def set_version_tags(name: str, version: str, tags: dict[str, str]) -> None:
    client = _client()
    try:
        for k, v in tags.items():
            client.set_model_version_tag(name, str(version), k, str(v))
    except Exception as err:
        raise _wrap(f"tagging {name} version {version}", err) from err


def registered_model_tags(name: str) -> dict[str, str]:
    """The tags of registered model ``name`` ({} when it does not exist yet).

    Raises:
        TrackingError: the registry cannot be reached.
    """
    import mlflow

    try:
        return dict(_client().get_registered_model(name).tags)
    except mlflow.exceptions.MlflowException as err:
        if "RESOURCE_DOES_NOT_EXIST" in str(err.error_code):
            return {}
        raise _wrap(f"reading registered model {name}", err) from err
    except Exception as err:
        raise _wrap(f"reading registered model {name}", err) from err


def set_registered_model_tag(name: str, key: str, value: str) -> None:
    """Set one tag on registered model ``name``. Raises TrackingError when the registry refuses."""
    try:
        _client().set_registered_model_tag(name, key, value)
    except Exception as err:
        raise _wrap(f"tagging registered model {name}", err) from err


def describe_version(name: str, version: str, text: str, note: str | None = None) -> None:
    """Set a version's description (Markdown, shown rendered on its page in the MLflow UI). With ``note`` (one
    sentence on what just happened to it, e.g. the gate's verdict), the description starts with the version's
    status line (:func:`status_line`: its aliases now, then ``note``) and ``text`` follows; the status lines of
    the other versions whose aliases moved since they were last written are brought up to date too
    (:func:`sync_status`).

    Raises:
        TrackingError: the registry refused, or cannot be reached.
    """
    client = _client()
    try:
        if note is None:
            client.update_model_version(name, str(version), description=text)
            return
        aliases = client.get_model_version(name, str(version)).aliases or []
        client.update_model_version(name, str(version), description=f"{status_line(aliases, note)}\n\n{text}")
        sync_status(client, name, {}, skip={str(version)})
    except Exception as err:
        raise _wrap(f"describing {name} version {version}", err) from err


# --- status lines: a version's description says what it is now ---------------------------------------

_OLD_STATUS_MARK = "> **Status:** "      # the status line's earlier form: replaced like the current one
STATUS_ALIASES_TAG = "status.aliases"
"""Registered-model tag: the alias holders (json ``{alias: version}``) when the status lines were last written, so
that an alias moved elsewhere (a registration taking ``challenger``, a move by hand in the UI) is found at the next
write and the lines of both versions concerned are rewritten (:func:`sync_status`)."""


def status_line(aliases: list[str] | tuple[str, ...] | set[str], note: str) -> str:
    """The first line of a version's description: one plain sentence, ``<its aliases>. <note>``, e.g. ``Champion
    and challenger. Promoted by the gate at 2026-12-07T06:12:00Z over version 1.`` (``No alias.`` when it holds
    none; champion first, then challenger, then others by name). MLflow's versions list shows a description's
    first line unrendered and cut after about 30 characters: what the version is comes first."""
    ordered = sorted(aliases, key=lambda a: (a != CHAMPION, a != CHALLENGER, a))
    role = " and ".join(ordered) if ordered else "no alias"
    return f"{role[:1].upper()}{role[1:]}. {note}"


def _without_status(text: str, known: set[str]) -> str:
    """A description without its status line: the first paragraph when it is one (:func:`status_line` of the
    aliases ``known``, or the earlier ``> **Status:** ...`` form); a description written otherwise is kept whole."""
    first, _, rest = text.partition("\n\n")
    names = "|".join(re.escape(a) for a in sorted(known, key=len, reverse=True))
    if text.startswith(_OLD_STATUS_MARK) or re.match(rf"(?i)(no alias|({names})( and ({names}))*)\. ", first):
        return rest
    return text


def _mark_description(client: Any, name: str, version: str, note: str, known: set[str]) -> None:
    """Put the status line of ``version`` (its aliases now, then ``note``) first in its description, in place of
    an earlier status line (of the aliases ``known``); what followed (its gate record) stays."""
    mv = client.get_model_version(name, str(version))
    aliases = list(mv.aliases or [])
    body = _without_status(mv.description or "", known | set(aliases))
    line = status_line(aliases, note)
    client.update_model_version(name, str(version), description=f"{line}\n\n{body}" if body else line)


def sync_status(client: Any, name: str, notes: dict[str, str], at: str | None = None,
                skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Rewrite the status line of each version in ``notes`` (``{version: note}``: the move just made) and of every
    other version that gained or lost an alias since the lines were last written (:data:`STATUS_ALIASES_TAG`;
    their note names the move, e.g. ``Version 3 took challenger (recorded <at>).``), except those in ``skip``
    (written already); then record the holders. Versions deleted meanwhile are passed over. ``at``: UTC time of
    the move (default now). Returns the versions rewritten.

    Raises:
        TrackingError: no such registered model. MlflowException: the registry refused a write.
    """
    import mlflow

    at = at or _now()
    model = _registered(client, name)
    holders = {alias: str(v) for alias, v in (model.aliases or {}).items()}
    try:
        before = json.loads(model.tags.get(STATUS_ALIASES_TAG) or "{}")
    except ValueError:
        before = {}
    known = {CHAMPION, CHALLENGER, *holders, *before}
    moves: dict[str, list[str]] = {}
    for alias in sorted(set(holders) | set(before)):
        old, new = before.get(alias), holders.get(alias)
        if old == new:
            continue
        if new is not None:
            moves.setdefault(new, []).append(f"took {alias}" + (f" from version {old}" if old else ""))
        if old is not None:
            moves.setdefault(str(old), []).append(f"version {new} took {alias}" if new else f"lost {alias}")
    done = []
    for version in sorted((set(moves) | set(notes)) - set(skip), key=lambda v: int(v) if v.isdigit() else 0):
        note = notes.get(version) or f"{'; '.join(moves[version])} (recorded {at})."
        try:
            _mark_description(client, name, version, note[0].upper() + note[1:], known)
        except mlflow.exceptions.MlflowException as err:
            if "RESOURCE_DOES_NOT_EXIST" not in str(err.error_code):
                raise
            continue
        done.append(version)
    if holders != before:
        client.set_registered_model_tag(name, STATUS_ALIASES_TAG, json.dumps(holders, sort_keys=True))
    return done


# --- promotion --------------------------------------------------------------------------------------


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a+") as f:
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TrackingError(f"promotion lock {path} held by another process for {timeout:.0f} s: "
                                        "is a promotion stuck? Retry when it is done.") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _lease(client: Any, name: str, timeout: float) -> Iterator[None]:
    import random

    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    while True:
        held = _registered(client, name).tags.get(LEASE_TAG)
        expired = held is None or float(held.split()[-1]) < time.time()
        if expired:
            try:
                client.set_registered_model_tag(name, LEASE_TAG, f"{token} {time.time() + LEASE_TTL:.0f}")
            except Exception as err:  # noqa: BLE001 - a concurrent write of the same tag (unique key): retry
                log.debug("lease write lost to another writer: %s", str(err)[:200])
            else:
                time.sleep(LEASE_SETTLE)
                if client.get_registered_model(name).tags.get(LEASE_TAG, "").startswith(token):
                    break
        if time.monotonic() > deadline:
            raise TrackingError(f"promotion lease {LEASE_TAG} of {name!r} held for {timeout:.0f} s ({held}): "
                                "another promotion is running; retry when it is done")
        time.sleep(0.1 + random.random() * 0.3)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            if client.get_registered_model(name).tags.get(LEASE_TAG, "").startswith(token):
                client.delete_registered_model_tag(name, LEASE_TAG)


@contextlib.contextmanager
def promotion_lock(name: str, lock: str = "auto", timeout: float = 120.0) -> Iterator[None]:
    """Serialise promotions of ``name`` across processes (see the module docstring).

    Args:
        lock: ``auto`` (file lock for a SQLite store, else lease), ``file`` or ``lease``.
    """
    db = _sqlite_path(tracking_uri())
    kind = ("file" if db else "lease") if lock == "auto" else lock
    if kind == "file":
        if db is None:
            raise TrackingError(f"a file lock needs a local SQLite tracking store, not {tracking_uri()}")
        with _file_lock(db.with_name(db.name + ".promote.lock"), timeout):
            yield
    else:
        with _lease(_client(), name, timeout):
            yield


def champion_history(name: str) -> list[Promotion]:
    """The champion alias' history of ``name``, oldest first (empty when never promoted)."""
    try:
        tags = _registered(_client(), name).tags
    except TrackingError:
        raise
    except Exception as err:
        raise _wrap(f"reading the registered model {name}", err) from err
    return _history(tags)


def _history(tags: dict[str, str]) -> list[Promotion]:
    events = [Promotion(**json.loads(v)) for k, v in tags.items() if k.startswith(HISTORY_PREFIX)]
    return sorted(events, key=lambda e: e.seq)


def _append(client: Any, name: str, version: str, previous: str | None, how: str, note: str = "") -> Promotion:
    seq = max((e.seq for e in _history(_registered(client, name).tags)), default=0) + 1
    event = Promotion(seq, str(version), previous, how, _now(),
                      f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}", note[:500])
    client.set_registered_model_tag(name, f"{HISTORY_PREFIX}{seq:06d}", json.dumps(event.to_json()))
    return event


def _reconcile(client: Any, name: str, alias: str) -> str | None:
    """The current alias holder; appends an ``external`` event first if the history's last event does
    not name it (the alias was moved outside this module, or a promotion died half-way)."""
    current = _alias_holder(client, name, alias)
    history = _history(_registered(client, name).tags)
    last = history[-1].version if history else None
    if current is not None and current != last:
        log.warning("%s: %s is version %s but the history ends at %s: recording it", name, alias, current, last)
        _append(client, name, current, last, "external", "alias moved outside yolox promote")
    return current


def _verify(client: Any, name: str, alias: str, version: str) -> None:
    holder = _alias_holder(client, name, alias)
    last = _history(_registered(client, name).tags)[-1]
    if holder != str(version) or last.version != str(version):
        raise TrackingError(f"{name}: after promoting version {version}, {alias!r} is {holder} and the history "
                            f"ends at {last.version}: another writer bypassed the promotion lock")


_ANY = object()
_HOW = {"gate": "by the gate", "manual": "by hand"}
"""How :func:`promote`'s ``how`` reads in a status line."""


def promote(name: str, version: str, how: str = "manual", alias: str = CHAMPION, expected_champion: Any = _ANY,
            note: str = "", lock: str = "auto") -> Promotion:
    """Give ``version`` the champion alias, recording the previous champion (see the module docstring). The status
    lines of both versions' descriptions say so (:func:`sync_status`), e.g. ``Champion. Promoted by the gate at
    <time> over version 1.`` and ``No alias. Was champion until <time>: version 2 replaced it (gate).``

    Args:
        how: ``gate`` (decided by the gate) or ``manual`` (an override, ``yolox promote --version``).
        expected_champion: when given (a version string, or None for "no champion"), promote only if the
            alias still points there (the gate evaluated against it).
        lock: see :func:`promotion_lock`.

    Raises:
        GateError: the champion moved away from ``expected_champion``. TrackingError: no such version, or
        the registry refused.
    """
    version = version_info(name, version).version
    client = _client()
    try:
        with promotion_lock(name, lock):
            current = _reconcile(client, name, alias)
            if expected_champion is not _ANY and current != (None if expected_champion is None
                                                             else str(expected_champion)):
                raise GateError(f"{name}: {alias!r} moved to version {current} while the gate compared against "
                                f"{expected_champion or 'no champion'}: re-run the gate")
            if current == version:
                log.info("%s version %s already holds %s", name, version, alias)
                return _history(_registered(client, name).tags)[-1]
            for k, v in {"previous_champion": current or "none", "promotion": how, "promoted_at": _now()}.items():
                client.set_model_version_tag(name, version, k, v)
            client.set_registered_model_alias(name, alias, version)
            event = _append(client, name, version, current, how, note)
            _verify(client, name, alias, version)
            by = _HOW.get(how, f"({how})")
            notes = {version: f"Promoted {by} at {event.at} " + (f"over version {current}." if current is not None
                                                                  else f"(the first {alias}).")}
            if current is not None:
                notes[current] = f"Was {alias} until {event.at}: version {version} replaced it ({how})."
            sync_status(client, name, notes, event.at)
    except (GateError, TrackingError):
        raise
    except Exception as err:
        raise _wrap(f"promoting {name} version {version}", err) from err
    log.info("%s: version %s is %s (%s; previous %s)", name, version, alias, how, current)
    return event


def rollback(name: str, alias: str = CHAMPION, note: str = "", lock: str = "auto") -> Promotion:
    """Move the champion alias back to the version recorded as ``previous_champion`` on the current one, and
    rewrite both versions' status lines (:func:`sync_status`).

    Raises:
        GateError: no champion, or it records no previous champion. TrackingError: the registry refused.
    """
    client = _client()
    try:
        with promotion_lock(name, lock):
            current = _reconcile(client, name, alias)
            if current is None:
                raise GateError(f"registered model {name!r} has no {alias!r}: nothing to roll back")
            previous = client.get_model_version(name, current).tags.get("previous_champion", "none")
            if previous == "none":
                raise GateError(f"{name} version {current} records no previous champion: promote a version with "
                                "`yolox promote --version N` instead")
            version_info(name, previous)  # the previous champion still exists
            client.set_model_version_tag(name, previous, "rollback_from", current)
            client.set_model_version_tag(name, current, "rolled_back_at", _now())
            client.set_registered_model_alias(name, alias, previous)
            event = _append(client, name, previous, current, "rollback", note)
            _verify(client, name, alias, previous)
            sync_status(client, name, {current: f"Was {alias} until {event.at}: rolled back to version {previous}.",
                                       previous: f"Back since {event.at}: rolled back from version {current}."},
                        event.at)
    except (GateError, TrackingError):
        raise
    except Exception as err:
        raise _wrap(f"rolling back {name}", err) from err
    log.info("%s: rolled back %s from version %s to %s", name, alias, current, previous)
    return event


TRAINING_CHECKPOINT = "checkpoint/last.pth"
"""Where a pipeline run logs its training checkpoint (artifact path in the run; :func:`yolox.train.stage.train`)."""


def training_checkpoint(name: str, version: str, dest_dir: str | Path) -> Path:
    """Download the training checkpoint of version ``version`` of ``name`` (artifact :data:`TRAINING_CHECKPOINT`
    of the run that registered it: EMA weights, their ``ModelMeta`` and the optimizer state) into ``dest_dir``,
    atomically (a temp file beside it, then a rename). Returns the local file ``<dest_dir>/<name>-v<version>.pth``.

    Raises:
        TrackingError: no such version, it has no source run, or its run has no training checkpoint (a version
            registered by hand): names the version and what to do.
    """
    import tempfile

    import mlflow

    info = version_info(name, version)
    if not info.run_id:
        raise TrackingError(f"{name} version {version} has no source run, so no training checkpoint to start "
                            "from: set model.weights to a checkpoint file instead")
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{name}-v{info.version}.pth"
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=info.run_id, artifact_path=TRAINING_CHECKPOINT,
                                                        dst_path=tmp)
        except Exception as err:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            raise TrackingError(f"{name} version {version}: its run {info.run_id} has no training checkpoint "
                                f"({TRAINING_CHECKPOINT}; {type(err).__name__}): was it registered by a pipeline "
                                "run? Set model.weights to a checkpoint file instead") from None
        os.replace(local, target)
    return target


def registered_onnx(uri: str, arg: str) -> str:
    """The local ONNX file of the registered version ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``
    (downloaded by MLflow), ``uri`` given as option ``arg``.

    Raises:
        ConfigError: a malformed URI (names ``arg``). TrackingError: no such model, version or alias holder.
    """
    name, kind, value = parse_models_uri(uri, arg)
    if kind == "alias":
        holder = alias_version(name, value)
        if holder is None:
            raise TrackingError(f"{arg} {uri}: no version of registered model {name!r} holds the alias "
                                f"{value!r} (or there is no such model): see its aliases on the Models page "
                                "of the MLflow UI")
        value = str(holder.version)
    return str(load_version_model(name, value).backend.path)
