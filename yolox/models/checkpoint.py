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
    kept_classes: int | None = None
    """With a class list matched by name: classes whose predictor rows came from the checkpoint."""
    added_classes: list[str] = field(default_factory=list)
    """With a class list matched by name: classes the checkpoint did not know (fresh rows)."""

    def __str__(self) -> str:
        s = f"{self.path}: loaded {self.loaded}/{self.total} tensors"
        if self.kept_classes is not None:
            s += f"; class predictors matched by name: {self.kept_classes} kept"
            if self.added_classes:
                s += f", {len(self.added_classes)} new ({', '.join(self.added_classes[:5])})"
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
    return _state_dict_of(torch_load(path), path, key)


def _state_dict_of(ckpt: Any, path: str | Path, key: str) -> dict[str, torch.Tensor]:
    if isinstance(ckpt, dict) and key in ckpt and isinstance(ckpt[key], dict):
        ckpt = ckpt[key]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointError(f"{path}: no state dict found (expected {{'{key}': state_dict}} or a state dict)")
    return ckpt


def class_names_of(ckpt: Any) -> list[str] | None:
    """The class names a loaded checkpoint dict records (this project's ``meta.names``, or ``names`` in older
    checkpoints), or None (the authors' files record none)."""
    if not isinstance(ckpt, dict):
        return None
    meta = ckpt.get("meta")
    names = meta.get("names") if isinstance(meta, dict) else ckpt.get("names")
    return [str(n) for n in names] if isinstance(names, list | tuple) else None


def _class_rows(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], old: list[str],
                new: list[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Class-predictor tensors for the classes ``new`` built from a checkpoint trained on ``old``: the row of
    each class known to both is the checkpoint's, the other rows keep the model's fresh initialisation.
    Returns the tensors and the new classes (those the checkpoint did not know)."""
    index = {name: i for i, name in enumerate(old)}
    mapped = {}
    for k, fresh in own.items():
        if not k.startswith(CLASS_PREDICTOR_PREFIX) or k not in state:
            continue
        out = fresh.clone()
        for i, name in enumerate(new):
            if name in index:
                out[i] = state[k][index[name]]
        mapped[k] = out
    return mapped, [n for n in new if n not in index]


def load_weights(model: nn.Module, path: str | Path, key: str = "model",
                 names: list[str] | None = None) -> LoadReport:
    """Load a checkpoint into ``model``; strict except for the class predictors.

    Every tensor must match by name and shape, except ``head.cls_preds.*``:

    - the checkpoint records its class names (this project's) and ``names`` (the model's classes, in order)
      differ from them: each class known to both keeps its predictor row from the checkpoint, by name, and a
      class the checkpoint did not know keeps the model's fresh initialisation (a class list that grew, or was
      reordered: a warm start from the production model);
    - otherwise, when the class count differs (the authors' COCO files into a model of other classes): the
      class predictors keep the model's fresh initialisation (fine-tuning to new classes).

    Raises:
        CheckpointError: missing/unexpected tensors or a shape mismatch outside the class predictors
            (e.g. yolox-nano weights into yolox-s); the message lists the first offending names.
    """
    ckpt = torch_load(path)
    state = _state_dict_of(ckpt, path, key)
    own = model.state_dict()
    old_names = class_names_of(ckpt)
    by_name = names is not None and old_names is not None and list(old_names) != list(names) \
        and len(old_names) == int(state.get(CLASS_PREDICTOR_PREFIX + "0.weight", torch.empty(0)).shape[0])
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
    if by_name:
        mapped, added = _class_rows(state, own, list(old_names or []), list(names or []))
        to_load = {**{k: v for k, v in state.items() if k not in mapped}, **mapped}
        model.load_state_dict(to_load)
        kept = len(names or []) - len(added)
        report = LoadReport(str(path), len(to_load), len(own), [], kept_classes=kept, added_classes=added)
    else:
        to_load = {k: v for k, v in state.items() if k not in mismatched}
        model.load_state_dict(to_load, strict=not mismatched)
        report = LoadReport(str(path), len(to_load), len(own), mismatched)
    log.info("%s", report)
    return report
