"""TensorRT engines from the exported ONNX, on machines with a CUDA GPU and TensorRT 10 installed
(``pip install 'yolox[tensorrt]'``); selected at run time: elsewhere :func:`tensorrt_unavailable_reason` says
why not and callers report "skipped: <reason>" and go on.

Correct by construction, in the way of TensorRT's own Python samples:

- :func:`plan_profile`: the one optimisation profile of an engine covers every batch the code feeds it
  (:func:`profile_needs`: ``eval.batch_size``, ``serve.batch_size``, ``export.benchmark_batch``, batch 1 for
  the latency figures, ``export.tensorrt_max_batch``) and every input side (``export.tensorrt_sizes``, which
  must hold the model's own); :class:`TensorRTBackend` still splits a larger batch into runs the profile
  takes.
- every TensorRT call whose result says whether it worked is checked (a ``False``, a ``None`` or a negative
  index raises :class:`~yolox.errors.ExportError` naming the call, the file and TensorRT's last errors);
- TensorRT's log goes to the ``yolox.export`` logger (:func:`routed_logger`);
- an INT8 engine keeps in FP16 what the ONNX Runtime INT8 model keeps float (``keep_float``);
- output buffers are owned by the backend and sized from the engine's own tensor shapes after
  ``set_input_shape``; the input is copied, run and read back on one CUDA stream;
- the INT8 calibrator hands TensorRT only full batches of real letterboxed images (:func:`calibration_set`: a
  partial last batch is padded by repeating images from the start of the set), and its cache is reused only
  for the same model and images;
- beside each engine, ``<engine>.json`` (:func:`build_config_path`) records how and where it was built
  (precision, profile, TensorRT and CUDA versions, GPU name, the engine's and the ONNX model's SHA-256): an
  engine only runs where it was built, so :class:`TensorRTBackend` refuses one built on another GPU or
  TensorRT version, or whose bytes or ONNX model are not the recorded ones (:func:`check_build_config`).

When an engine's AP differs from ONNX Runtime's, Polygraphy (in the ``tensorrt`` extra) finds the layer:
``polygraphy run model.onnx --trt --fp16 --onnxrt --trt-outputs mark all --onnx-outputs mark all``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolox.config import PipelineParams
from yolox.errors import ConfigError, ExportError
from yolox.export.quantize import LetterboxCalibrationReader, float_tail
from yolox.files import regular_file_problem, sha256_file, write_bytes, write_json
from yolox.inference import OnnxBackend

log = logging.getLogger("yolox.export")

MIN_TENSORRT = 10
"""The TensorRT major version this module is written against (the TensorRT 10 Python API)."""
MAX_ENGINE_BYTES = 4 << 30
"""Largest engine or ONNX file read (bytes)."""
MAX_BUILD_CONFIG_BYTES = 1 << 20
"""Largest build config JSON read (bytes)."""
CALIBRATION_MAX_BATCH = 8
"""Largest INT8 calibration batch (images)."""
BUILD_CONFIG_FORMAT = "yolox-tensorrt-build/1"
_CALIB_MAGIC = b"yolox-calibration-cache/1 "
_TRACE = 5   # below DEBUG: TensorRT's VERBOSE messages (thousands per build) stay out of a DEBUG log


def tensorrt_unavailable_reason() -> str | None:
    """None when an engine can be built here, else why not (no CUDA device, TensorRT not installed or older
    than TensorRT 10)."""
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    try:
        import tensorrt
    except ImportError:
        return "the tensorrt package is not installed (pip install 'yolox[tensorrt]')"
    return _version_problem(tensorrt)


def _version_problem(trt: Any) -> str | None:
    version = str(getattr(trt, "__version__", "0"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_TENSORRT:
        return (f"tensorrt {version} is installed; this code needs TensorRT {MIN_TENSORRT} "
                "(pip install 'yolox[tensorrt]')")
    return None


def _tensorrt() -> Any:
    """The ``tensorrt`` module. Raises ExportError when it is missing or older than TensorRT 10."""
    try:
        import tensorrt as trt
    except ImportError:
        raise ExportError("the tensorrt package is not installed (pip install 'yolox[tensorrt]')") from None
    problem = _version_problem(trt)
    if problem:
        raise ExportError(problem)
    return trt


# --- what the engine must take: the optimisation profile ----------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """An engine's optimisation profile: ``batch`` (min, opt, max) images and ``side`` (min, opt, max) pixels
    of the square letterboxed input; ``needs``: who feeds which batch (what the plan was made from)."""

    batch: tuple[int, int, int]
    side: tuple[int, int, int]
    needs: dict[str, int] = field(default_factory=dict)

    def shapes(self) -> tuple[tuple[int, int, int, int], ...]:
        """The (min, opt, max) input shapes ``(B, 3, S, S)`` of ``IOptimizationProfile.set_shape``."""
        return tuple((b, 3, s, s) for b, s in zip(self.batch, self.side, strict=True))

    def chunks(self, batch: int) -> list[tuple[int, int, int]]:
        """How a batch of ``batch`` images is run: ``(start, stop, run batch)`` per run, each at most the
        profile's largest batch; a run below its smallest batch (a graph exported with a fixed batch) is
        padded to it by repeating the run's last image (the extra outputs are dropped)."""
        lo, _, hi = self.batch
        return [(start, min(start + hi, batch), max(min(start + hi, batch) - start, lo))
                for start in range(0, batch, hi)]

    def side_problem(self, height: int, width: int) -> str | None:
        """Why a ``height`` x ``width`` input (pixels) is outside the profile, or None."""
        lo, _, hi = self.side
        if lo <= height <= hi and lo <= width <= hi:
            return None
        what = f"{lo} px" if lo == hi else f"{lo}..{hi} px"
        return (f"takes inputs of {what} only, not {height}x{width}: rebuild it with export.tensorrt_sizes "
                "covering that side, or evaluate at the engine's size")

    def to_json(self) -> dict[str, Any]:
        return {"batch": list(self.batch), "side": list(self.side), "needs": dict(self.needs)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Profile:
        """Raises ValueError, KeyError or TypeError for a malformed record."""
        batch, side = tuple(int(v) for v in raw["batch"]), tuple(int(v) for v in raw["side"])
        if len(batch) != 3 or len(side) != 3 or not (1 <= batch[0] <= batch[1] <= batch[2]) \
                or not (1 <= side[0] <= side[1] <= side[2]):
            raise ValueError(f"profile batch {batch}, side {side}: not (min <= opt <= max), all >= 1")
        return cls((batch[0], batch[1], batch[2]), (side[0], side[1], side[2]),
                   {str(k): int(v) for k, v in dict(raw.get("needs", {})).items()})


def profile_needs(params: PipelineParams) -> dict[str, int]:
    """The batches (images) the code feeds an engine built with ``params``, by who feeds them: batch 1
    (latency: ``yolox benchmark``, the gate's ``max_p90_ms``), ``eval.batch_size`` (AP of the engine),
    ``serve.batch_size`` (serving), ``export.benchmark_batch`` (throughput) and
    ``export.tensorrt_max_batch``."""
    ep = params.export
    return {"latency": 1, "eval.batch_size": params.eval.batch_size,
            "serve.batch_size": params.serve.batch_size, "export.benchmark_batch": ep.benchmark_batch,
            "export.tensorrt_max_batch": ep.tensorrt_max_batch}


def plan_profile(input_size: int, needs: Mapping[str, int], sizes: tuple[int, int] | None = None,
                 input_shape: Sequence[int] = (-1, 3, -1, -1), opt_batch: int | None = None) -> Profile:
    """The optimisation profile that takes every batch in ``needs`` and the model's input side.

    Args:
        input_size: the model's input side (pixels): the profile's optimum side, and its only side unless
            ``sizes`` is given and the graph's height and width are dynamic.
        needs: batches (images) the callers feed, by name (:func:`profile_needs`).
        sizes: ``export.tensorrt_sizes``, (min, max) side (pixels) for a dynamic-H/W graph; must hold
            ``input_size``. Ignored for a graph of fixed side.
        input_shape: the ONNX input's shape, -1 (or any value < 1) where dynamic.
        opt_batch: the batch TensorRT tunes its kernels for (default: the largest need: full batches are where
            throughput counts); clamped into the profile.

    Returns:
        :class:`Profile`: batch (1, opt, max need) for a dynamic batch, (n, n, n) for a graph of fixed batch n
        (:meth:`Profile.chunks` then runs any batch in runs of n); side (min, ``input_size``, max).

    Raises:
        ConfigError: a need below 1; ``sizes`` reversed or without ``input_size``. ExportError: a graph whose
        fixed side is not ``input_size``.
    """
    bad = {k: v for k, v in needs.items() if int(v) < 1}
    if bad:
        raise ConfigError(f"TensorRT profile: batches must be >= 1, got {bad}")
    dims = [int(d) if isinstance(d, (int, np.integer)) else -1 for d in input_shape]
    if len(dims) != 4:
        raise ExportError(f"TensorRT profile: the model's input has shape {tuple(input_shape)}, not "
                          "(B, 3, H, W)")
    if dims[0] >= 1:
        batch = (dims[0],) * 3
    else:
        top = max([int(v) for v in needs.values()] or [1])
        opt = min(max(int(opt_batch or top), 1), top)
        batch = (1, opt, top)
    if dims[2] >= 1 or dims[3] >= 1:
        fixed = max(dims[2], dims[3])
        if fixed != input_size or (dims[2] >= 1 and dims[3] >= 1 and dims[2] != dims[3]):
            raise ExportError(f"TensorRT profile: the graph takes {dims[2]}x{dims[3]} px inputs, not the "
                              f"model's input size {input_size}: export the ONNX at {input_size}")
        side = (fixed,) * 3
    elif sizes is not None:
        lo, hi = int(sizes[0]), int(sizes[1])
        if not lo <= input_size <= hi:
            raise ConfigError(f"export.tensorrt_sizes ({lo}, {hi}) must hold the model's input size "
                              f"{input_size}, which evaluation and serving feed the engine")
        side = (lo, input_size, hi)
    else:
        side = (input_size,) * 3
    return Profile(batch, side, {str(k): int(v) for k, v in needs.items()})


# --- TensorRT's log, and the status of its calls ------------------------------------------------------------


_ROUTED: list[tuple[Any, Any]] = []   # [(tensorrt module, its logger)]: one logger per process


def routed_logger(trt: Any) -> Any:
    """The process's ``trt.ILogger`` (made once: TensorRT keeps the first logger it is given for the life of
    the process, as its samples' module-level ``TRT_LOGGER``), which sends TensorRT's messages to the
    ``yolox.export`` logger: INTERNAL_ERROR as CRITICAL, ERROR as ERROR, WARNING as WARNING, INFO as DEBUG,
    VERBOSE below DEBUG (level 5). It keeps the last errors (``.errors``, cleared before each build, load and
    run) for the message of the :class:`ExportError` a failed call raises."""
    if _ROUTED and _ROUTED[0][0] is trt:
        return _ROUTED[0][1]
    sev = trt.ILogger.Severity
    levels = {sev.INTERNAL_ERROR: logging.CRITICAL, sev.ERROR: logging.ERROR, sev.WARNING: logging.WARNING,
              sev.INFO: logging.DEBUG, sev.VERBOSE: _TRACE}

    class RoutedLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: deque[str] = deque(maxlen=5)

        def log(self, severity: Any, msg: str) -> None:
            level = levels.get(severity, logging.WARNING)
            if level >= logging.ERROR:
                self.errors.append(str(msg))
            if log.isEnabledFor(level):
                log.log(level, "TensorRT: %s", msg)

    _ROUTED[:] = [(trt, RoutedLogger())]
    return _ROUTED[0][1]


def _errors(logger: Any) -> str:
    errors = list(getattr(logger, "errors", ()))
    return f" (TensorRT: {'; '.join(errors)})" if errors else ""


def _check(ok: Any, call: str, where: str | Path, logger: Any = None) -> None:
    """Raise ExportError naming ``call`` when its status ``ok`` is not True."""
    if ok is not True:
        raise ExportError(f"{where}: TensorRT {call} failed{_errors(logger)}")


def _require(obj: Any, call: str, where: str | Path, logger: Any = None, hint: str = "") -> Any:
    """``obj``, or ExportError naming ``call`` when TensorRT returned None."""
    if obj is None:
        raise ExportError(f"{where}: TensorRT {call} returned nothing{_errors(logger)}{hint}")
    return obj


def _read(path: Path, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``. Raises ExportError naming it otherwise."""
    problem = regular_file_problem(path, max_bytes)
    if problem:
        raise ExportError(f"{what} {path}: {problem}")
    return path.read_bytes()


# --- where an engine was built ------------------------------------------------------------------------------


def gpu_facts() -> dict[str, str]:
    """What an engine is tied to on this machine: ``tensorrt`` (version), ``cuda`` (the CUDA runtime torch
    runs the buffers with), ``gpu`` (the current device's name) and ``compute_capability``."""
    import tensorrt as trt

    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return {"tensorrt": str(trt.__version__), "cuda": str(torch.version.cuda or "unknown"),
            "gpu": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}


def build_config_path(engine_path: str | Path) -> Path:
    """The build config beside an engine: ``<engine file name>.json`` (``model.engine`` ->
    ``model.engine.json``)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_build_config(engine_path: str | Path) -> dict[str, Any]:
    """The build config written beside ``engine_path`` by :func:`build_engine`, checked against the engine's
    bytes.

    Raises:
        ExportError: no config (the engine was not built by :func:`build_engine`, or its build was
            interrupted), not the config of these engine bytes (the engine was replaced), or malformed.
    """
    problem = regular_file_problem(engine_path, MAX_ENGINE_BYTES)
    if problem:
        raise ExportError(f"TensorRT engine {engine_path}: {problem}")
    path = build_config_path(engine_path)
    problem = regular_file_problem(path, MAX_BUILD_CONFIG_BYTES)
    if problem:
        raise ExportError(f"{engine_path}: its build config {path} is {problem}: rebuild the engine with "
                          "yolox export --set export.tensorrt=true")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        Profile.from_json(config["profile"])
        fields = {k: str(config[k]) for k in ("format", "engine_sha256", "onnx_sha256", "tensorrt", "gpu")}
    except (ValueError, KeyError, TypeError) as err:
        raise ExportError(f"{path}: not a TensorRT build config of this project ({type(err).__name__}: {err})"
                          ) from None
    if fields["format"] != BUILD_CONFIG_FORMAT:
        raise ExportError(f"{path}: format {fields['format']!r}, expected {BUILD_CONFIG_FORMAT!r}")
    if sha256_file(engine_path) != fields["engine_sha256"]:
        raise ExportError(f"{engine_path}: not the engine {path} describes (its SHA-256 differs): rebuild it")
    return config


def check_build_config(engine_path: str | Path, here: Mapping[str, str] | None = None) -> dict[str, Any]:
    """:func:`read_build_config`, and the engine was built on this GPU model with this TensorRT version
    (``here``: default :func:`gpu_facts`). Returns the config.

    Raises:
        ExportError: see :func:`read_build_config`; built on another GPU or TensorRT version (names both).
    """
    config = read_build_config(engine_path)
    here = dict(here if here is not None else gpu_facts())
    if (config["gpu"], config["tensorrt"]) != (here.get("gpu"), here.get("tensorrt")):
        raise ExportError(f"{engine_path} was built on {config['gpu']} with TensorRT {config['tensorrt']}; "
                          f"this machine has {here.get('gpu')} with TensorRT {here.get('tensorrt')}: an "
                          "engine only runs where it was built, rebuild it here (yolox export --set "
                          "export.tensorrt=true)")
    return config


def build_config_tags(config: Mapping[str, Any]) -> dict[str, str]:
    """A build config as flat string tags (MLflow run and version tags): ``tensorrt_precision``,
    ``tensorrt_version``, ``tensorrt_cuda``, ``tensorrt_gpu``, ``tensorrt_compute_capability``,
    ``tensorrt_batch`` and ``tensorrt_side`` (``min/opt/max``) and ``tensorrt_engine_sha256``."""
    profile = Profile.from_json(config["profile"])
    return {"tensorrt_precision": str(config["precision"]), "tensorrt_version": str(config["tensorrt"]),
            "tensorrt_cuda": str(config["cuda"]), "tensorrt_gpu": str(config["gpu"]),
            "tensorrt_compute_capability": str(config.get("compute_capability", "unknown")),
            "tensorrt_batch": "/".join(map(str, profile.batch)),
            "tensorrt_side": "/".join(map(str, profile.side)),
            "tensorrt_engine_sha256": str(config["engine_sha256"])}


# --- INT8 calibration ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationSet:
    """Full calibration batches ``(batch_size, 3, S, S)`` float32 of letterboxed images; ``padded``: how many
    slots of the last batch repeat images from the start of the set to fill it."""

    batches: list[np.ndarray]
    num_images: int
    padded: int

    @property
    def batch_size(self) -> int:
        return int(self.batches[0].shape[0])

    def digest(self) -> str:
        """SHA-256 of the batches' bytes and shapes (what the calibration saw)."""
        h = hashlib.sha256()
        for b in self.batches:
            h.update(repr(b.shape).encode())
            h.update(np.ascontiguousarray(b).tobytes())
        return h.hexdigest()


def calibration_set(images: Sequence[str | Path], size: int, batch_size: int) -> CalibrationSet:
    """The calibration images letterboxed to ``size`` (the one letterbox) in full batches of ``batch_size``:
    unreadable images are reported and skipped; a partial last batch is padded by repeating images from the
    start of the set (so TensorRT never reads an unfilled slot, and every slot is a real image; with fewer
    images than ``batch_size`` they are repeated in order).

    Raises:
        ExportError: none of the images can be read. ValueError: ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"calibration batch size {batch_size} < 1")
    frames = np.concatenate(LetterboxCalibrationReader(images, size, batch_size=1).batches)
    n = len(frames)
    total = -(-n // batch_size) * batch_size
    order = np.arange(total) % n
    batches = [np.ascontiguousarray(frames[order[i:i + batch_size]]) for i in range(0, total, batch_size)]
    return CalibrationSet(batches, n, total - n)


def _entropy_calibrator(trt: Any, calib: CalibrationSet, input_name: str, cache: Path, key: str,
                        device: str | torch.device = "cuda") -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``calib``'s full batches, copied one at a time into one buffer on
    ``device`` that it owns; its calibration cache (``cache``, written atomically) is read back only when it
    was written for the same ``key`` (the ONNX model and the calibration batches)."""
    shape = calib.batches[0].shape
    header = _CALIB_MAGIC + key.encode() + b"\n"
    on_cuda = torch.device(device).type == "cuda"

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.device = torch.empty(shape, dtype=torch.float32, device=device)
            self.served: list[int] = []   # the index of each batch handed to TensorRT

        def get_batch_size(self) -> int:
            return int(shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            # an exception must not cross into TensorRT's C++: log it, end the calibration (the build fails)
            try:
                if list(names) != [input_name]:
                    log.error("INT8 calibration: TensorRT asked for inputs %s, the model has %r", names,
                              input_name)
                    return None
                if self.index >= len(calib.batches):
                    return None
                batch = calib.batches[self.index]
                if batch.shape != shape:
                    log.error("INT8 calibration: batch %d has shape %s, the buffer %s", self.index,
                              batch.shape, shape)
                    return None
                self.device.copy_(torch.from_numpy(batch))
                if on_cuda:
                    # filled before TensorRT reads it
                    torch.cuda.current_stream(self.device.device).synchronize()
                self.served.append(self.index)
                self.index += 1
                return [int(self.device.data_ptr())]
            except Exception:   # see above
                log.exception("INT8 calibration: batch %d failed", self.index)
                return None

        def read_calibration_cache(self) -> bytes | None:
            try:
                if regular_file_problem(cache, MAX_ENGINE_BYTES):   # none yet (or not a file): calibrate
                    return None
                data = cache.read_bytes()
                if not data.startswith(header):
                    log.info("INT8 calibration cache %s is for another model or other images: calibrating "
                             "anew", cache)
                    return None
                log.info("INT8 calibration cache %s reused (same model and images)", cache)
                return data[len(header):]
            except Exception:   # see get_batch
                log.exception("INT8 calibration cache %s not read", cache)
                return None

        def write_calibration_cache(self, data: Any) -> None:
            try:
                write_bytes(cache, header + bytes(data))
            except Exception:   # see get_batch
                log.exception("INT8 calibration cache %s not written", cache)

    return EntropyCalibrator()


# --- the build ----------------------------------------------------------------------------------------------


def build_engine(onnx_path: str | Path, engine_path: str | Path, input_size: int,
                 max_batch: int | None = None, precision: str = "fp16",
                 calibration_images: Sequence[str | Path] = (), sizes: tuple[int, int] | None = None,
                 timing_cache: str | Path | None = None, workspace_gib: float = 2.0,
                 needs: Mapping[str, int] | None = None, keep_float: Sequence[str] = (),
                 device: str = "cuda") -> Path | None:
    """Build a TensorRT engine from an exported ONNX model, and its build config beside it.

    Args:
        input_size: the model's input side (pixels) (:func:`plan_profile`).
        max_batch: a batch (images) the engine must take, beside ``needs``.
        needs: the batches the callers will feed, by who feeds them (:func:`profile_needs`); the profile takes
            batch 1 up to the largest of them and ``max_batch`` (:func:`plan_profile`).
        precision: ``fp16`` or ``int8`` (INT8 calibrated with an entropy calibrator on ``calibration_images``,
            letterboxed as for the ONNX Runtime INT8 model, in batches of at most 8 and at most the image
            count; FP16 allowed too for the layers INT8 does not cover).
        sizes: ``export.tensorrt_sizes`` (pixels), for a dynamic-H/W graph.
        timing_cache: file of the builder's timing cache: loaded when present (one TensorRT does not take,
            e.g. of another GPU, is replaced by a new one), saved after the build.
        workspace_gib: the builder's workspace memory pool (GiB).
        keep_float: INT8 only: module names whose layers stay in FP16 (FP32 without fast FP16), as
            ``export.int8_keep_float`` keeps them float in the ONNX Runtime INT8 model, together with
            everything after the head's last convolutions (:func:`yolox.export.quantize.float_tail`); a
            preference (``PREFER_PRECISION_CONSTRAINTS``), counted in the build config (``float_layers``).
        device: where the calibration buffer lives: ``cuda`` (``cpu`` serves only a stand-in of TensorRT in
            tests).

    Written atomically (:func:`yolox.files.write_bytes`), in this order: the INT8 calibration cache (``<engine
    stem>.calib-cache``, by TensorRT during the build), the engine (``engine_path``), the timing cache, then
    the build config (:func:`build_config_path`: precision, profile, TensorRT and CUDA versions, GPU, SHA-256
    of the engine and the ONNX model, calibration). An interrupted build leaves each previous file intact; an
    engine without its matching build config is refused by :class:`TensorRTBackend`.

    Returns:
        The engine path, or None (logged) when TensorRT or a GPU is not available.

    Raises:
        ExportError: INT8 without calibration images, an unknown precision; TensorRT cannot parse the model or
            a TensorRT call fails (names the call and TensorRT's errors). ConfigError: see
            :func:`plan_profile`.
    """
    if precision not in ("fp16", "int8"):
        raise ExportError(f"TensorRT precision {precision!r}: choose fp16 or int8")
    if precision == "int8" and not calibration_images:
        raise ExportError("TensorRT INT8 needs calibration images (the prepared train images)")
    reason = tensorrt_unavailable_reason()
    if reason:
        log.warning("TensorRT engine skipped: %s", reason)
        return None
    trt = _tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    model_bytes = _read(onnx_path, "ONNX model", MAX_ENGINE_BYTES)
    logger = routed_logger(trt)
    logger.errors.clear()
    builder = _require(trt.Builder(logger), "Builder", onnx_path, logger)
    network = _require(builder.create_network(0), "create_network", onnx_path, logger)
    parser = _require(trt.OnnxParser(network, logger), "OnnxParser", onnx_path, logger)
    if not parser.parse(model_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors or 'no reason given'}"
                          f"{_errors(logger)}")
    if network.num_inputs != 1:
        raise ExportError(f"{onnx_path}: {network.num_inputs} inputs; a YOLOX export has one (images)")
    inp = network.get_input(0)
    all_needs = {**({"max_batch": int(max_batch)} if max_batch is not None else {}), **(needs or {})}
    profile = plan_profile(input_size, all_needs or {"max_batch": 8}, sizes, tuple(inp.shape))

    config = _require(builder.create_builder_config(), "create_builder_config", onnx_path, logger)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    cache = None
    if timing_cache:
        timing_cache = Path(timing_cache)
        old = _read(timing_cache, "TensorRT timing cache", MAX_ENGINE_BYTES) if timing_cache.exists() else b""
        cache = _require(config.create_timing_cache(old), "create_timing_cache", timing_cache, logger)
        if old and config.set_timing_cache(cache, ignore_mismatch=False) is not True:
            log.warning("TensorRT timing cache %s was not taken (another GPU or TensorRT version?): starting "
                        "a new one%s", timing_cache, _errors(logger))
            cache = _require(config.create_timing_cache(b""), "create_timing_cache", timing_cache, logger)
            old = b""
        if not old:
            _check(config.set_timing_cache(cache, ignore_mismatch=False), "set_timing_cache", timing_cache,
                   logger)
    flags = []
    if getattr(builder, "platform_has_fast_fp16", True):
        config.set_flag(trt.BuilderFlag.FP16)
        flags.append("FP16")
    else:
        log.warning("TensorRT: this GPU has no fast FP16: the engine runs FP32 kernels where INT8 does not "
                    "apply")
    trt_profile = _require(builder.create_optimization_profile(), "create_optimization_profile", onnx_path,
                           logger)
    trt_profile.set_shape(inp.name, *profile.shapes())
    if config.add_optimization_profile(trt_profile) < 0:
        raise ExportError(f"{onnx_path}: TensorRT add_optimization_profile failed for {inp.name} batch "
                          f"{profile.batch}, side {profile.side}{_errors(logger)}")
    calibration: dict[str, Any] | None = None
    if precision == "int8":
        fixed = profile.batch[0] == profile.batch[2]
        calib = calibration_set(calibration_images, profile.side[1], profile.batch[2] if fixed else
                                max(1, min(CALIBRATION_MAX_BATCH, profile.batch[1], len(calibration_images))))
        key = hashlib.sha256((hashlib.sha256(model_bytes).hexdigest() + calib.digest()).encode()).hexdigest()
        cache_file = engine_path.with_suffix(".calib-cache")
        config.set_flag(trt.BuilderFlag.INT8)
        flags.append("INT8")
        calibrator = _entropy_calibrator(trt, calib, inp.name, cache_file, key, device)
        config.int8_calibrator = calibrator
        calib_profile = _require(builder.create_optimization_profile(), "create_optimization_profile",
                                 onnx_path, logger)
        shape = tuple(calib.batches[0].shape)
        calib_profile.set_shape(inp.name, shape, shape, shape)
        _check(config.set_calibration_profile(calib_profile), "set_calibration_profile", onnx_path, logger)
        calibration = {"images": calib.num_images, "batch": calib.batch_size, "batches": len(calib.batches),
                       "padded": calib.padded, "cache": cache_file.name, "keep_float": list(keep_float),
                       "float_layers": 0}
        if keep_float:
            kept = _keep_float(trt, network, model_bytes, keep_float, "FP16" in flags)
            calibration["float_layers"] = len(kept)
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
            flags.append("PREFER_PRECISION_CONSTRAINTS")
    log.info("TensorRT %s build of %s: batch %s, side %s (%s) ...", precision, onnx_path.name,
             "/".join(map(str, profile.batch)), "/".join(map(str, profile.side)),
             ", ".join(f"{k} {v}" for k, v in profile.needs.items()))
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path}{_errors(logger)}")
    engine_bytes = bytes(serialized)
    write_bytes(engine_path, engine_bytes)
    if cache is not None:
        write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    record = {"format": BUILD_CONFIG_FORMAT, "engine": engine_path.name,
              "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(), "onnx": onnx_path.name,
              "onnx_sha256": hashlib.sha256(model_bytes).hexdigest(), "precision": precision, "flags": flags,
              "input": str(inp.name), "profile": profile.to_json(), "calibration": calibration, **gpu_facts(),
              "workspace_gib": workspace_gib, "build_seconds": round(time.monotonic() - started, 1),
              "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(build_config_path(engine_path), record)
    log.info("TensorRT %s engine written to %s (batch %s, side %s, %.0f s; built on %s)", precision,
             engine_path, "/".join(map(str, profile.batch)), "/".join(map(str, profile.side)),
             record["build_seconds"], record["gpu"])
    return engine_path


def _keep_float(trt: Any, network: Any, model_bytes: bytes, keep_float: Sequence[str], half: bool
                ) -> list[str]:
    """Ask for FP16 (``half``, else FP32) compute and outputs in the layers of the ONNX nodes that the ONNX
    Runtime INT8 model keeps float (:func:`yolox.export.quantize.float_tail`: the modules ``keep_float`` and
    everything after the head's last convolutions), and in any layer of those modules the parser added; layers
    with non-float outputs (shapes, indices) are left alone. Returns the names of the layers constrained."""
    import onnx

    nodes = set(float_tail(onnx.load_from_string(model_bytes), keep_float))
    scopes = ["/" + k.strip(".").replace(".", "/") + "/" for k in keep_float]
    dtype = trt.DataType.HALF if half else trt.DataType.FLOAT
    floating = (trt.DataType.FLOAT, trt.DataType.HALF)
    kept = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name not in nodes and not any(s in layer.name for s in scopes):
            continue
        if not all(layer.get_output(j).dtype in floating for j in range(layer.num_outputs)):
            continue
        layer.precision = dtype
        for j in range(layer.num_outputs):
            layer.set_output_type(j, dtype)
        kept.append(layer.name)
    if not kept:
        log.warning("TensorRT INT8: no layer of %s found in the network: all of it may run in INT8",
                    ", ".join(keep_float))
    return kept


# --- running an engine --------------------------------------------------------------------------------------

_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
                 "UINT8": torch.uint8, "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool}


def _torch_dtype(dtype: Any, name: str, where: Path) -> torch.dtype:
    key = getattr(dtype, "name", str(dtype)).split(".")[-1]
    if key not in _TORCH_DTYPES:
        raise ExportError(f"{where}: tensor {name!r} has TensorRT type {key}, which this backend does not "
                          "read")
    return _TORCH_DTYPES[key]


class TensorRTBackend:
    """A TensorRT engine built by :func:`build_engine` from an exported model, run on the GPU. ``variant``,
    ``meta``, ``strides`` and ``num_classes`` come from that ONNX model's metadata (``onnx_path``);
    :meth:`run` returns the outputs in the ONNX model's order, as :meth:`yolox.inference.OnnxBackend.run`.

    At load: the build config (:func:`check_build_config`: same GPU model and TensorRT version, the engine's
    bytes and the ONNX model's are the recorded ones), the engine's input and output tensors (the ONNX
    model's). ``device``: ``cuda`` (``cpu`` serves only a stand-in of TensorRT in tests).

    Raises:
        ExportError: TensorRT or a GPU is not available; the engine cannot be loaded, was built elsewhere or
            from another ONNX model, or does not have the ONNX model's tensors.
    """

    def __init__(self, engine_path: str | Path, onnx_path: str | Path, device: str = "cuda") -> None:
        reason = tensorrt_unavailable_reason()
        if reason:
            raise ExportError(f"cannot run {engine_path}: {reason}")
        trt = _tensorrt()

        self.path = Path(engine_path)
        self.build = check_build_config(self.path)
        problem = regular_file_problem(onnx_path, MAX_ENGINE_BYTES)
        if problem:
            raise ExportError(f"ONNX model {onnx_path} of {self.path}: {problem}")
        if sha256_file(onnx_path) != self.build["onnx_sha256"]:
            raise ExportError(f"{self.path} was built from another model than {onnx_path} (its SHA-256 "
                              f"differs from the build config's {self.build['onnx']}): rebuild the engine "
                              "from it")
        self.profile = Profile.from_json(self.build["profile"])
        ref = OnnxBackend(onnx_path)  # the metadata and output order (CPU session, not used to run)
        self.meta, self.variant, self.strides = ref.meta, ref.variant, ref.strides
        self.num_classes, self.output_names, self.fixed_batch = ref.num_classes, ref.output_names, None
        self._warned = ref._warned
        self.baked_thresholds = ref.baked_thresholds
        self.input_name = ref.input_name
        self._logger = routed_logger(trt)
        self._logger.errors.clear()
        self.runtime = _require(trt.Runtime(self._logger), "Runtime", self.path, self._logger)
        self.engine = _require(self.runtime.deserialize_cuda_engine(_read(self.path, "TensorRT engine",
                                                                          MAX_ENGINE_BYTES)),
                               "deserialize_cuda_engine", self.path, self._logger,
                               ": rebuild the engine with this TensorRT version on this GPU")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [self.input_name] or sorted(outputs) != sorted(self.output_names):
            raise ExportError(f"{self.path}: the engine's inputs {inputs} and outputs {outputs} are not the "
                              f"ONNX model's ({[self.input_name]}, {self.output_names}): rebuild it from "
                              f"{onnx_path}")
        self.dtypes = {n: _torch_dtype(self.engine.get_tensor_dtype(n), n, self.path) for n in names}
        self.context = _require(self.engine.create_execution_context(), "create_execution_context", self.path,
                                self._logger)
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._input: torch.Tensor | None = None
        self._outputs: dict[str, torch.Tensor] = {}   # owned: alive until the next run replaces them

    def check_size(self, size: int) -> None:
        """Raise ConfigError when the engine's profile does not take ``size`` x ``size`` inputs (pixels)."""
        problem = self.profile.side_problem(size, size)
        if problem:
            raise ConfigError(f"{self.path} {problem}")

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """All outputs for a (B, 3, H, W) float32 batch, as numpy arrays (ONNX output order; floating outputs
        as float32). A batch larger than the profile's is run in parts (:meth:`Profile.chunks`).

        Raises:
            ConfigError: H or W outside the profile. ExportError: a TensorRT call failed (names it); an output
            whose shape depends on the data. ValueError: not a non-empty (B, 3, H, W) batch.
        """
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1:
            raise ValueError(f"expected a (B, 3, H, W) batch with B >= 1, got {images.shape}")
        problem = self.profile.side_problem(images.shape[2], images.shape[3])
        if problem:
            raise ConfigError(f"{self.path} {problem}")
        parts = [self._run_once(images[start:stop], padded) for start, stop, padded in
                 self.profile.chunks(images.shape[0])]
        return parts[0] if len(parts) == 1 else [np.concatenate(p) for p in zip(*parts, strict=True)]

    def _stream(self) -> contextlib.AbstractContextManager[int]:
        return contextlib.nullcontext(0) if self.stream is None else _on_stream(self.stream)

    def _buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The backend's own buffer for output ``name`` of ``shape``, reused while the shape stays."""
        buf = self._outputs.get(name)
        if buf is None or tuple(buf.shape) != shape:
            buf = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self._outputs[name] = buf
        return buf

    def _run_once(self, images: np.ndarray, batch: int) -> list[np.ndarray]:
        """One execution of ``images`` (at most the profile's largest batch), padded to ``batch`` images by
        repeating the last one; returns the outputs of the real images."""
        n = images.shape[0]
        if batch > n:
            images = np.concatenate([images, np.repeat(images[-1:], batch - n, axis=0)])
        ctx, where, logger = self.context, self.path, self._logger
        logger.errors.clear()
        with self._stream() as handle:
            self._input = torch.from_numpy(images).to(self.device, self.dtypes[self.input_name])
            shape = tuple(self._input.shape)
            _check(ctx.set_input_shape(self.input_name, shape),
                   f"set_input_shape({self.input_name!r}, {shape})", where, logger)
            _check(ctx.set_tensor_address(self.input_name, int(self._input.data_ptr())),
                   f"set_tensor_address({self.input_name!r})", where, logger)
            outs = []
            for name in self.output_names:
                out_shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
                if any(d < 0 for d in out_shape):
                    raise ExportError(f"{where}: output {name!r} has shape {out_shape} after "
                                      f"set_input_shape{shape}: a shape that depends on the data, which this "
                                      "backend does not run")
                out = self._buffer(name, out_shape)
                _check(ctx.set_tensor_address(name, int(out.data_ptr())), f"set_tensor_address({name!r})",
                       where, logger)
                outs.append(out)
            _check(ctx.execute_async_v3(handle), "execute_async_v3", where, logger)
            host = [o[:n].to("cpu", copy=True) for o in outs]   # on the same stream: after the run
        if self.stream is not None:
            self.stream.synchronize()
        return [(h.float() if h.is_floating_point() else h).numpy() for h in host]

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.run(images)[0])


@contextlib.contextmanager
def _on_stream(stream: torch.cuda.Stream) -> Iterator[int]:
    """Make ``stream`` current (copies, allocations and the run are ordered on it); yields its handle."""
    with torch.cuda.stream(stream):
        yield int(stream.cuda_stream)
