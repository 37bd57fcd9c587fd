"""A STAND-IN for the ``tensorrt`` package, for tests on machines without a GPU or TensorRT: not TensorRT.

It offers the TensorRT 10 Python calls ``yolox/export/tensorrt.py`` makes (``Builder``, ``OnnxParser``, the
builder config, optimisation profiles, ``IInt8EntropyCalibrator2``, ``ILogger``, ``Runtime``, the engine and
its execution context), records every call in ``module.calls`` as ``(name, *args)``, returns False / None / -1
from any call named in ``module.fail`` (or, once, in ``module.fail_once``) as TensorRT reports a failure, and
enforces what TensorRT enforces where a mistake would otherwise go unseen:

- ``set_input_shape`` refuses a shape outside the engine's optimisation profile (returns False);
- ``execute_async_v3`` refuses to run with a tensor whose address was not set;
- the "engine" runs the ONNX model with ONNX Runtime on the host addresses it was given (CPU torch tensors'
  ``data_ptr``): it reads the input from the input's address and writes each output, sized from the shapes it
  reported by ``get_tensor_shape``, into that output's address; so outputs read from the wrong buffer, a
  buffer of the wrong size or outputs in the wrong order show as results that differ from ONNX Runtime's;
- INT8 "calibration" during ``build_serialized_network`` reads the calibrator's cache, else every batch it
  hands over (``get_batch``) from its address, as many images as ``get_batch_size`` says (kept in
  ``module.calibrated``), then writes a cache.

What it does not do: optimise, quantize, or run anything on a GPU. TensorRT's real behaviour is checked by
``tests/test_gpu.py`` on a GPU machine.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import json
import types
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

FACTS = {"tensorrt": "10.8.0.43", "cuda": "12.8", "gpu": "Stand-in GPU 24GB", "compute_capability": "8.9"}
"""What ``gpu_facts`` returns under the stand-in (tests patch it in)."""
MAGIC = b"STANDIN-TENSORRT-ENGINE\n"


class Severity(enum.Enum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 6
    BF16 = 7


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    PREFER_PRECISION_CONSTRAINTS = 2


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


_FROM_ONNX = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF,
              onnx.TensorProto.INT64: DataType.INT64, onnx.TensorProto.INT32: DataType.INT32,
              onnx.TensorProto.BOOL: DataType.BOOL, onnx.TensorProto.UINT8: DataType.UINT8}
_NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT64: np.int64,
          DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}


def read_address(ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A copy of the array of ``shape`` and ``dtype`` at host address ``ptr``."""
    count = int(np.prod(shape))
    nbytes = count * np.dtype(dtype).itemsize
    raw = (ctypes.c_char * max(nbytes, 1)).from_address(ptr)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape).copy()


def _dims(value_info: onnx.ValueInfoProto) -> tuple[int, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)


def standin_tensorrt(version: str = FACTS["tensorrt"], fast_fp16: bool = True) -> types.ModuleType:
    """A fresh stand-in ``tensorrt`` module (see the module docstring). Its ``calls``, ``fail`` (names of
    calls that fail), ``build_messages`` (``(Severity, text)`` the builder logs), ``data_dependent`` (output
    names whose shape it reports as -1), ``fail_once`` and ``calibrated`` may be read and changed by a
    test."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []
    trt.fail = set()
    trt.fail_once = set()
    trt.build_messages = []
    trt.data_dependent = set()
    trt.calibrated = []
    trt.Severity, trt.DataType, trt.TensorIOMode = Severity, DataType, TensorIOMode
    trt.BuilderFlag, trt.MemoryPoolType = BuilderFlag, MemoryPoolType

    def record(name: str, *args: Any) -> bool:
        trt.calls.append((name, *args))
        if name in trt.fail_once:
            trt.fail_once.discard(name)
            return False
        return name not in trt.fail

    class ILogger:
        Severity = Severity

        def __init__(self) -> None:
            pass

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    class Layer:
        """One layer per ONNX node, named after it; its outputs' types from ONNX shape inference."""

        def __init__(self, name: str, dtypes: list[DataType]) -> None:
            self.name, self.dtypes, self._precision = name, list(dtypes), None

        @property
        def num_outputs(self) -> int:
            return len(self.dtypes)

        def get_output(self, index: int) -> types.SimpleNamespace:
            return types.SimpleNamespace(dtype=self.dtypes[index])

        @property
        def precision(self) -> DataType | None:
            return self._precision

        @precision.setter
        def precision(self, dtype: DataType) -> None:
            record("layer.precision", self.name, dtype)
            self._precision = dtype

        def set_output_type(self, index: int, dtype: DataType) -> None:
            record("layer.set_output_type", self.name, index, dtype)

    class Network:
        def __init__(self) -> None:
            self.model_bytes = b""
            self.inputs: list[types.SimpleNamespace] = []
            self.layers: list[Layer] = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, index: int) -> types.SimpleNamespace:
            return self.inputs[index]

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def get_layer(self, index: int) -> Layer:
            return self.layers[index]

    class OnnxParser:
        def __init__(self, network: Network, logger: Any) -> None:
            record("OnnxParser")
            self.network, self.errors = network, []

        def parse(self, data: bytes) -> bool:
            if not record("parse", len(data)):
                self.errors = ["In node 3 (Conv): stand-in: unsupported operator"]
                return False
            model = onnx.load_from_string(bytes(data))
            init = {i.name for i in model.graph.initializer}
            self.network.inputs = [types.SimpleNamespace(name=i.name, shape=_dims(i))
                                   for i in model.graph.input if i.name not in init]
            self.network.model_bytes = bytes(data)
            inferred = onnx.shape_inference.infer_shapes(model).graph
            types_of = {v.name: v.type.tensor_type.elem_type
                        for v in (*inferred.value_info, *inferred.output)}
            self.network.layers = [Layer(n.name, [_FROM_ONNX.get(types_of.get(o, onnx.TensorProto.FLOAT),
                                                                 DataType.INT32) for o in n.output])
                                   for n in model.graph.node]
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> str:
            return self.errors[index]

    class OptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            record("set_shape", name, tuple(lo), tuple(opt), tuple(hi))
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

        def valid(self) -> bool:
            return bool(self.shapes) and all(all(a <= b <= c for a, b, c in zip(*s, strict=True))
                                             for s in self.shapes.values())

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data

    class Config:
        def __init__(self) -> None:
            self.flags: set[BuilderFlag] = set()
            self.profiles: list[OptimizationProfile] = []
            self.calibration_profile: OptimizationProfile | None = None
            self.int8_calibrator: Any = None
            self.timing = TimingCache(b"")

        def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
            record("set_memory_pool_limit", pool, size)

        def create_timing_cache(self, data: bytes) -> TimingCache | None:
            return TimingCache(bytes(data)) if record("create_timing_cache", bytes(data)) else None

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            self.timing = cache
            return record("set_timing_cache", ignore_mismatch)

        def get_timing_cache(self) -> TimingCache:
            return TimingCache(self.timing.data + b"+stand-in timings")

        def set_flag(self, flag: BuilderFlag) -> None:
            record("set_flag", flag)
            self.flags.add(flag)

        def add_optimization_profile(self, profile: OptimizationProfile) -> int:
            if not record("add_optimization_profile") or not profile.valid():
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile: OptimizationProfile) -> bool:
            self.calibration_profile = profile
            return record("set_calibration_profile", dict(profile.shapes)) and profile.valid()

    class Builder:
        def __init__(self, logger: Any) -> None:
            record("Builder", logger)
            self.logger = logger
            self.platform_has_fast_fp16 = fast_fp16

        def create_network(self, flags: int) -> Network:
            record("create_network", flags)
            return Network()

        def create_builder_config(self) -> Config:
            record("create_builder_config")
            return Config()

        def create_optimization_profile(self) -> OptimizationProfile:
            record("create_optimization_profile")
            return OptimizationProfile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            ok = record("build_serialized_network", sorted(f.name for f in config.flags))
            for severity, text in trt.build_messages:
                self.logger.log(severity, text)
            if not ok or len(config.profiles) != 1:
                self.logger.log(Severity.ERROR, "stand-in: no engine (build failed)")
                return None
            name = network.inputs[0].name
            if BuilderFlag.INT8 in config.flags and not self._calibrate(name, config):
                return None
            header = {"input": name, "profile": config.profiles[0].shapes[name],
                      "flags": sorted(f.name for f in config.flags)}
            return MAGIC + json.dumps(header).encode() + b"\n" + network.model_bytes

        def _calibrate(self, name: str, config: Config) -> bool:
            cal = config.int8_calibrator
            cached = cal.read_calibration_cache()
            if cached:
                record("calibration_cache_used", bytes(cached))
                return True
            shape = config.calibration_profile.shapes[name][0]
            if cal.get_batch_size() != shape[0]:
                self.logger.log(Severity.ERROR, f"stand-in: calibrator batch {cal.get_batch_size()} is not "
                                f"the calibration profile's {shape}")
                return False
            digest = hashlib.sha256()
            while (pointers := cal.get_batch([name])) is not None:
                batch = read_address(pointers[0], shape, np.float32)
                trt.calibrated.append(batch)
                digest.update(batch.tobytes())
            if not trt.calibrated:
                self.logger.log(Severity.ERROR, "stand-in: the calibrator gave no batch")
                return False
            cal.write_calibration_cache(b"stand-in scales " + digest.hexdigest().encode())
            return True

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shape: tuple[int, ...] | None = None
            self.addresses: dict[str, int] = {}
            self.output_shapes: dict[str, tuple[int, ...]] = {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(int(d) for d in shape)
            ok = record("set_input_shape", name, shape)
            lo, _, hi = self.engine.profile
            if name != self.engine.input or len(shape) != len(lo) or not all(
                    a <= d <= b for a, d, b in zip(lo, shape, hi, strict=True)):
                self.engine.logger.log(Severity.ERROR, f"stand-in: {name} shape {shape} is outside the "
                                       f"profile {lo}..{hi}")
                return False
            if ok:
                self.shape = shape
                outs = self.engine.session.run(None, {name: np.zeros(shape, np.float32)})
                self.output_shapes = {o: tuple(a.shape)
                                      for o, a in zip(self.engine.outputs, outs, strict=True)}
            return ok

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            record("get_tensor_shape", name)
            if name == self.engine.input:
                return self.shape or self.engine.profile[0]
            shape = self.output_shapes.get(name)
            if shape is None or name in trt.data_dependent:
                return (-1,) * 3
            return shape

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            ok = record("set_tensor_address", name)
            if ok:
                self.addresses[name] = int(ptr)
            return ok

        def execute_async_v3(self, stream: int) -> bool:
            if not record("execute_async_v3", stream):
                return False
            missing = [n for n in (self.engine.input, *self.engine.outputs) if n not in self.addresses]
            if self.shape is None or missing:
                self.engine.logger.log(Severity.ERROR,
                                       f"stand-in: no address for {missing} or no input shape")
                return False
            x = read_address(self.addresses[self.engine.input], self.shape, np.float32)
            outs = self.engine.session.run(None, {self.engine.input: x})
            for name, arr in zip(self.engine.outputs, outs, strict=True):
                arr = np.ascontiguousarray(arr, dtype=_NUMPY[self.engine.dtypes[name]])
                assert arr.shape == self.output_shapes[name]
                ctypes.memmove(self.addresses[name], arr.ctypes.data, arr.nbytes)
            return True

    class Engine:
        def __init__(self, header: dict[str, Any], model_bytes: bytes, logger: Any) -> None:
            self.logger = logger
            self.input = header["input"]
            self.profile = tuple(tuple(s) for s in header["profile"])
            self.session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
            self.outputs = [o.name for o in self.session.get_outputs()]
            graph = onnx.load_from_string(model_bytes).graph
            self.dtypes = {v.name: _FROM_ONNX[v.type.tensor_type.elem_type]
                           for v in (*graph.input, *graph.output)}
            self.names = [self.input, *self.outputs]

        @property
        def num_io_tensors(self) -> int:
            return len(self.names)

        def get_tensor_name(self, index: int) -> str:
            return self.names[index]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return TensorIOMode.INPUT if name == self.input else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> DataType:
            return self.dtypes[name]

        def create_execution_context(self) -> Context | None:
            return Context(self) if record("create_execution_context") else None

    class Runtime:
        def __init__(self, logger: Any) -> None:
            record("Runtime", logger)
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            ok = record("deserialize_cuda_engine", len(data))
            if not ok or not data.startswith(MAGIC):
                self.logger.log(Severity.ERROR, "stand-in: the engine plan is invalid or of another version")
                return None
            header, model_bytes = data[len(MAGIC):].split(b"\n", 1)
            return Engine(json.loads(header), model_bytes, self.logger)

    trt.ILogger, trt.IInt8EntropyCalibrator2 = ILogger, IInt8EntropyCalibrator2
    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


def calls_named(trt: types.ModuleType, name: str) -> list[tuple[Any, ...]]:
    """The arguments of every recorded call of ``name``, in order."""
    return [c[1:] for c in trt.calls if c[0] == name]
