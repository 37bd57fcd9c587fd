"""Training checkpoints: everything needed to continue a run exactly, written atomically.

Layout (a dict saved with ``torch.save``, read back with ``weights_only=True``):
``model`` (the weights to evaluate: the EMA when enabled, as the authors' checkpoints), ``model_raw``
(the raw training weights), ``ema_updates``, ``optimizer``, ``scaler``, ``epoch`` (epochs completed),
``iteration`` (optimizer steps done), ``phase`` (``{"mosaic": bool, "l1": bool}``), ``rng``
(torch, numpy, python and CUDA states), ``loader`` (the data loader's seeds:
:func:`yolox.data.dataset.loader_seeds`), ``params`` (the params the run was trained with, as plain
data), ``names`` (class names), ``model_name``, ``input_size``, ``world_size``, ``history`` (per-epoch
metrics) and ``mlflow_run_id`` (the MLflow run the metrics went to, or None). A checkpoint written
when the run was interrupted (SIGINT, SIGTERM) in the middle of an epoch also has ``epoch_step`` (the
optimizer steps of epoch ``epoch + 1`` already done) and ``epoch_sums`` (their loss sums), from which a
resumed run continues that epoch exactly (:mod:`yolox.train.trainer`).

Next to ``last.pth``, ``run.json`` holds the run's tracking state: ``{"mlflow_run_id": ...,
"reported_epoch": N}`` (the last epoch whose metrics the epoch callback took). It is written when the
run starts, so that a run killed before its first checkpoint still continues its MLflow run; see
:func:`read_run_id`.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolox.errors import CheckpointError, ConfigError, DiskFullError
from yolox.models.checkpoint import torch_load


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temp file in the same folder, fsync, then rename, so a
    crash, a second Ctrl-C or a full disk during the write leaves the previous checkpoint intact (and
    no temp file behind).

    Raises:
        DiskFullError: no space left on the device (names the file, about how much it needs and how
            much is free).
        CheckpointError: the folder cannot be written (a file in its place, no permission).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        interrupt = _interrupt_in(err)
        if interrupt is not None and interrupt is not err:   # e.g. a second Ctrl-C that torch wrapped
            raise interrupt from None
        if isinstance(err, (OSError, RuntimeError)):
            raise _write_error(err, state, path) from None
        raise
    return path


def _interrupt_in(err: BaseException) -> BaseException | None:
    """The first exception in ``err``'s chain that is not an ``Exception`` (KeyboardInterrupt, Interrupted)."""
    chain: BaseException | None = err
    while chain is not None and isinstance(chain, Exception):
        chain = chain.__cause__ or chain.__context__
    return chain


def _write_error(err: BaseException, state: dict[str, Any], path: Path) -> CheckpointError:
    """The error to report for a failed checkpoint write (after its temp file was removed).

    torch.save reports a failed write as ``RuntimeError: [enforce fail at inline_container.cc] unexpected
    pos`` with the OSError (ENOSPC) only as its context; either way the chain is searched for it. A
    torch write error without one counts as a full disk when the state does not fit in the free space.
    """
    need, free = state_nbytes(state), shutil.disk_usage(path.parent).free
    chain: BaseException | None = err
    while chain is not None and not (isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EDQUOT)):
        chain = chain.__cause__ or chain.__context__
    if chain is not None or (isinstance(err, RuntimeError) and need > free):
        kept = "the previous checkpoint is kept" if path.is_file() else "no checkpoint was written"
        return DiskFullError(f"no space left for checkpoint {path}: it needs about {_mb(need)}, "
                             f"{_mb(free)} free on that disk ({kept}); free some space or set "
                             "train.output_dir (--out) to another disk, then resume with --resume")
    return CheckpointError(f"cannot write checkpoint {path}: {type(err).__name__}: {str(err)[:300]}")


def state_nbytes(state: Any) -> int:
    """About how many bytes ``torch.save(state)`` writes: the tensors' bytes (plus 1 KiB for the rest)."""
    seen: set[int] = set()

    def walk(x: Any) -> int:
        if isinstance(x, torch.Tensor):
            key = x.untyped_storage().data_ptr()
            if key in seen:
                return 0
            seen.add(key)
            return x.untyped_storage().nbytes()
        if isinstance(x, dict):
            return sum(walk(v) for v in x.values())
        if isinstance(x, (list, tuple)):
            return sum(walk(v) for v in x)
        return 0

    return walk(state) + 1024


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def check_output_dir(output_dir: str | Path) -> Path:
    """Create ``output_dir`` if needed and check that files can be written in it (before any training).

    Raises:
        ConfigError: a file is in its place, or it cannot be created or written (names the folder).
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"train.output_dir (--out) {out} is a file, not a folder: choose another path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ConfigError(f"train.output_dir (--out) {out} is not writable ({err.strerror or err}): "
                          "choose another path or fix its permissions") from None
    return out


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (:func:`yolox.models.checkpoint.torch_load`: weights only).

    Raises:
        CheckpointError: missing, unreadable, or not a training checkpoint of this project.
    """
    path = Path(path)
    state = torch_load(path)     # a missing, corrupt or unsafe file: a CheckpointError saying which
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a resumable training checkpoint (a {type(state).__name__}, not a dict)")
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
