"""Benchmark: the training step, ours beside the authors' (``--peer``), same weights, same batches, same threads.

One step = what the trainer does per batch once the batch is in memory (:func:`yolox.train.trainer.train_step`:
forward, batched SimOTA, loss, backward, SGD step; then the EMA update), on 4 saved batches of 8 real coco128
images letterboxed to the input side with their real boxes (no augmentation: the data pipeline is
``bench/data.py``'s business), taken in turn. Start weights: the shared yolox-nano weights for nano, a seeded
fresh yolox-s (saved once, loaded by both sides) for s; train mode, the authors' optimizer groups, lr 0.01/64
per image.

With ``--peer PATH`` (``PATH/yolox`` their repository, ``PATH/venv`` its venv: ``../shared/peer/README.md``)
their step runs too (``authors_worker.py``: their model, their per-image SimOTA and loss, their optimizer and
EMA, in their trainer's order), in a worker process of their venv; ours runs in a worker process of this
venv; ``--pairs`` blocks of ``--steps`` steps alternate between them (the order swapped every pair). Printed:
the loss of the first step on both sides (same weights, same batch: the numerics must agree), per pair both
medians, the ratio theirs / ours and the load average; then the medians over pairs. Without ``--peer``, our
figures only. ``--profile`` adds the time per phase (forward, SimOTA, rest of the loss, backward, optimizer,
EMA) on both sides; ``--torch-profile`` an operator table of ours. ``--gflops``: our step's achieved GFLOP/s
(FLOPs counted by ``torch.utils.flop_counter`` over one step) against this machine's float32 sgemm and best 3x3
convolution at the same threads (the measure for large models: the share of the peak).

    .venv/bin/python bench/train_step.py [--peer /work/peer] [--models nano s] [--pairs 6] [--steps 5 2]
                                         [--threads 2] [--profile] [--torch-profile] [--contiguous] [--gflops]

Ends with one JSON line: ``{"bench": "train_step", "nano_ms": ..., "nano_authors_ms": ..., "nano_ratio": ...,
"nano_ratios": [...], "nano_load_avg": ..., "s_ms": ..., ...}`` (the ``authors``/``ratio`` keys with ``--peer``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import add_common_args, missing_dataset, parse_args, read_yolo_dataset
from sidebyside import alternate, authors_worker, blocks, ours_worker, print_pair

MODELS = {"nano": ("yolox-nano", 416), "s": ("yolox-s", 640)}
BATCH = 8
N_BATCHES = 4
LR_PER_IMG = 0.01 / 64
DEFAULT_STEPS = {"nano": 5, "s": 2}


def real_batches(dataset, size: int, n_batches: int, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """``n_batches`` batches of 8 coco128 images letterboxed to ``size`` with their boxes (collate layout)."""
    from yolox.config import AugmentParams
    from yolox.data.dataset import SampleKey, TrainDataset, collate

    train = TrainDataset(dataset, AugmentParams(hsv_prob=0.0, flip_prob=0.0), size, seed=seed, cache_mb=0)
    order = np.random.default_rng(seed).permutation(len(train))
    batches = []
    for b in range(n_batches):
        idx = order[(b * BATCH) % len(order):][:BATCH]
        batches.append(collate([train[SampleKey(int(i), size, False)] for i in idx]))
    return batches


def save_inputs(key: str, dataset, out: Path) -> tuple[Path, Path]:
    """The batches (``[(images, targets, counts), ...]``, NCHW float32) and start weights of model ``key``."""
    from yolox.assets import resolve_weights
    from yolox.models.build import build_model

    name, size = MODELS[key]
    batches = out / f"batches_{key}.pt"
    torch.save([tuple(t.contiguous() for t in b[:3]) for b in real_batches(dataset, size, N_BATCHES)], batches)
    if key == "nano":
        return batches, resolve_weights("yolox_nano.pth")
    torch.manual_seed(0)
    weights = out / f"{key}_seed0.pth"
    torch.save({"model": build_model(name, 80).state_dict()}, weights)
    return batches, weights


# ------------------------------------------------------------------------------------------ our worker


def worker(a: argparse.Namespace) -> None:
    """Our side (a worker process): the trainer's step on the saved batches."""
    from sidebyside import serve

    from yolox.models.build import build_model
    from yolox.models.checkpoint import read_state_dict
    from yolox.train import losses
    from yolox.train.ema import ModelEMA
    from yolox.train.optim import build_optimizer
    from yolox.train.trainer import prepare_for_training, train_step

    torch.set_num_threads(a.threads)
    model = build_model(a.model, 80)
    model.load_state_dict(read_state_dict(a.weights, "model"), strict=True)
    model.train()
    fmt = prepare_for_training(model, torch.device("cpu"), channels_last=not a.contiguous)
    batches = torch.load(a.batches, weights_only=True)
    optimizer = build_optimizer(model, lr=LR_PER_IMG * batches[0][0].shape[0])
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    ema = ModelEMA(model)
    state = {"i": 0}

    def step():
        images, targets, counts = batches[state["i"] % len(batches)]
        state["i"] += 1
        images = images.contiguous(memory_format=fmt)          # as the trainer's loop does
        loss = train_step(model, images, targets, counts, optimizer, scaler, model.strides)
        ema.update(model)
        return loss

    def setup(_: dict) -> dict:
        loss = step()
        for _ in range(a.warmup):
            step()
        return {"loss": loss.as_dict()}

    def run(req: dict) -> dict:
        times = []
        for _ in range(req["n"]):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return {"times": times}

    def profile(req: dict) -> dict:
        """Seconds per phase, the body of ``train_step`` with clocks between the phases."""
        phases = dict.fromkeys(("forward", "assign", "loss", "backward", "optimizer", "ema"), 0.0)
        original = losses.simota_assign

        def timed_assign(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                phases["assign"] += time.perf_counter() - t0

        losses.simota_assign = timed_assign
        try:
            for _ in range(req["n"]):
                images, targets, counts = batches[state["i"] % len(batches)]
                state["i"] += 1
                t0 = time.perf_counter()
                raw = model(images.contiguous(memory_format=fmt))
                t1 = time.perf_counter()
                loss = losses.yolox_loss(raw, targets, counts, tuple(images.shape[2:]), model.strides)
                t2 = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss.total).backward()
                t3 = time.perf_counter()
                scaler.step(optimizer)
                scaler.update()
                t4 = time.perf_counter()
                ema.update(model)
                t5 = time.perf_counter()
                for k, dt in zip(("forward", "loss", "backward", "optimizer", "ema"),
                                 (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                    phases[k] += dt
        finally:
            losses.simota_assign = original
        phases["loss"] -= phases["assign"]
        return {k: v / req["n"] for k, v in phases.items()}

    def flops(_: dict) -> dict:
        """Floating-point operations of one step (forward and backward: convolutions and matmuls, as
        ``torch.utils.flop_counter`` counts them, 2 per multiply-add)."""
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            step()
        return {"flops": counter.get_total_flops()}

    def peak(_: dict) -> dict:
        """This machine's float32 reference rates at ``--threads``: sgemm (2048 x 2048 matmul) and the best of
        a few 3x3 convolutions (channels_last, the shapes of a YOLOX neck), GFLOP/s, best of 5."""
        def seconds(fn) -> float:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

        def rate(fn, flop: float) -> float:
            fn()
            return flop / min(seconds(fn) for _ in range(5)) / 1e9

        m = torch.randn(2048, 2048)
        convs = {}
        with torch.no_grad():
            for c, hw in ((64, 160), (128, 80), (256, 40), (512, 20)):
                conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
                x = torch.randn(8, c, hw, hw).contiguous(memory_format=torch.channels_last)
                convs[f"conv3x3 {c}ch {hw}px"] = rate(lambda conv=conv, x=x: conv(x), 2 * 8 * c * c * 9 * hw * hw)
        best = max(convs, key=convs.get)
        return {"sgemm": rate(lambda: m @ m, 2 * 2048 ** 3), "best_conv": convs[best], "best_conv_shape": best}

    def torch_profile(req: dict) -> dict:
        from torch.profiler import profile as torch_profile

        with torch_profile() as prof:
            for _ in range(req["n"]):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30), file=sys.stderr)
        return {"table": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)}

    serve({"setup": setup, "run": run, "profile": profile, "torch_profile": torch_profile, "flops": flops,
           "peak": peak})


# ------------------------------------------------------------------------------------------ parent


def print_profile(name: str, ours: dict, theirs: dict | None) -> None:
    print(f"  {name} per phase (ms per step):")
    print("    ours:   " + "  ".join(f"{k} {v * 1000:.1f}" for k, v in ours.items())
          + f"  = {sum(ours.values()) * 1000:.1f}")
    if theirs:
        print("    theirs: " + "  ".join(f"{k} {v * 1000:.1f}" for k, v in theirs.items())
              + f"  = {sum(v for k, v in theirs.items() if k != 'assign') * 1000:.1f} (assign is inside forward+loss)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, data=True, peer="optional", pairs=True, threads=2)
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--steps", nargs="+", type=int, default=None,
                    help="timed steps per block, in --models order (default nano 5, s 2)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    ap.add_argument("--contiguous", action="store_true", help="ours in NCHW (default: channels_last, as trained)")
    ap.add_argument("--gflops", action="store_true",
                    help="our step's GFLOP/s against this machine's sgemm and best conv (float32)")
    ap.add_argument("--profile", action="store_true", help="time per phase on both sides")
    ap.add_argument("--torch-profile", action="store_true", help="an operator table of our step (stderr)")
    # worker mode (started by the parent)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--batches", help=argparse.SUPPRESS)
    args = parse_args(ap, argv)
    if args.worker:
        worker(args)
        return 0
    if missing_dataset(args.data):
        return 2

    dataset = read_yolo_dataset(args.data)
    steps = dict(zip(args.models, args.steps + args.steps[-1:] * len(args.models))) if args.steps else DEFAULT_STEPS
    print(f"train step: batch {BATCH} of real coco128 images and boxes ({N_BATCHES} batches in turn), "
          f"{args.threads} torch threads, torch {torch.__version__}, "
          f"{'side by side with the authors: ' + str(args.peer) if args.peer else 'ours only (no --peer)'}")
    result: dict[str, object] = {"bench": "train_step", "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="bench-train-step-") as tmp:
        for key in args.models:
            name, size = MODELS[key]
            batches, weights = save_inputs(key, dataset, Path(tmp))
            common = ["--model", name, "--weights", str(weights), "--batches", str(batches),
                      "--threads", str(args.threads), "--warmup", str(args.warmup)]
            ours = ours_worker("train_step.py", *common, *(["--contiguous"] if args.contiguous else []))
            theirs = authors_worker(args.peer, "train_step", *common) if args.peer else None
            with ours:
                first = ours.call("setup")["loss"]
                print(f"{name} @ {size}: first step loss ours {first['total_loss']:.5f} (num_fg {first['num_fg']:.0f})",
                      end="")
                if theirs is None:
                    print()
                    times = blocks(ours, args.pairs, {"op": "run", "n": steps[key]})
                    ms = statistics.median(times) * 1000
                    print(f"  ours {ms:.1f} ms/step ({BATCH / ms * 1000:.1f} img/s), median of {args.pairs} blocks "
                          f"of {steps[key]}: {[round(b * 1000, 1) for b in times]}")
                    result.update({f"{key}_ms": round(ms, 1), f"{key}_img_s": round(BATCH / ms * 1000, 2)})
                    if args.profile:
                        print_profile(name, ours.call("profile", n=steps[key]), None)
                else:
                    with theirs:
                        theirs_first = theirs.call("setup")["loss"]
                        print(f", theirs {theirs_first['total_loss']:.5f} (num_fg {theirs_first['num_fg']:.0f})")
                        sbs = alternate(ours, theirs, args.pairs, {"op": "run", "n": steps[key]},
                                        print_pair(name))
                        print(f"{name} @ {size}: ours {sbs.ours * 1000:.1f} ms/step, theirs {sbs.theirs * 1000:.1f} "
                              f"ms/step (medians of {args.pairs} blocks of {steps[key]}); median ratio "
                              f"{sbs.ratio:.2f}x; load average {sbs.load:.2f}")
                        result.update(sbs.as_dict(key))
                        result[f"{key}_first_loss"] = [round(first["total_loss"], 5),
                                                       round(theirs_first["total_loss"], 5)]
                        if args.profile:
                            print_profile(name, ours.call("profile", n=steps[key]),
                                          theirs.call("profile", n=steps[key]))
                if args.torch_profile:
                    print(ours.call("torch_profile", n=2)["table"])
                if args.gflops:
                    ms = float(result[f"{key}_ms"])
                    gflop = ours.call("flops")["flops"] / 1e9
                    pk = ours.call("peak")
                    rate = gflop / ms * 1000
                    print(f"  {name} step: {gflop:.0f} GFLOP (forward + backward) in {ms:.0f} ms = {rate:.1f} GFLOP/s; "
                          f"this machine at {args.threads} threads: sgemm {pk['sgemm']:.1f} GFLOP/s "
                          f"({rate / pk['sgemm']:.0%} of it), best conv {pk['best_conv']:.1f} GFLOP/s "
                          f"({pk['best_conv_shape']}; {rate / pk['best_conv']:.0%} of it)")
                    result.update({f"{key}_gflop": round(gflop, 1), f"{key}_gflop_s": round(rate, 1),
                                   f"{key}_sgemm_gflop_s": round(pk["sgemm"], 1),
                                   f"{key}_best_conv_gflop_s": round(pk["best_conv"], 1)})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
