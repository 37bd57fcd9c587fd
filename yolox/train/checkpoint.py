"""Training checkpoints: everything needed to continue a run exactly, written atomically.

Layout (a dict saved with ``torch.save``, read back with ``weights_only=True``):
``model`` (the weights to evaluate: the EMA when enabled, as the authors' checkpoints), ``model_raw``
(the raw training weights), ``ema_updates``, ``optimizer``, ``scaler``, ``epoch`` (epochs completed),
``iteration`` (optimizer steps done), ``phase`` (``{"mosaic": bool, "l1": bool}``), ``rng``
(torch, numpy, python and CUDA states), ``loader`` (the data loader's seeds:
:func:`yolox.data.dataset.loader_seeds`), ``params`` (the params the run was trained with, as plain
data), ``names`` (class names), ``model_name``, ``input_size``, ``world_size``, ``history`` (per-epoch
metrics) and ``mlflow_run_id`` (the MLflow run the metrics went to, or None).

Next to ``last.pth``, ``run.json`` holds the run's tracking state: ``{"mlflow_run_id": ...,
"reported_epoch": N}`` (the last epoch whose metrics the epoch callback took). It is written when the
run starts, so that a run killed before its first checkpoint still continues its MLflow run; see
:func:`read_run_id`.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolox.errors import CheckpointError


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temp file in the same folder, fsync, then rename, so a
    crash during the write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: missing, unreadable, or not a training checkpoint of this project.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from None
    missing = [k for k in ("model", "model_raw", "optimizer", "epoch", "iteration") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a resumable training checkpoint (missing {', '.join(missing)})")
    return state


RUN_INFO = "run.json"


def read_run_id(output_dir: str | Path) -> str | None:
    """The MLflow run id a training run in ``output_dir`` logged to: ``last.pth``'s ``mlflow_run_id``,
    else ``run.json``'s (a run killed before its first checkpoint), else None."""
    out = Path(output_dir)
    ckpt = out / "last.pth"
    if ckpt.is_file():
        try:
            run_id = torch.load(ckpt, map_location="cpu", weights_only=True).get("mlflow_run_id")
        except Exception:  # noqa: BLE001 - unreadable checkpoint: fall back on run.json
            run_id = None
        if run_id:
            return str(run_id)
    return read_run_info(out).get("mlflow_run_id") or None


def read_run_info(output_dir: str | Path) -> dict[str, Any]:
    """``<output_dir>/run.json`` as a dict (empty when absent or unreadable)."""
    try:
        info = json.loads((Path(output_dir) / RUN_INFO).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def write_run_info(output_dir: str | Path, **fields: Any) -> Path:
    """Update ``<output_dir>/run.json`` with ``fields`` (atomically: temp file + rename)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {**read_run_info(out), **fields}
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{RUN_INFO}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=1, sort_keys=True)
        os.replace(tmp, out / RUN_INFO)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out / RUN_INFO


def rng_state() -> dict[str, Any]:
    """RNG states of torch (and CUDA, when present), numpy and python, as weights_only-loadable data."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
             "python": list(_py_state_to_list(random.getstate()))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (the CUDA states only when as many devices are present)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _py_state_to_list(state: tuple) -> tuple:
    version, internal, gauss_next = state
    return version, list(internal), gauss_next
