"""The MLflow model registry: registering a pipeline's model and moving aliases.

Aliases, not stages (deprecated in MLflow 3): ``challenger`` on registration; ``champion`` only via the
promotion gate (or a recorded manual override).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolox.errors import TrackingError

log = logging.getLogger("yolox.tracking")

CHALLENGER = "challenger"
CHAMPION = "champion"


@dataclass
class RegisteredVersion:
    """A registered model version: ``name``, ``version`` (string, as MLflow), ``model_uri``."""

    name: str
    version: str
    model_uri: str


def log_and_register(run_id: str, onnx_path: str | Path, registered_model: str, sample_image: str | Path,
                     extra_tags: dict[str, str] | None = None) -> RegisteredVersion:
    """Log the ONNX-backed pyfunc to the run (with signature and input example), register it as a new
    version of ``registered_model`` and give it the ``challenger`` alias.

    Raises:
        TrackingError: the registry refused the operation.
    """
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from yolox.tracking.pyfunc import OUTPUT_COLUMNS, YoloxOnnxModel, encode_image
    from yolox.tracking.store import configure

    configure()
    example = pd.DataFrame({"image": [encode_image(sample_image)]})
    out_example = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
        OUTPUT_COLUMNS, ["int64", "float64", "float64", "float64", "float64", "float64", "int64", "str"])})
    signature = infer_signature(example, out_example)
    try:
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=YoloxOnnxModel(), artifacts={"onnx": str(onnx_path)},
                signature=signature, input_example=example,
                pip_requirements=["onnxruntime", "opencv-python-headless", "numpy", "pandas", "torch"],
            )
        mv = mlflow.register_model(info.model_uri, registered_model, tags=extra_tags or {})
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(registered_model, CHALLENGER, mv.version)
    except Exception as err:  # noqa: BLE001
        raise TrackingError(f"registering {registered_model}: {type(err).__name__}: {err}") from err
    log.info("registered %s version %s as %s", registered_model, mv.version, CHALLENGER)
    return RegisteredVersion(registered_model, str(mv.version), f"models:/{registered_model}/{mv.version}")


def alias_version(name: str, alias: str) -> Any | None:
    """The model version holding ``alias``, or None."""
    import mlflow

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
