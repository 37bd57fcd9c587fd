"""Training checkpoints: everything needed to continue a run exactly, written atomically.

Layout (a dict saved with ``torch.save``, read back with ``weights_only=True``):
``model`` (the weights to evaluate: the EMA when enabled, as the authors' checkpoints), ``model_raw``
(the raw training weights), ``ema_updates``, ``optimizer``, ``scaler``, ``epoch`` (epochs completed),
``iteration`` (optimizer steps done), ``phase`` (``{"mosaic": bool, "l1": bool}``), ``rng``
(torch, numpy, python states), ``params`` (the params the run was trained with, as plain data),
``names`` (class names), ``model_name``, ``input_size``.
"""

from __future__ import annotations

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


def rng_state() -> dict[str, Any]:
    """RNG states of torch, numpy and python, as weights_only-loadable data."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                                                       *np_state[2:]],
            "python": list(_py_state_to_list(random.getstate()))}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _py_state_to_list(state: tuple) -> tuple:
    version, internal, gauss_next = state
    return version, list(internal), gauss_next
