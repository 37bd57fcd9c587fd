"""TensorRT engine building from the exported ONNX, on machines with a CUDA GPU and TensorRT installed
(``pip install 'yolox[tensorrt]'``). Elsewhere it is skipped with a message saying why."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("yolox.export")


def tensorrt_unavailable_reason() -> str | None:
    """None when an engine can be built here, else why not (no CUDA device, TensorRT not installed)."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install 'yolox[tensorrt]')"
    return None


def build_engine(onnx_path: str | Path, engine_path: str | Path, input_size: int, max_batch: int = 8,
                 fp16: bool = True, workspace_gib: float = 2.0) -> Path | None:
    """Build a TensorRT engine with an optimisation profile for batch 1..``max_batch`` at ``input_size``.

    Returns:
        The engine path, or None (logged) when TensorRT or a GPU is not available.
    """
    reason = tensorrt_unavailable_reason()
    if reason:
        log.warning("TensorRT engine skipped: %s", reason)
        return None
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    shape = (3, input_size, input_size)
    profile.set_shape("images", (1, *shape), (max(1, max_batch // 2), *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    engine_path = Path(engine_path)
    engine_path.write_bytes(bytes(engine))
    log.info("TensorRT engine written to %s", engine_path)
    return engine_path
