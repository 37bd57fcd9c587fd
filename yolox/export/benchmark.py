"""``yolox benchmark``: every deployable format of one model side by side, measured in one run on one machine.

For each format available here (PyTorch eager, Conv+BN fused and channels-last as ``yolox predict`` runs it;
ONNX Runtime raw, end2end and INT8; OpenVINO FP32 (run in f32) and INT8 (NNCF), from the raw graph; TensorRT when
a GPU and TensorRT are present; the authors' released ONNX as ``reference`` when given):

- COCO AP50:95 and AP50 on a dataset split (the ``eval.*`` protocol; the end2end graph is exported with the
  eval thresholds so its AP is comparable);
- latency per image at batch 1, letterbox to detections (decode and NMS included, wherever they run: image
  decoding excluded), median and p90 over ``export.benchmark_repeats`` runs after ``export.benchmark_warmup``;
- throughput in images/s at batch ``export.benchmark_batch``;
- the timed runs of all formats are interleaved (run k of every format, then run k + 1), so a change of the
  machine's load during the benchmark touches every format alike;
- size on disk (an OpenVINO IR: its ``.xml`` and ``.bin``);
- with a reference, the latency and throughput ratios to it (measured in the same run, so a loaded machine
  slows both alike).

Latency figures depend on the machine and its load: compare formats within one run, not across runs.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolox.assets import resolve_weights
from yolox.config import PipelineParams
from yolox.data.prepare import load_dataset
from yolox.data.records import DetectionDataset
from yolox.errors import AssetError, CheckpointError, ConfigError, DataError, YoloxError
from yolox.evaluate.coco_eval import evaluate
from yolox.export import tensorrt
from yolox.export.onnx_export import export_onnx
from yolox.export.openvino import convert_onnx, ir_paths, quantize_ir
from yolox.export.quantize import quantize_int8
from yolox.export.tensorrt import TensorRTBackend, build_engine, profile_needs
from yolox.inference import (
    OnnxBackend,
    OpenVinoBackend,
    TorchBackend,
    detect,
    load_model,
    load_torch_model,
    model_input_size,
)
from yolox.tracking.run import MlflowRun
from yolox.tracking.store import check_run_id, parse_models_uri, preflight

log = logging.getLogger("yolox.benchmark")

FORMATS = ("pytorch", "onnx-raw", "onnx-end2end", "onnx-int8", "openvino", "openvino-int8", "tensorrt")
"""What a checkpoint is benchmarked as, in table order (``openvino``: the FP32 IR of the raw graph, run in f32;
``openvino-int8``: its NNCF INT8 IR; ``tensorrt``: FP16 from the end2end graph)."""


@dataclass
class FormatResult:
    """One row: a format's AP (fractions), latency (ms per image at batch 1), throughput and size (MB); ``status``
    is ``ok`` or ``skipped: <reason>``; ratios are to the reference row (latency: this / reference, so < 1 is
    faster; throughput: this / reference, > 1 is faster)."""

    format: str
    status: str = "ok"
    path: str | None = None
    size_mb: float | None = None
    AP50_95: float | None = None
    AP50: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    images_per_s: float | None = None
    p50_ratio: float | None = None
    throughput_ratio: float | None = None


@dataclass
class BenchmarkResult:
    """A benchmark run: its rows and the conditions they were measured in."""

    model: str
    weights: str
    dataset: str
    split: str
    num_images: int
    img_size: int
    batch: int
    repeats: int
    rows: list[FormatResult] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    def row(self, fmt: str) -> FormatResult | None:
        return next((r for r in self.rows if r.format == fmt), None)

    def to_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "rows"},
                "rows": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(r).items()}
                         for r in self.rows]}

    def table(self) -> Any:
        """A rich Table of the rows."""
        from rich.table import Table

        t = Table(title=f"{self.model} ({Path(self.weights).name}) on {self.dataset} {self.split}: {self.num_images} "
                        f"images, {self.img_size}px; latency batch 1 over {self.repeats} runs, throughput batch "
                        f"{self.batch}")
        cols = ("format", "AP50:95", "AP50", "p50 ms", "p90 ms", f"img/s (b{self.batch})", "size MB",
                "p50 / ref", "img/s / ref", "status")
        for c in cols:
            t.add_column(c, justify="left" if c in ("format", "status") else "right")

        def f(v: float | None, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        for r in self.rows:
            t.add_row(r.format, f(r.AP50_95, ".4f"), f(r.AP50, ".4f"), f(r.p50_ms, ".1f"), f(r.p90_ms, ".1f"),
                      f(r.images_per_s, ".1f"), f(r.size_mb, ".2f"), f(r.p50_ratio, ".2f"),
                      f(r.throughput_ratio, ".2f"), r.status)
        return t


def latency_ms(backend: Any, images: Sequence[np.ndarray], size: int, conf_thresh: float, nms_thresh: float,
               max_det: int, warmup: int = 3, repeats: int = 30) -> tuple[float, float]:
    """(median, p90) milliseconds of :func:`yolox.inference.detect` on one image (batch 1), letterbox to
    detections, cycling through ``images`` (BGR uint8): ``warmup`` untimed runs, then ``repeats`` timed."""
    times = _interleaved([backend], images, size, 1, conf_thresh, nms_thresh, max_det, warmup, repeats)[0]
    return statistics.median(times), float(np.percentile(times, 90))


def _interleaved(backends: Sequence[Any], images: Sequence[np.ndarray], size: int, batch: int, conf_thresh: float,
                 nms_thresh: float, max_det: int, warmup: int, repeats: int) -> list[list[float]]:
    """Milliseconds of each timed :func:`yolox.inference.detect` call on ``batch`` images, per backend; run ``k``
    of every backend before run ``k + 1`` of any."""
    times: list[list[float]] = [[] for _ in backends]
    for i in range(warmup + repeats):
        chunk = [images[(i * batch + j) % len(images)] for j in range(batch)]
        for k, backend in enumerate(backends):
            t0 = time.perf_counter()
            detect(backend, chunk, size, conf_thresh, nms_thresh, max_det)
            if i >= warmup:
                times[k].append((time.perf_counter() - t0) * 1000)
    return times


def _size_mb(path: str | Path | None) -> float | None:
    """Size on disk of a model file in MB; an OpenVINO IR's ``.xml`` with its ``.bin``."""
    if not path or not Path(path).is_file():
        return None
    files = ir_paths(path) if Path(path).suffix.lower() == ".xml" else (Path(path),)
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def run_benchmark(params: PipelineParams, weights: str, data: str | None = None, split: str = "val",
                  model_name: str | None = None, img_size: int | None = None, reference: str | None = None,
                  formats: Sequence[str] | None = None, out_dir: str | Path | None = None,
                  max_images: int | None = None, run_id: str | None = None,
                  registered_onnx: Callable[[str, str], str] | None = None) -> BenchmarkResult:
    """Benchmark ``weights``: a ``.pth`` (every format of :data:`FORMATS` available here, exported into
    ``out_dir``, default a temporary folder), an exported ``.onnx`` or OpenVINO ``.xml`` (that file), or a registered version
    ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` (its ONNX model); plus the ``reference`` (an ONNX
    model, e.g. the authors' ``yolox_nano.onnx``, a ``.pth`` run in PyTorch, or a registered version).

    Before any work, the ``models:/`` URIs and ``run_id`` are checked for the forms the registry accepts, and
    when the benchmark will reach the tracking server or registry (a ``models:/`` URI, a ``run_id``), the
    preflight runs (:func:`yolox.tracking.store.preflight`: seconds, one line, every later MLflow request
    bounded by ``tracking.http_timeout_s``). Then each model argument is found (:func:`model_argument`: a name
    resolved as ``--weights`` is) and the reference opened, before the dataset is read or anything measured.

    Args:
        data: dataset for the AP (as ``yolox eval``; default ``data.prepared_dir``); the INT8 model is
            calibrated on its ``train`` split when it has one, else on the evaluated images (logged).
        formats: a subset of :data:`FORMATS` (``.pth`` only). max_images: evaluate the first N images only.
        run_id: also log the rows as metrics ``benchmark/<format>/<figure>`` and ``benchmark/benchmark.json``
            to that (existing) run; its status is left as it is.
        registered_onnx: ``(uri, option) -> local ONNX file`` of a registered version
            (:func:`yolox.registry.versions.registered_onnx`, what ``yolox benchmark`` passes); without it a
            ``models:/`` argument is a ConfigError. Passed in: the registry sits above the export stage.

    Raises:
        ConfigError: unknown format, formats asked of an ONNX file, a malformed ``models:/`` URI or run id,
        a model argument of another kind than .pth or .onnx. AssetError: a model argument that is neither a
        file nor a released name. CheckpointError: a model that cannot be opened (names the option).
        PreflightError: the tracking store or registry is unusable. TrackingError: no such registered
        version, or the server stopped answering. DataError: see ``yolox eval``.
    """
    ep = params.export
    unknown = sorted(set(formats or ()) - set(FORMATS))
    if unknown:
        raise ConfigError(f"yolox benchmark --formats: unknown {unknown}; choose from {list(FORMATS)}")
    if formats and not str(weights).endswith(".pth"):
        raise ConfigError("yolox benchmark --formats applies to a .pth checkpoint (an .onnx is benchmarked as is)")
    uris = {"--weights": str(weights), "--reference": str(reference or "")}
    registered = [parse_models_uri(uri, arg) for arg, uri in uris.items() if uri.startswith("models:/")]
    if run_id is not None:
        check_run_id(run_id, "--run-id")
    if registered or run_id is not None:
        preflight(params)
    # every model argument found, the reference opened, before any work (names resolved as --weights are)
    model_file = model_argument(weights, "--weights", registered_onnx)
    ref = None
    if reference:
        ref_file = model_argument(reference, "--reference", registered_onnx)
        ref = ("reference", _opened(ref_file, model_name, "--reference"), ref_file)
    source = str(data or params.data.prepared_dir)
    dataset = load_dataset(source, split)
    if max_images:
        dataset = DetectionDataset(dataset.names, dataset.category_ids, dataset.records[:max_images])
    frames = []
    for rec in dataset.records:
        img = cv2.imread(str(rec.path))
        if img is None:
            raise DataError(f"cannot read image {rec.path}")
        frames.append(img)
    if not frames:
        raise DataError(f"{source} {split}: no images to benchmark on")
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="yolox-benchmark-")
        out_dir = tmp.name
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        candidates, name, size = _candidates(params, model_file, model_name, img_size, formats, out, source,
                                             dataset)
        if ref is not None:
            candidates.append(ref)
        result = BenchmarkResult(name, str(weights), source, split, len(frames), size, ep.benchmark_batch,
                                 ep.benchmark_repeats, machine=_machine())
        live = []
        for fmt, make, path in candidates:
            row, backend = _accuracy(fmt, make, path, params, dataset, size)
            result.rows.append(row)
            if backend is not None:
                live.append((row, backend))
        _timings(live, params, frames, size)
    finally:
        if tmp is not None:
            tmp.cleanup()
    ref = result.row("reference")
    if ref is not None and ref.p50_ms:
        for r in result.rows:
            if r.p50_ms:
                r.p50_ratio = r.p50_ms / ref.p50_ms
            if r.images_per_s and ref.images_per_s:
                r.throughput_ratio = r.images_per_s / ref.images_per_s
    if run_id:
        _log_to_run(params, run_id, result)
    return result


def _candidates(params: PipelineParams, weights: str, model_name: str | None, img_size: int | None,
                formats: Sequence[str] | None, out: Path, source: str, dataset: Any) -> tuple[list, str, int]:
    """``[(format, backend factory, file)]``, the model name and the input size."""
    if not weights.endswith(".pth"):
        backend, meta = load_model(weights, model_name)
        if isinstance(backend, OpenVinoBackend):
            fmt = "openvino" + ("" if backend.variant == "raw" else f"-{backend.variant}")
        else:
            fmt = f"onnx-{backend.variant}"
        fmt += "-int8" if meta.export and meta.export.precision == "int8" else ""
        return [(fmt, lambda: backend, weights)], meta.name, model_input_size(meta, img_size)

    net, meta = load_torch_model(weights, model_name)
    size = model_input_size(meta, img_size)
    wanted = list(formats or FORMATS)
    ev, ep = params.eval, params.export
    rows: list[tuple[str, Any, str | None]] = []
    if "pytorch" in wanted:
        # what `yolox predict`/`eval` run on a .pth (Conv+BN fused, channels-last), on a copy: `net` is exported below
        rows.append(("pytorch", lambda: TorchBackend(copy.deepcopy(net), fuse=True), weights))
    raw = out / "raw.onnx"
    if {"onnx-raw", "onnx-int8", "openvino", "openvino-int8"} & set(wanted):
        export_onnx(net, raw, size, meta.names, meta.name, ep.opset, True, ep.simplify, "raw")
    if "onnx-raw" in wanted:
        rows.append(("onnx-raw", lambda: OnnxBackend(raw), str(raw)))
    e2e = out / "end2end.onnx"
    if {"onnx-end2end", "tensorrt"} & set(wanted):
        export_onnx(net, e2e, size, meta.names, meta.name, ep.opset, True, ep.simplify, "end2end",
                    ev.conf_thresh, ev.nms_thresh, ev.max_det)
    if "onnx-end2end" in wanted:
        rows.append(("onnx-end2end", lambda: OnnxBackend(e2e), str(e2e)))
    if "onnx-int8" in wanted:
        rows.append(("onnx-int8", lambda: OnnxBackend(_int8(params, raw, size, source, dataset)), str(raw.with_suffix(
            ".int8.onnx"))))
    xml = raw.with_suffix(".xml")
    if {"openvino", "openvino-int8"} & set(wanted):
        convert_onnx(raw, xml)
    if "openvino" in wanted:
        rows.append(("openvino", lambda: OpenVinoBackend(xml), str(xml)))
    if "openvino-int8" in wanted:
        rows.append(("openvino-int8", lambda: OpenVinoBackend(_openvino_int8(params, xml, size, source, dataset)),
                     str(xml.with_suffix(".int8.xml"))))
    if "tensorrt" in wanted:
        reason = tensorrt.tensorrt_unavailable_reason()   # through the module: a test stands in for a GPU
        if reason:
            rows.append(("tensorrt", f"skipped: {reason}", None))
        else:
            engine = out / "end2end.engine"
            build_engine(e2e, engine, size, ep.benchmark_batch, "fp16", sizes=ep.tensorrt_sizes,   # every batch fed
                         timing_cache=ep.tensorrt_timing_cache, needs=profile_needs(params))
            rows.append(("tensorrt", lambda: TensorRTBackend(engine, e2e), str(engine)))
    return rows, meta.name, size


MODEL_SUFFIXES = (".pth", ".onnx", ".xml")
"""What a model argument of ``yolox benchmark`` may be, besides a registered version: a checkpoint, ONNX, an
OpenVINO IR."""


def model_argument(value: str, arg: str, registered_onnx: Callable[[str, str], str] | None = None) -> str:
    """The local file of a model argument given as option ``arg``: a registered version
    (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``: its ONNX, downloaded), a path, or a released file name
    resolved as ``--weights`` is (:func:`yolox.assets.resolve_weights`: the mirror ``YOLOX_ASSETS_DIR``, then
    the download cache). Checked before any work: the file exists and is a ``.pth``, an ``.onnx`` or an ``.xml``.

    Raises:
        AssetError: no such file, and not a released name (names ``arg``). ConfigError: another kind of file.
        TrackingError: no such registered version.
    """
    if value.startswith("models:/"):
        if registered_onnx is None:
            raise ConfigError(f"{arg} {value}: a registered version needs the registry: run `yolox benchmark`")
        return registered_onnx(value, arg)
    try:
        path = resolve_weights(value)
    except AssetError as err:
        raise AssetError(f"{arg} {value}: {err}") from None
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ConfigError(f"{arg} {value}: not a .pth checkpoint or an .onnx model (a registered version is "
                          "models:/NAME/VERSION or models:/NAME@ALIAS), nor an OpenVINO IR (.xml)")
    return str(path)


def _opened(path: str, model_name: str | None, arg: str) -> Any:
    """The inference backend of ``path`` (:func:`yolox.inference.load_model`), opened now: an unloadable file
    is an error before any measuring (the message names ``arg``). Returns a factory for :func:`_accuracy`."""
    try:
        backend, _ = load_model(path, model_name)
    except (CheckpointError, ConfigError) as err:
        raise type(err)(f"{arg}: {err}") from None
    return lambda: backend


def _calibration(params: PipelineParams, source: str, dataset: Any) -> list[Path]:
    """The INT8 calibration images: the first ``export.int8_calibration_images`` of ``source``'s train split, else
    (logged) of the evaluated images."""
    n = params.export.int8_calibration_images
    try:
        return [r.path for r in load_dataset(source, "train").records[:n]]
    except YoloxError as err:
        log.warning("INT8 calibrated on the evaluated images themselves: %s has no train split (%s)", source, err)
        return [r.path for r in dataset.records[:n]]


def _int8(params: PipelineParams, raw: Path, size: int, source: str, dataset: Any) -> Path:
    ep = params.export
    return quantize_int8(raw, raw.with_suffix(".int8.onnx"), _calibration(params, source, dataset), size,
                         ep.int8_calibration_method, keep_float=ep.int8_keep_float)


def _openvino_int8(params: PipelineParams, xml: Path, size: int, source: str, dataset: Any) -> Path:
    return quantize_ir(xml, xml.with_suffix(".int8.xml"), _calibration(params, source, dataset), size,
                       keep_float=params.export.openvino_int8_keep_float)


def _accuracy(fmt: str, make: Any, path: str | None, params: PipelineParams, dataset: Any, size: int
              ) -> tuple[FormatResult, Any]:
    """A format's row with its AP and size, and its backend (None when skipped)."""
    if isinstance(make, str):
        log.info("benchmark %s: %s", fmt, make)
        return FormatResult(fmt, make), None
    backend = make()
    path = str(getattr(backend, "path", None) or path)
    log.info("benchmark %s (%s): AP ...", fmt, Path(path).name)
    metrics = evaluate(backend, dataset, size, params.eval, progress=False).metrics
    return FormatResult(fmt, "ok", path, _size_mb(path), metrics["AP50_95"], metrics["AP50"]), backend


def _timings(live: list[tuple[FormatResult, Any]], params: PipelineParams, frames: list[np.ndarray], size: int) -> None:
    """Latency (batch 1) and throughput (batch ``export.benchmark_batch``) of every live format, interleaved."""
    if not live:
        return
    ev, ep = params.eval, params.export
    backends = [b for _, b in live]
    log.info("benchmark: latency of %d formats, %d runs each (interleaved) ...", len(live), ep.benchmark_repeats)
    lat = _interleaved(backends, frames, size, 1, ev.conf_thresh, ev.nms_thresh, ev.max_det, ep.benchmark_warmup,
                       ep.benchmark_repeats)
    rounds = max(2, ep.benchmark_repeats // (2 * ep.benchmark_batch))
    thr = _interleaved(backends, frames, size, ep.benchmark_batch, ev.conf_thresh, ev.nms_thresh, ev.max_det, 1,
                       rounds)
    for (row, _), ms, batch_ms in zip(live, lat, thr):
        row.p50_ms, row.p90_ms = statistics.median(ms), float(np.percentile(ms, 90))
        row.images_per_s = ep.benchmark_batch * len(batch_ms) / (sum(batch_ms) / 1000)


def _machine() -> dict[str, Any]:
    import onnxruntime
    import openvino
    import torch

    return {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.get_version(), "cuda": torch.cuda.is_available()}


def _log_to_run(params: PipelineParams, run_id: str, result: BenchmarkResult) -> None:
    run = MlflowRun.attach(run_id)   # a finished run stays so (MlflowRun(run_id=...) would set it RUNNING)
    metrics = {}
    for r in result.rows:
        for k in ("AP50_95", "AP50", "p50_ms", "p90_ms", "images_per_s", "size_mb", "p50_ratio"):
            v = getattr(r, k)
            if v is not None:
                metrics[f"benchmark/{r.format}/{k}"] = float(v)
    run.log_metrics(metrics)
    run.log_dict(result.to_json(), "benchmark/benchmark.json")


def to_json_line(result: BenchmarkResult) -> str:
    """The result as one JSON line (what ``yolox benchmark`` prints on stdout)."""
    return json.dumps(result.to_json(), separators=(",", ":"))
