"""TensorRT engines from the exported ONNX, on machines with a CUDA GPU and TensorRT installed
(``pip install 'yolox[tensorrt]'``); selected at run time: elsewhere :func:`tensorrt_unavailable_reason` says why
not and callers report "skipped: <reason>" and go on.

- :func:`build_engine`: FP16 or INT8 (an ``IInt8EntropyCalibrator2`` over the same letterboxed prepared images
  as the ONNX Runtime INT8 model, its calibration cache beside the engine), one optimisation profile per engine
  (batch 1..``max_batch``; height and width over ``sizes`` when the graph's are dynamic), and a timing cache
  that later builds on the same GPU reuse.
- :class:`TensorRTBackend`: runs an engine (device buffers are torch CUDA tensors; no pycuda needed), with the
  same ``run`` / ``variant`` interface as :class:`yolox.inference.OnnxBackend`, so :func:`yolox.inference.detect`
  and ``yolox benchmark`` use it like any backend.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolox.errors import ExportError
from yolox.files import write_bytes

log = logging.getLogger("yolox.export")


def tensorrt_unavailable_reason() -> str | None:
    """None when an engine can be built here, else why not (no CUDA device, TensorRT not installed)."""
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install 'yolox[tensorrt]')"
    return None


def _entropy_calibrator(trt: Any, images: Sequence[str | Path], size: int, batch_size: int, cache: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``images`` letterboxed to ``size`` (the one letterbox), batches of
    ``batch_size`` in a CUDA tensor; reads and writes (atomically) the calibration ``cache``."""
    from yolox.export.quantize import LetterboxCalibrationReader

    reader = LetterboxCalibrationReader(images, size, batch_size=batch_size)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches = [b for b in reader.batches if b.shape[0] == batch_size] or reader.batches[:1]
            self.index = 0
            self.device = torch.empty((batch_size, 3, size, size), dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(self.batches):
                return None
            batch = torch.from_numpy(self.batches[self.index])
            self.device[: batch.shape[0]].copy_(batch)
            self.index += 1
            return [int(self.device.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            write_bytes(cache, bytes(data))

    return EntropyCalibrator()


def build_engine(onnx_path: str | Path, engine_path: str | Path, input_size: int, max_batch: int = 8,
                 precision: str = "fp16", calibration_images: Sequence[str | Path] = (),
                 sizes: tuple[int, int] | None = None, timing_cache: str | Path | None = None,
                 workspace_gib: float = 2.0) -> Path | None:
    """Build a TensorRT engine from an exported ONNX model.

    Args:
        input_size: the profile's optimum side (pixels); also min and max unless ``sizes`` is given and the graph's
            height and width are dynamic. max_batch: the profile covers batch 1..``max_batch`` (optimum
            ``max_batch // 2``) when the batch is dynamic.
        precision: ``fp16`` or ``int8`` (INT8 calibrated with an entropy calibrator on ``calibration_images``,
            FP16 allowed too for the layers INT8 does not cover).
        timing_cache: file of the builder's timing cache: loaded when present, saved after the build.

    The engine (``engine_path``), the timing cache and the INT8 calibration cache (``<engine>.calib-cache``) are
    each written atomically (:func:`yolox.files.write_bytes`): an interrupted build leaves the previous files
    intact and no partial file behind.

    Returns:
        The engine path, or None (logged) when TensorRT or a GPU is not available.

    Raises:
        ExportError: TensorRT cannot parse the model or build the engine; INT8 without calibration images.
    """
    reason = tensorrt_unavailable_reason()
    if reason:
        log.warning("TensorRT engine skipped: %s", reason)
        return None
    import tensorrt as trt

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0 if int(trt.__version__.split(".")[0]) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    cache = None
    if timing_cache:
        timing_cache = Path(timing_cache)
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    if builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    inp = network.get_input(0)
    dims = list(inp.shape)  # -1 where dynamic
    lo, hi = (sizes if sizes and dims[2] < 0 else (input_size, input_size))
    b_min, b_opt, b_max = (1, max(1, max_batch // 2), max_batch) if dims[0] < 0 else (dims[0],) * 3
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (b_min, 3, lo, lo), (b_opt, 3, input_size, input_size), (b_max, 3, hi, hi))
    config.add_optimization_profile(profile)
    if precision == "int8":
        if not calibration_images:
            raise ExportError("TensorRT INT8 needs calibration images (the prepared train images)")
        config.set_flag(trt.BuilderFlag.INT8)
        calib_batch = min(b_opt, 8)
        config.int8_calibrator = _entropy_calibrator(trt, calibration_images, input_size, calib_batch,
                                                     engine_path.with_suffix(".calib-cache"))
        calib_profile = builder.create_optimization_profile()
        shape = (calib_batch, 3, input_size, input_size)
        calib_profile.set_shape(inp.name, shape, shape, shape)
        config.set_calibration_profile(calib_profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    write_bytes(engine_path, bytes(engine))
    if cache is not None:
        write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    log.info("TensorRT %s engine written to %s (batch %d..%d, side %d..%d)", precision, engine_path, b_min, b_max,
             lo, hi)
    return engine_path


class TensorRTBackend:
    """A TensorRT engine built by :func:`build_engine` from an exported model, run on the GPU. ``variant``, ``meta``,
    ``strides`` and ``num_classes`` come from that ONNX model's metadata (``onnx_path``); :meth:`run` returns the
    outputs in the ONNX model's order, as :meth:`yolox.inference.OnnxBackend.run`.

    Raises:
        ExportError: TensorRT or a GPU is not available, or the engine cannot be loaded.
    """

    def __init__(self, engine_path: str | Path, onnx_path: str | Path) -> None:
        reason = tensorrt_unavailable_reason()
        if reason:
            raise ExportError(f"cannot run {engine_path}: {reason}")
        import tensorrt as trt

        from yolox.inference import OnnxBackend

        ref = OnnxBackend(onnx_path)  # the metadata and output order (CPU session, not used to run)
        self.meta, self.variant, self.strides = ref.meta, ref.variant, ref.strides
        self.num_classes, self.output_names, self.fixed_batch = ref.num_classes, ref.output_names, None
        self._warned = ref._warned
        self.baked_thresholds = ref.baked_thresholds
        self.path = Path(engine_path)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ExportError(f"{engine_path}: not a TensorRT engine for this TensorRT version and GPU")
        self.context = self.engine.create_execution_context()
        self.input_name = ref.input_name
        self.stream = torch.cuda.Stream()

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """All outputs for a (B, 3, H, W) float32 batch, as numpy arrays (ONNX output order)."""
        import tensorrt as trt

        x = torch.from_numpy(np.ascontiguousarray(images)).cuda()
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        self.context.set_tensor_address(self.input_name, int(x.data_ptr()))
        outs = []
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            out = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, int(out.data_ptr()))
            outs.append(out)
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return [o.cpu().numpy() for o in outs]

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.run(images)[0])
