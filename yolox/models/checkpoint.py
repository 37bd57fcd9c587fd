"""Loading checkpoints into a model: the authors' released files and this project's own.

Both store the weights to evaluate under ``"model"`` (this project's checkpoints also hold the raw
training weights under ``"model_raw"``; see :mod:`yolox.train.checkpoint`).
"""

from __future__ import annotations

import logging
import re
import warnings
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
        CheckpointError: missing file or a folder; an empty, cut-short or corrupt file; or a pickle that would
            import and run code (refused: not a safe checkpoint). The message names the file, says which and
            what to do; it never suggests ``weights_only=False``.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint: pass the .pth file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: not a valid checkpoint (the file is empty): copy or download it again")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise before the refusal below
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"{path}: {_why_unloadable(err)}") from None


_UNSAFE_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL (\S+)", re.IGNORECASE)


def _why_unloadable(err: Exception) -> str:
    """What a failed weights-only ``torch.load`` means for the user, and what to do (PyTorch's own message
    advises ``weights_only=False``, i.e. running whatever code the file holds: never repeated here)."""
    text = str(err)
    unsafe = _UNSAFE_GLOBAL.search(text)
    if unsafe:
        return (f"not a safe checkpoint: loading it would import {unsafe.group(1).rstrip('.')}, which is refused. "
                "Use a checkpoint that holds only tensors and plain data, from a source you trust "
                "(save one with torch.save({'model': model.state_dict()}, path))")
    if isinstance(err, RuntimeError) and ("zip archive" in text or "PytorchStreamReader" in text):
        first = text.split(". ")[0].strip()
        return f"not a valid checkpoint: the file is cut short or corrupt ({first}); copy or download it again"
    if isinstance(err, OSError):
        return f"cannot read the file ({err.strerror or err})"
    return ("not a valid checkpoint: not a PyTorch checkpoint file, or a corrupt one (it does not unpickle as "
            "tensors and plain data); pass a .pth written by torch.save, or copy or download it again")


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
