"""Retry and cache policy of the ``train-yolox`` tasks: which failures a retry can fix, and when prepare is
skipped. Orchestration only: the functions look at exceptions, hashes and paths, never at images or models."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prefect.tasks import exponential_backoff

from yolox.errors import PreflightError, TrackingError

# an OSError a retry cannot fix: the file is not there, or we may not touch it
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
# MlflowException codes of an unreachable or overloaded server (after MLflow's own HTTP retries)
_TRANSIENT_MLFLOW_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


def is_transient(exc: BaseException) -> bool:
    """True for a tracking server or file system hiccup (worth a retry), False for a bad param, dataset,
    checkpoint, export or gate decision (the same inputs would fail again).

    A failed preflight (:class:`~yolox.errors.PreflightError`: the store was unreachable, refused access or was
    not writable before any work) is not transient: nothing has been done yet, so a retry saves nothing, and the
    cause is nearly always a wrong URI, missing credentials or a server that is not started, which 3 retries
    over about a minute would not fix but would bury under as many tracebacks; the next scheduled run retries
    soon enough once it is fixed. A tracking error later in the run is a hiccup of a server that answered
    moments before, and the work done so far makes a retry worth it."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, PreflightError):
        return False
    if isinstance(exc, TrackingError):
        return True
    if isinstance(exc, MlflowException):
        return exc.error_code in _TRANSIENT_MLFLOW_CODES
    if isinstance(exc, _PERMANENT_OS_ERRORS):
        return False
    return isinstance(exc, (OSError, TimeoutError))  # ConnectionError, BrokenPipeError, EIO, ESTALE, ...


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task run only when :func:`is_transient` says so."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the task's own exception, re-raised by result()
        return is_transient(exc)
    return False


def retries(count: int = 3, first_delay_s: float = 10.0) -> dict[str, Any]:
    """Task options: ``count`` retries of transient failures after ``first_delay_s`` x 1, 2, 4, ... (+- 50 %)."""
    return {"retries": count, "retry_delay_seconds": exponential_backoff(backoff_factor=first_delay_s),
            "retry_jitter_factor": 0.5, "retry_condition_fn": retry_transient}


def _source_paths(data: Any) -> list[Path]:
    """The files and folders a prepare run reads: the raw source (its folder, for a dataset.yaml or a COCO
    json next to its images), the image folder and the val source when given."""
    from yolox.assets import resolve_dataset

    paths = []
    for value in (data.source, data.images, data.val_source):
        if value:
            path = resolve_dataset(value) if value == data.source else Path(value)
            paths.append(path if path.is_dir() else path.parent)
    return sorted({p.resolve() for p in paths})


def prepare_cache_key(context: Any, parameters: dict[str, Any]) -> str | None:
    """Cache key of the prepare task: the DVC hashes of the raw dataset, the data params and the code of
    ``yolox/data``. Equal keys give equal prepared datasets, so prepare is skipped (state Cached). None (no
    caching) when the source cannot be resolved: the task then runs and reports why."""
    import yolox.data
    from yolox.errors import YoloxError
    from yolox.lineage import data_version

    data = parameters["params"].data
    try:
        parts = [data_version(p) for p in _source_paths(data)]
    except (YoloxError, OSError):
        return None
    code = hashlib.sha256()
    for py in sorted(Path(yolox.data.__file__).parent.rglob("*.py")):
        code.update(py.read_bytes())
    parts += [data.model_dump_json(), code.hexdigest()]
    return "prepare-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def prepared_intact(prepared: Any) -> bool:
    """A (cached) :class:`yolox.pipeline.PreparedData` still describes what is on disk: the folder exists
    with that hash."""
    from yolox.lineage import data_version

    path = Path(prepared.path)
    return path.is_dir() and data_version(path) == prepared.data_version
