"""Where runs and models go.

``MLFLOW_TRACKING_URI`` points at a server (``http://...``) or a database. Unset, the embedded default
is a SQLite store ``mlflow.db`` and an artifact folder ``mlartifacts/`` in the working directory (the
file store ``./mlruns`` is in maintenance mode in MLflow 3). Credentials come from the environment
(``MLFLOW_TRACKING_USERNAME``/``PASSWORD``), never from params or logs.
"""

from __future__ import annotations

import os
from pathlib import Path

from yolox.errors import TrackingError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tracking_uri() -> str:
    """The effective tracking URI (env, else ``sqlite:////<cwd>/mlflow.db``)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def configure() -> str:
    """Point MLflow at :func:`tracking_uri` (tracking and registry) and return the URI."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def redact(uri: str) -> str:
    """A URI with any ``user:password@`` removed, for logs and messages."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


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
    except Exception as err:  # noqa: BLE001 - MLflow raises many types for an unreachable server
        if isinstance(err, TrackingError):
            raise
        raise TrackingError(f"MLflow tracking store {redact(uri)} not usable: {type(err).__name__}: "
                            f"{str(err)[:300]}. Is the server up? Check MLFLOW_TRACKING_URI.") from err
