"""The GPU suite (issue 26, item 4): what only a CUDA GPU runs. ``YOLOX_ASSETS_DIR=../shared .venv/bin/pytest
-m gpu`` on a machine with one (README, "Run the tests"), in a few minutes on one GPU; on a machine without
one every test here is skipped with the reason below (and a test that needs two GPUs or TensorRT says so).

- CUDA AMP: two training steps of the authors' nano on real coco128 batches, loss finite and close to FP32's;
- DDP over NCCL with two GPUs, one process each on ``cuda:0`` and ``cuda:1``: the same weights on both;
- the training loader keeps a GPU fed: pinned batches, copied with ``non_blocking=True`` on a side stream;
- TensorRT FP16 and INT8 engines (built with the profile of :func:`yolox.export.tensorrt.profile_needs`): COCO
  AP on the prepared val split within a tolerance of ONNX Runtime's, the build config naming this GPU; the
  ``tensorrt`` row of ``yolox benchmark`` with its latency and throughput;
- ``yolox pipeline`` with ``export.tensorrt=true`` on ``cuda:0``: the engine evaluated on the val split,
  logged and registered beside the ONNX model (the contract of issue 26's pipeline change: the version's
  ``tensorrt_*`` tags, the run's ``tensorrt/`` artifacts).

When an engine's AP is off, Polygraphy (the ``tensorrt`` extra) finds the layer that differs from ONNX
Runtime: ``polygraphy run model.onnx --trt --fp16 --onnxrt --trt-outputs mark all --onnx-outputs mark all``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from yolox.config import AugmentParams, DataParams, EvalParams, PipelineParams
from yolox.train.torchrun import free_port

GPU_REASON = "needs a CUDA GPU: run `pytest -m gpu` on a GPU machine"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=GPU_REASON)]

SIZE = 416
POLYGRAPHY = ("compare layer by layer: polygraphy run {onnx} --trt --{precision} --onnxrt "
              "--trt-outputs mark all --onnx-outputs mark all")


def _needs_tensorrt() -> None:
    from yolox.export.tensorrt import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason:
        pytest.skip(f"needs TensorRT: {reason}")


@pytest.fixture(scope="module")
def prepared(coco128_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """coco128 prepared (the pipeline's own split: val_fraction 0.2)."""
    from yolox.data.prepare import prepare_dataset

    return prepare_dataset(DataParams(source=str(coco128_dir), val_fraction=0.2),
                           tmp_path_factory.mktemp("gpu") / "prepared").out_dir


def _loader(prepared: Path, batch: int, workers: int):
    from yolox.data.dataset import build_train_loader
    from yolox.data.records import load_prepared

    train = load_prepared(prepared, "train")
    loader = build_train_loader(train, AugmentParams(multiscale_range=0), "yolox-nano", SIZE, batch, workers,
                                seed=0, multiscale=False)
    return loader, train


# --- training on a GPU --------------------------------------------------------------------------------------


def test_amp_training_steps_are_finite_and_close_to_fp32(prepared: Path, nano_pth: Path) -> None:
    """Two steps of the trainer's ``train_step`` on one real batch of 8, from the authors' nano weights, with
    CUDA AMP (autocast float16 + GradScaler) and without: every loss finite, AMP's first within 2 % of FP32's
    (same weights), its second within 10 %; the convolutions ran in float16."""
    from yolox.models.build import build_model
    from yolox.models.checkpoint import load_weights
    from yolox.train.distributed import select_device
    from yolox.train.optim import build_optimizer
    from yolox.train.trainer import loss_values, prepare_for_training, train_step

    device = select_device("cuda:0")
    loader, train = _loader(prepared, 8, 0)
    loader.dataset.set_mosaic(False)
    images, targets, num_targets, _ = next(iter(loader))
    losses: dict[bool, list[float]] = {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = build_model("yolox-nano", train.num_classes)
        load_weights(model, nano_pth, names=list(train.names))
        fmt = prepare_for_training(model, device)
        model.train()
        assert next(model.parameters()).device == torch.device("cuda:0")
        optimizer = build_optimizer(model, 0.01 * 8 / 64, 0.9, 5e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        x = images.to(device, non_blocking=True).contiguous(memory_format=fmt)
        t = targets.to(device, non_blocking=True)
        losses[amp] = [loss_values(train_step(model, x, t, num_targets, optimizer, scaler, model.strides,
                                              use_amp=amp))["total_loss"] for _ in range(2)]
        if amp:   # autocast runs the convolutions in half precision
            conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
            dtypes: list[torch.dtype] = []
            hook = conv.register_forward_hook(lambda _m, _i, out, seen=dtypes: seen.append(out.dtype))
            with torch.no_grad(), torch.autocast("cuda"):
                model(x)
            hook.remove()
            assert dtypes == [torch.float16]
    print("total loss FP32", losses[False], "AMP", losses[True])
    assert all(math.isfinite(v) for v in losses[False] + losses[True])
    assert losses[True][0] == pytest.approx(losses[False][0], rel=0.02)   # same weights, another precision
    # after one step (GradScaler skips a step whose scaled gradients overflow; a step changes the loss ~4 %)
    assert losses[True][1] == pytest.approx(losses[False][1], rel=0.1)


def test_loader_pins_batches_and_copies_them_without_blocking(prepared: Path) -> None:
    """The training loader on a CUDA machine: 2 workers, pinned batches, a non-blocking copy on a side stream
    gives the same tensor on the GPU. The time the loop waits for each batch is
    printed (it depends on the host's cores), not asserted."""
    loader, _ = _loader(prepared, 8, 2)
    assert loader.pin_memory and loader.num_workers == 2 and loader.persistent_workers
    stream = torch.cuda.Stream()
    waits = []
    it = iter(loader)
    for _ in range(4):
        t0 = time.perf_counter()
        images, targets, _num, _ids = next(it)
        waits.append(time.perf_counter() - t0)
        assert images.is_pinned() and targets.is_pinned()
        with torch.cuda.stream(stream):
            on_gpu = images.to("cuda", non_blocking=True)
        stream.synchronize()
        assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), images)
    print(f"loader wait per batch of 8 after the first: {[round(w * 1000) for w in waits[1:]]} ms")


DDP_DRIVER = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path

    import torch
    import torch.distributed as dist

    from yolox.config import load_params
    from yolox.train import trainer

    params_file, prepared, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    rank = int(os.environ["RANK"])
    seen = {}
    real_step = trainer.train_step

    def step(model, images, *args, **kwargs):
        seen.setdefault("device", str(images.device))
        seen.setdefault("backend", dist.get_backend())
        seen.setdefault("amp", bool(kwargs.get("use_amp")))
        return real_step(model, images, *args, **kwargs)

    trainer.train_step = step
    result = trainer.train(load_params(params_file), prepared, out, progress=False)
    torch.save({k: v.detach().cpu() for k, v in result.model.named_parameters()}, out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps(seen))
''')


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.device_count() < 2,
                    reason="needs 2 CUDA GPUs (DDP over NCCL)")
def test_ddp_over_nccl_two_gpus_end_with_the_same_weights(prepared: Path, tmp_path: Path) -> None:
    """torchrun, 2 processes, ``train.device: auto`` and backend ``auto``: rank r trains on ``cuda:r`` over
    NCCL with AMP, and both end with the same parameters (DDP averages the gradients)."""
    raw = {"model": {"name": "yolox-nano", "input_size": 320, "weights": None},
           "augment": {"multiscale_range": 0},
           "train": {"epochs": 2, "batch_size": 8, "warmup_epochs": 1, "no_aug_epochs": 1,
                     "max_iters_per_epoch": 3, "workers": 0, "device": "auto", "eval_interval": 100,
                     "seed": 0},
           "eval": {"batch_size": 8}}
    params_file, driver, out = tmp_path / "params.yaml", tmp_path / "driver.py", tmp_path / "out"
    params_file.write_text(yaml.safe_dump(PipelineParams.model_validate(raw).model_dump(mode="json")))
    driver.write_text(DDP_DRIVER)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env["CUDA_VISIBLE_DEVICES"] = "0,1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(port), str(driver), str(params_file),
           str(prepared), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert seen == [{"device": "cuda:0", "backend": "nccl", "amp": True},
                    {"device": "cuda:1", "backend": "nccl", "amp": True}]
    a, b = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between the ranks"


# --- TensorRT -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engines(nano_pth: Path, prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The authors' nano exported at 416 px (raw, as the pipeline exports it), and its FP16 and INT8 engines
    (INT8: entropy calibration on 32 prepared train images, the ONNX Runtime INT8 model's modules kept float),
    with the profile the default params need."""
    _needs_tensorrt()
    from yolox.data.records import load_prepared
    from yolox.export.onnx_export import export_onnx
    from yolox.export.tensorrt import build_engine, profile_needs
    from yolox.models.build import build_model
    from yolox.models.checkpoint import load_weights
    from yolox.models.coco_classes import COCO_CLASSES

    folder = tmp_path_factory.mktemp("engines")
    net = build_model("yolox-nano", 80)
    load_weights(net, nano_pth)
    onnx_path = export_onnx(net.eval(), folder / "model.onnx", SIZE, COCO_CLASSES, "yolox-nano")
    params = PipelineParams()
    needs, timing = profile_needs(params), folder / "timing.cache"
    calib = [r.path for r in load_prepared(prepared, "train").records[:32]]
    return {"onnx": onnx_path,
            "fp16": build_engine(onnx_path, folder / "fp16.engine", SIZE, needs=needs, timing_cache=timing),
            "int8": build_engine(onnx_path, folder / "int8.engine", SIZE, needs=needs, precision="int8",
                                 calibration_images=calib, keep_float=params.export.int8_keep_float,
                                 timing_cache=timing)}


@pytest.mark.parametrize(("precision", "tolerance"), [("fp16", 0.01), ("int8", 0.03)])
def test_tensorrt_engine_ap_is_onnx_runtimes_within_tolerance(precision: str, tolerance: float,
                                                               engines: dict[str, Path],
                                                               prepared: Path) -> None:
    """AP50:95 on the prepared val split through the one evaluator (batches of eval.batch_size 8 and a partial
    last one): the engine's within ``tolerance`` of ONNX Runtime's FP32 model; the build config names this GPU
    and the profile the default params need (batch 1..8, 416 px)."""
    import tensorrt

    from yolox.data.records import load_prepared
    from yolox.evaluate.coco_eval import evaluate
    from yolox.export.tensorrt import TensorRTBackend
    from yolox.inference import OnnxBackend

    val, ev = load_prepared(prepared, "val"), EvalParams()
    assert len(val.records) % ev.batch_size, "the split should end with a partial batch"
    onnx_ap = evaluate(OnnxBackend(engines["onnx"]), val, SIZE, ev, progress=False).metrics["AP50_95"]
    backend = TensorRTBackend(engines[precision], engines["onnx"])
    engine_ap = evaluate(backend, val, SIZE, ev, progress=False).metrics["AP50_95"]
    print(f"{precision}: AP50:95 TensorRT {engine_ap:.4f}, ONNX Runtime {onnx_ap:.4f}")
    assert abs(engine_ap - onnx_ap) <= tolerance, POLYGRAPHY.format(onnx=engines["onnx"], precision=precision)
    build = backend.build
    assert (build["precision"], build["gpu"], build["tensorrt"]) == (precision, torch.cuda.get_device_name(),
                                                                     tensorrt.__version__)
    assert build["profile"]["batch"] == [1, 8, 8] and build["profile"]["side"] == [SIZE] * 3
    if precision == "int8":
        assert build["calibration"]["images"] == 32 and build["calibration"]["float_layers"] > 0


def test_benchmark_has_a_tensorrt_row_with_latency(nano_pth: Path, prepared: Path, tmp_path: Path) -> None:
    """``yolox benchmark`` with a throughput batch of 2 (the issue's case: AP is measured in batches of 8):
    the ``tensorrt`` row has its AP (within 0.01 of the end2end ONNX model's), latency and throughput."""
    _needs_tensorrt()
    from yolox.export.benchmark import run_benchmark

    ep = {"benchmark_warmup": 3, "benchmark_repeats": 20, "benchmark_batch": 2,
          "tensorrt_timing_cache": str(tmp_path / "timing.cache")}
    params = PipelineParams.model_validate({"export": ep})
    result = run_benchmark(params, str(nano_pth), str(prepared), "val", "yolox-nano",
                           formats=["onnx-end2end", "tensorrt"], out_dir=tmp_path, max_images=16)
    e2e, trt = result.row("onnx-end2end"), result.row("tensorrt")
    print(json.dumps(result.to_json()["rows"], indent=1))
    assert trt.status == "ok" and 0 < trt.p50_ms <= trt.p90_ms and trt.images_per_s > 0 and trt.size_mb > 0
    assert abs(trt.AP50_95 - e2e.AP50_95) <= 0.01


def test_pipeline_evaluates_logs_and_registers_the_engine(tmp_path: Path) -> None:
    """``yolox pipeline`` (tiny training on ``cuda:0``) with ``export.tensorrt=true``: the registered version
    carries the engine (artifact ``tensorrt/<engine>`` and its build config in the run), its AP on the val
    split the gate used, and the build config as tags; the engine downloaded from MLflow loads here."""
    _needs_tensorrt()
    import tensorrt
    from mlflow import MlflowClient

    from yolox.export.tensorrt import check_build_config

    raw = {"data": {"source": "coco128", "val_fraction": 0.2},
           "model": {"name": "yolox-nano", "input_size": SIZE, "weights": "yolox_nano.pth"},
           "augment": {"multiscale_range": 0},
           "train": {"epochs": 2, "batch_size": 8, "warmup_epochs": 1, "no_aug_epochs": 1,
                     "max_iters_per_epoch": 3, "eval_interval": 1, "workers": 2, "device": "cuda:0",
                     "basic_lr_per_img": 1.5625e-5},
           "export": {"check_images": 2, "tensorrt": True},
           "tracking": {"experiment": "gpu", "registered_model": "yolox-gpu"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / ".prefect")}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [str(Path(sys.executable).parent / "yolox"), "pipeline", "--params", "params.yaml", "--json"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    version = client.get_model_version("yolox-gpu", summary["version"])
    tags = version.tags
    assert (tags["tensorrt_precision"], tags["tensorrt_gpu"], tags["tensorrt_version"]) == (
        "fp16", torch.cuda.get_device_name(0), tensorrt.__version__)
    assert tags["tensorrt_val_set"] == summary["gate"]["candidate"]["val_set"]
    assert abs(float(tags["tensorrt_AP50_95"]) - float(tags["AP50_95"])) <= 0.01
    engine_artifact = tags["tensorrt_engine"]
    assert engine_artifact.startswith("tensorrt/")
    files = {a.path for a in client.list_artifacts(version.run_id, "tensorrt")}
    assert {engine_artifact, engine_artifact + ".json"} <= files
    run = client.get_run(version.run_id)
    assert run.data.tags["tensorrt"] == "built"
    assert run.data.metrics["export/tensorrt_AP50_95"] == pytest.approx(float(tags["tensorrt_AP50_95"]),
                                                                         abs=1e-4)
    local = Path(client.download_artifacts(version.run_id, "tensorrt", str(tmp_path / "download")))
    config = check_build_config(local / Path(engine_artifact).name)   # built here, bytes as recorded
    assert config["engine_sha256"] == tags["tensorrt_engine_sha256"]
