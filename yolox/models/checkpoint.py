"""Loading checkpoints into a model: the authors' released files and this project's own.

Both store the weights to evaluate under ``"model"`` (this project's checkpoints also hold the raw
training weights under ``"model_raw"``; see :mod:`yolox.train.checkpoint`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolox.errors import CheckpointError

log = logging.getLogger("yolox.models")

CLASS_PREDICTOR_PREFIX = "head.cls_preds."


@dataclass
class LoadReport:
    """What :func:`load_weights` did: tensors loaded, and class-predictor tensors left initialised."""

    path: str
    loaded: int
    total: int
    reinitialised: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        s = f"{self.path}: loaded {self.loaded}/{self.total} tensors"
        if self.reinitialised:
            s += f"; class predictors re-initialised ({len(self.reinitialised)} tensors: class count differs)"
        return s


def torch_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: the one way this project reads a ``.pth``.

    Raises:
        CheckpointError: missing file, or not a checkpoint that loads with weights only (a corrupt file, or
            a pickle that needs code to run, which is refused); the message names the file and says what
            to do (never suggests ``weights_only=False``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        why = "it holds objects other than tensors and plain data" if "weights_only" in str(err) else first[:200]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {why}); "
                              "re-export it with torch.save({'model': model.state_dict()}, path)") from None


def read_state_dict(path: str | Path, key: str = "model") -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` with ``torch.load(weights_only=True)``.

    Accepts ``{"model": state_dict, ...}`` (authors' and this project's layout) or a bare state dict.

    Raises:
        CheckpointError: missing or unreadable file, or no state dict inside.
    """
    ckpt = torch_load(path)
    if isinstance(ckpt, dict) and key in ckpt and isinstance(ckpt[key], dict):
        ckpt = ckpt[key]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointError(f"{path}: no state dict found (expected {{'{key}': state_dict}} or a state dict)")
    return ckpt


def load_weights(model: nn.Module, path: str | Path, key: str = "model") -> LoadReport:
    """Load a checkpoint into ``model``; strict except for the class predictors.

    Every tensor must match by name and shape, except ``head.cls_preds.*`` when the checkpoint was
    trained with another class count: those keep the model's fresh initialisation (fine-tuning).

    Raises:
        CheckpointError: missing/unexpected tensors or a shape mismatch outside the class predictors
            (e.g. yolox-nano weights into yolox-s); the message lists the first offending names.
    """
    state = read_state_dict(path, key)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    bad_shape = [k for k in mismatched if not k.startswith(CLASS_PREDICTOR_PREFIX)]
    if missing or unexpected or bad_shape:
        parts = []
        if bad_shape:
            parts.append("shape mismatch: " + ", ".join(
                f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in bad_shape[:3]))
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(f"{path} does not fit this model: " + "; ".join(parts)
                              + ". Is it a checkpoint of another model size?")
    to_load = {k: v for k, v in state.items() if k not in mismatched}
    model.load_state_dict(to_load, strict=not mismatched)
    report = LoadReport(str(path), len(to_load), len(own), mismatched)
    log.info("%s", report)
    return report
