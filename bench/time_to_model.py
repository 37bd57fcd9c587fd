"""Benchmark: from a RAW dataset to a CHECKED model, ours against the authors' tools doing the same job.

Protocol (issue 25, item 1: the headline figure). Per dataset (``--data raccoon coco128``, default both):

- raccoon: Pascal VOC as it ships (``$YOLOX_ASSETS_DIR/data/raccoon``: ``images/``, ``annotations/*.xml``, one
  class), recipe ``params/raccoon.yaml``;
- coco128: YOLO txt (``$YOLOX_ASSETS_DIR/data/coco128``, 80 classes), recipe ``params/finetune.yaml``.

Ours, one job as a user runs it: ``yolox pipeline --params <recipe> --json`` in a fresh work folder (its working
directory: a fresh MLflow SQLite store ``mlflow.db`` there, ``MLFLOW_TRACKING_URI=sqlite:///<work>/mlflow.db``, the
artifacts in ``<work>/mlartifacts``; ``data.prepared_dir``, ``train.output_dir``, ``export.onnx_path`` and
``tracking.runs_dir`` set into it with ``--set``): prepare (validate, split, write the versioned dataset), train,
evaluate (COCO AP on the val split), export (ONNX, checked against PyTorch with ONNX Runtime), register, gate. Its
phases are the ``seconds`` of the summary it prints; its wall time (imports included) is measured here.
``--server`` runs ours once more against a real tracking server this script starts (``mlflow server
--backend-store-uri sqlite:///... --artifacts-destination ... --port <free>``, waited for, stopped at the end):
the column "ours + server" (the server's start-up, before the run, is printed apart).

Theirs, the authors' tools in their venv (``--peer PATH``: ``PATH/yolox``, ``PATH/venv``; ``../shared/peer/
README.md``), one process per step, each timed from start to exit (imports included):

1. prepare: raw -> their COCO layout (``annotations/train.json`` and ``val.json``, ``train2017/`` and ``val2017/``
   linking the RAW images), ``bench/authors_tools.py coco``: the conversion a user of their code writes (their
   repository has none), from the raw VOC XML / YOLO txt files, for the SAME split as ours: the file lists and the
   class order of our prepare of the recipe's ``data`` params, run first and untimed (``<work>/split``; ours
   prepares again inside its pipeline, and the bench checks that its run used the same file lists). Category ids
   ``1..N`` in our class order (their ``COCODataset`` maps the sorted ids to ``0..N-1``, as ``learning.py``'s
   ``peer_layout``).
2. train: ``bench/authors_loop.py`` (their Exp, loader, optimizer, scheduler and EMA in the order of their
   Trainer) with the recipe's numbers: epochs, batch, warm-up, no-aug, lr per image, input size, seed, workers
   (``--epochs`` and ``train.epochs=`` lower the phases as our params do). The same start weights as ours:
   raccoon, the authors' COCO nano weights with FRESH class predictors (``learning.py``'s ``start_weights
   newclass``: a model built after ``torch.manual_seed(0)``, the release weights loaded but its class predictors
   kept: exactly what our trainer builds from the recipe's ``yolox_nano.pth`` fallback, checked here tensor by
   tensor before the run); coco128, ``yolox_nano.pth`` itself (80 classes kept). Building that start file is
   untimed (ours does the same inside its train phase).
3. evaluate: their ``COCOEvaluator`` from their ``Exp.get_evaluator`` (an exp file this script writes into the
   work folder: class count, ``data_dir``, ``val.json``, test size 416; ``authors_tools.py eval``; their
   ``tools/eval.py`` calls CUDA unconditionally) on their EMA weights: their AP50:95 and AP50.
4. export: their ``tools/export_onnx.py`` (the same exp file, their EMA checkpoint; ``authors_tools.py export``
   says what it needs on torch 2.13), then the check a careful user does (``authors_tools.py check``): ONNX
   Runtime against their PyTorch model on 8 val images, the largest absolute difference of the raw outputs. In the
   table, theirs' export row is export + check (ours checks inside its export stage).

Then both final models (the EMA weights of each side) are evaluated by ONE evaluator as well (ours:
``yolox.evaluate.coco_eval.evaluate`` on our prepared val split), so the AP comparison does not depend on two
evaluators; both figures are printed.

Fairness: same machine, same time window. By default the two sides run AT THE SAME TIME (ours' one process and
theirs' chain of steps), each limited to ``--threads`` torch/OMP threads (default 1: ``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` in both environments, ``torch.set_num_threads`` in theirs' steps) and to ``--workers`` loader
workers (default 1: ``--set train.workers=N`` for ours, ``--workers N`` for authors_loop and their evaluator's
loader), so both see the same load while both run (the one that finishes first leaves the other alone on the
machine: the side's end times are printed). ``--sequential``: ours, then theirs, each with the whole machine
(``--threads 0`` = all cores, the default there). The 1-minute load average is recorded before and after each side.
What is not the same, by design (each side as its users run it): ours evaluates the EMA model on the val split
inside training every ``train.eval_interval`` epochs (and after the last one; the authors' loop here runs none:
their own Trainer would, every ``exp.eval_interval`` = 10 epochs), and ours' pipeline does more than theirs'
steps (versioned data, tracking, registry, the gate's evaluation of the start weights). The bench prints the
number of those in-training evaluations and their detection time (from ours' log: ``on N images (X ms/img)``).
The authors' fast COCOeval extension is compiled once per machine on its
first use (``~/.cache/torch_extensions``, ~15 s here): not counted if it is there already.

Printed per dataset: a table phase | ours s | theirs s | ratio (theirs / ours) [| ours + server s], the sum of the
phases and the wall time of the whole job (the headline ratio), the val AP50:95 and AP50 of each side by its own
evaluator and by the shared one, the ONNX check figures, and what was not the same. Ends with one JSON line.

    YOLOX_ASSETS_DIR=/work/shared .venv/bin/python bench/time_to_model.py --peer /work/peer \
        [--data raccoon coco128] [--threads 1] [--workers 1] [--sequential] [--server] [--epochs N] [--out DIR]

Quick check end to end (minutes): ``YOLOX_ASSETS_DIR=/work/shared .venv/bin/python bench/time_to_model.py --peer
/work/peer --data raccoon --epochs 1``. Without ``--peer`` only our side runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import (
    REPO,
    add_common_args,
    assets_dir,
    authors_loop_argv,
    parse_args,
    peer_env,
    use_asset_mirror,
    work_dir,
)
from learning import start_weights

from yolox.assets import resolve_weights
from yolox.config import PipelineParams, load_params, registry_reference
from yolox.data.prepare import prepare_dataset
from yolox.data.records import load_prepared
from yolox.evaluate.coco_eval import evaluate
from yolox.inference import TorchBackend
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights
from yolox.train.torchrun import free_port
from yolox.train.trainer import seed_everything

DATASETS = {"raccoon": {"recipe": "params/raccoon.yaml", "format": "voc"},
            "coco128": {"recipe": "params/finetune.yaml", "format": "yolo"}}
OUR_PHASES = ("prepare", "start-run", "check-changes", "warm-start", "train", "evaluate", "export", "register", "gate")
THEIR_STEP = {"prepare": ("prepare",), "train": ("train",), "evaluate": ("evaluate",), "export": ("export", "check")}
COCO_CLASSES = 80
TOOLS = HERE / "authors_tools.py"
EXP_FILE = '''"""The authors' yolox-nano Exp for {name} (their exps/example/custom pattern), written by
bench/time_to_model.py: the class count, the COCO layout of the split, test size {size}."""

from yolox.exp.default.yolox_nano import Exp as NanoExp


class Exp(NanoExp):
    def __init__(self):
        super().__init__()
        self.num_classes = {classes}
        self.data_dir = {data_dir!r}
        self.train_ann, self.val_ann = "train.json", "val.json"
        self.input_size = self.test_size = ({size}, {size})
        self.data_num_workers = {workers}
        self.output_dir = {output_dir!r}
        self.exp_name = "time_to_model_{name}"
'''


def load() -> float:
    return round(os.getloadavg()[0], 2)


def thread_env(env: dict[str, str], threads: int) -> dict[str, str]:
    """``env`` with torch/OMP limited to ``threads`` threads."""
    return {**env, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def last_json(text: str) -> dict:
    """The last line of ``text`` that is a JSON object."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line")


# ------------------------------------------------------------------------------------------ ours


def our_env(uri: str, threads: int) -> dict[str, str]:
    """This environment without any MLFLOW_* setting of the caller, the tracking URI ``uri``, ``threads``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") or k == "MLFLOW_DISABLE_TELEMETRY"}
    return thread_env({**env, "MLFLOW_TRACKING_URI": uri, "YOLOX_ASSETS_DIR": str(assets_dir()), "COLUMNS": "200"},
                      threads)


def run_ours(folder: Path, recipe: Path, overrides: list[str], uri: str | None, threads: int) -> dict:
    """``yolox pipeline --params recipe --json`` in the fresh folder ``folder`` (its working directory), against
    ``uri`` (default: a fresh SQLite store there). Returns the summary's figures, ``seconds`` (its phases),
    ``wall`` (the process, imports included) and the load average before and after."""
    folder.mkdir(parents=True)
    uri = uri or f"sqlite:///{folder / 'mlflow.db'}"
    sets = [f"data.prepared_dir={folder / 'prepared'}", f"train.output_dir={folder / 'train'}",
            f"export.onnx_path={folder / 'models' / 'model.onnx'}", f"tracking.runs_dir={folder / 'runs'}", *overrides]
    yolox = Path(sys.executable).with_name("yolox")
    argv = [str(yolox), "pipeline", "--params", str(recipe), "--json", *(x for s in sets for x in ("--set", s))]
    (folder / "command.txt").write_text(" ".join(argv) + "\n")
    load0, t0 = load(), time.perf_counter()
    with open(folder / "pipeline.log", "w") as log:
        proc = subprocess.run(argv, cwd=folder, env=our_env(uri, threads), stdout=subprocess.PIPE, stderr=log,
                              text=True, check=False)
    wall, load1 = time.perf_counter() - t0, load()
    if proc.returncode != 0:
        raise SystemExit(f"ours failed (exit {proc.returncode}): see {folder / 'pipeline.log'}")
    summary = json.loads(proc.stdout)
    run_dir = Path(summary["run_dir"])
    return {"wall": round(wall, 1), "seconds": summary.get("seconds", {}), "AP50_95": summary["AP50_95"],
            "AP50": summary["AP50"], "onnx_max_abs_diff": summary["onnx_max_abs_diff"], "run_dir": str(run_dir),
            "checkpoint": str(run_dir / "train" / "last.pth"), "version": summary["version"],
            "promoted": summary["promoted"], "eval_s_in_train": eval_seconds_in_train(folder / "pipeline.log"),
            "load_before": load0, "load_after": load1, "ended": time.time()}


class TrackingServer:
    """``mlflow server`` on a free loopback port, SQLite + proxied artifacts in ``folder``, in its own session
    (stopped with its workers by :meth:`stop`)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        argv = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
                f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "artifacts"),
                "--host", "127.0.0.1", "--port", str(self.port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.log_path = folder / "server.log"
        t0 = time.perf_counter()
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(argv, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"mlflow server did not answer on {self.uri}: see {self.log_path}")
            time.sleep(0.3)
        self.startup = round(time.perf_counter() - t0, 1)

    def stop(self) -> None:
        """SIGTERM to the server's process group (the one it started), SIGKILL after 20 s."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    break


# ------------------------------------------------------------------------------------------ theirs


def run_theirs(args: argparse.Namespace, folder: Path, raw: Path, fmt: str, split_file: Path, start: Path,
               params: PipelineParams, classes: int, threads: int) -> dict:
    """The authors' steps (module docstring), one process each, timed; returns ``steps``: per step its wall time
    and what it printed, and the load average before and after."""
    folder.mkdir(parents=True)
    coco, ema, onnx = folder / "coco", folder / "ema.pth", folder / "model.onnx"
    exp = folder / "exp_nano.py"
    tp, size = params.train, params.model.input_size
    exp.write_text(EXP_FILE.format(name=folder.parent.name, size=size, classes=classes, data_dir=str(coco),
                                   workers=args.workers, output_dir=str(folder / "YOLOX_outputs")))
    py, tool = args.peer_python, str(TOOLS)
    t = ["--threads", str(threads)]
    steps_argv = {
        "prepare": [py, tool, "coco", "--raw", str(raw), "--format", fmt, "--split", str(split_file),
                    "--out", str(coco)],
        "train": authors_loop_argv(py, "--data-dir", str(coco), "--ann", "train.json", "--weights", str(start),
                                   "--out", str(ema), "--model", params.model.name, "--num-classes", str(classes),
                                   "--seed", str(tp.seed), "--epochs", str(tp.epochs), "--warmup",
                                   str(tp.warmup_epochs), "--no-aug", str(tp.no_aug_epochs), "--batch",
                                   str(tp.batch_size), "--size", str(size), "--lr-per-img", repr(tp.basic_lr_per_img),
                                   "--workers", str(args.workers), *t),
        "evaluate": [py, tool, "eval", "--exp", str(exp), "--ckpt", str(ema), "--batch", str(params.eval.batch_size),
                     *t],
        "export": [py, tool, "export", "--exp", str(exp), "--ckpt", str(ema), "--out", str(onnx), *t],
        "check": [py, tool, "check", "--exp", str(exp), "--ckpt", str(ema), "--onnx", str(onnx),
                  "--images", str(params.export.check_images), *t],
    }
    env = thread_env(peer_env(args.peer_src), threads)
    steps: dict[str, dict] = {}
    load0 = load()
    for name, argv in steps_argv.items():
        (folder / f"{name}.command.txt").write_text(" ".join(argv) + "\n")
        t0 = time.perf_counter()
        with open(folder / f"{name}.log", "w") as log:
            proc = subprocess.run(argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                                  check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"theirs {name} failed (exit {proc.returncode}): see {folder / f'{name}.log'}")
        if name == "train":
            (folder / "train.epochs.jsonl").write_text(proc.stdout)
            meta = json.loads(Path(str(ema) + ".json").read_text())
            out = {"seconds": round(meta["seconds"], 1), "iters_per_epoch": meta["iters_per_epoch"],
                   "last_epoch": meta["history"][-1] if meta["history"] else {}}
        else:
            out = last_json(proc.stdout)
        steps[name] = {"wall": round(wall, 1), **out}
    return {"steps": steps, "checkpoint": str(ema), "load_before": load0, "load_after": load(), "ended": time.time()}


# ------------------------------------------------------------------------------------------ shared pieces


def start_file(params: PipelineParams, work: Path, names: list[str]) -> Path:
    """The start weights both sides load (module docstring), checked equal to what our trainer builds."""
    weights = params.model.weights
    if weights is None:
        raise SystemExit("the recipe trains from scratch (model.weights null): not a fine-tune recipe")
    if registry_reference(weights) is not None:       # champion: a fresh store has none, the fallback is used
        weights = params.model.fallback_weights
        if weights is None:
            raise SystemExit("model.weights names a registry version and there is no model.fallback_weights")
    release = resolve_weights(weights)
    start = release
    if len(names) != COCO_CLASSES:
        if release.name != "yolox_nano.pth" or params.model.name != "yolox-nano":
            raise SystemExit(f"new-class start weights are built for yolox-nano from yolox_nano.pth, not {weights}")
        start = start_weights("newclass", work, None, names)
    seed_everything(params.train.seed)                 # what yolox/train/trainer.py does before loading
    model = build_model(params.model.name, len(names))
    load_weights(model, release, names=names)
    ref = torch.load(start, map_location="cpu", weights_only=True)["model"]
    own = model.state_dict()
    if set(own) != set(ref) or any(not torch.equal(own[k], ref[k]) for k in own):
        raise SystemExit(f"{start} differs from the start our trainer builds from {release}")
    return start


def shared_eval(weights: Path, params: PipelineParams, val_set, threads: int) -> dict:
    """AP50:95 and AP50 of ``weights`` on our val split by our evaluator, with ``threads`` torch threads, timed."""
    torch.set_num_threads(threads)
    model = build_model(params.model.name, val_set.num_classes)
    load_weights(model, weights)
    t0 = time.perf_counter()
    m = evaluate(TorchBackend(model.eval()), val_set, params.model.input_size, params.eval, progress=False).metrics
    return {"AP50_95": round(float(m["AP50_95"]), 4), "AP50": round(float(m["AP50"]), 4),
            "seconds": round(time.perf_counter() - t0, 1)}


def split_lists(prepared: Path) -> dict[str, list[str]]:
    """``{"train": [file names], "val": [...]}`` of a prepared dataset."""
    return {part: [i["file_name"] for i in json.loads((prepared / "annotations" / f"{part}.json").read_text())["images"]]
            for part in ("train", "val")}


def in_training_evals(params: PipelineParams) -> int:
    """How many times our trainer evaluates the EMA model on val (every ``eval_interval`` epochs and the last)."""
    tp = params.train
    return sum(1 for e in range(1, tp.epochs + 1) if e % tp.eval_interval == 0 or e == tp.epochs)


EVAL_LINE = re.compile(r"AP50:95 [\d.]+ AP50 [\d.]+ on (\d+) images \(([\d.]+) ms/img\)")


def eval_seconds_in_train(log: Path) -> float | None:
    """Detection seconds of the evaluations inside ours' train stage, from its log (``yolox.evaluate``'s line
    ``AP50:95 .. AP50 .. on N images (X ms/img)``, between ``stage train ...`` and ``stage train done``)."""
    text = " ".join(log.read_text(errors="replace").split())       # the console wraps long records
    start, end = text.find("stage train ..."), text.find("stage train done")
    if start < 0 or end < 0:
        return None
    return round(sum(int(n) * float(ms) for n, ms in EVAL_LINE.findall(text[start:end])) / 1000, 1)


# ------------------------------------------------------------------------------------------ one dataset


def run_dataset(name: str, args: argparse.Namespace, root: Path) -> dict:
    spec = DATASETS[name]
    work = root / name
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"{work} is not empty: give a fresh --out")
    work.mkdir(parents=True, exist_ok=True)
    recipe = (REPO / spec["recipe"]).resolve()
    overrides = [f"train.workers={args.workers}", *([f"train.epochs={args.epochs}"] if args.epochs else [])]
    params = load_params(recipe, overrides)
    tp = params.train
    if tp.close_mosaic_epochs is not None and tp.close_mosaic_epochs != tp.no_aug_epochs + 1 and not args.epochs:
        print(f"note: {spec['recipe']} closes the mosaic {tp.close_mosaic_epochs} epochs before the end, the authors' "
              f"trainer at no_aug + 1 = {tp.no_aug_epochs + 1}: the phases differ", flush=True)
    raw = assets_dir() / "data" / name
    if not raw.is_dir():
        raise SystemExit(f"{raw} not found: set YOLOX_ASSETS_DIR (../shared/peer/README.md)")

    # the split, untimed: our prepare of the recipe's data params
    prep = prepare_dataset(params.data, work / "split")
    names = list(prep.names)
    lists = split_lists(prep.out_dir)
    split_file = work / "split.json"
    split_file.write_text(json.dumps({"names": names, **lists}))
    val_set = load_prepared(prep.out_dir, "val")
    start = start_file(params, work, names) if args.peer_python else None
    print(f"\n== {name}: {len(names)} class(es), {len(lists['train'])} train / {len(lists['val'])} val images "
          f"({raw}, recipe {spec['recipe']}{', ' + ' '.join(overrides)}); "
          f"{'sequential' if args.sequential else 'at the same time'}, {args.run_threads} thread(s), "
          f"{args.workers} worker(s); work folder {work}; load average {load():.2f}", flush=True)
    if start is not None:
        print(f"start weights of both sides: {start} (equal, tensor by tensor, to what our trainer builds)", flush=True)

    def ours() -> dict:
        return run_ours(work / "ours", recipe, overrides, None, args.run_threads)

    def theirs() -> dict:
        return run_theirs(args, work / "theirs", raw, spec["format"], split_file, start, params, len(names),
                          args.run_threads)

    t0 = time.time()
    result: dict = {}
    if args.peer_python and not args.sequential:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            jobs = {"ours": pool.submit(ours), "theirs": pool.submit(theirs)}
            result = {side: job.result() for side, job in jobs.items()}
    else:
        result["ours"] = ours()
        if args.peer_python:
            result["theirs"] = theirs()
    for side in result.values():
        side["ended_after"] = round(side.pop("ended") - t0, 1)
    if args.server:
        server = TrackingServer(work / "server")
        try:
            result["ours_server"] = run_ours(work / "ours_server", recipe, overrides, server.uri, args.run_threads)
            result["ours_server"]["server_startup"] = server.startup
        finally:
            server.stop()
        result["ours_server"].pop("ended")

    # the same split? ours prepared again inside its pipeline
    o = result["ours"]
    same_split = split_lists(Path(o["run_dir"]) / "data") == lists
    # one evaluator for both models
    shared = {"ours": shared_eval(Path(o["checkpoint"]), params, val_set, args.run_threads)}
    if "theirs" in result:
        shared["theirs"] = shared_eval(Path(result["theirs"]["checkpoint"]), params, val_set, args.run_threads)
    n_evals = in_training_evals(params)
    summary = {"classes": len(names), "train_images": len(lists["train"]), "val_images": len(lists["val"]),
               "recipe": spec["recipe"], "overrides": overrides, "same_split": same_split, **result,
               "shared_eval": shared, "ours_in_training_evals": n_evals,
               "eval_interval": params.train.eval_interval}
    if "theirs" in result:
        theirs_wall = sum(s["wall"] for s in result["theirs"]["steps"].values())
        summary["theirs"]["wall"] = round(theirs_wall, 1)
        summary["ratio"] = round(theirs_wall / o["wall"], 3)
    print_dataset(name, summary)
    return summary


def print_dataset(name: str, s: dict) -> None:
    o, t, srv = s["ours"], s.get("theirs"), s.get("ours_server")

    def cell(v: float | None) -> str:
        return f"{v:10.1f}" if v is not None else f"{'-':>10s}"

    def ratio(a: float | None, b: float | None) -> str:
        return f"{b / a:8.2f}x" if a and b is not None else f"{'-':>9s}"

    head = f"{'phase':22s} {'ours s':>10s} {'theirs s':>10s} {'ratio':>9s}" + (f" {'ours+server s':>14s}" if srv else "")
    print(f"\n{name}: time to a checked model (ratio = theirs / ours)", flush=True)
    print(head)
    print("-" * len(head))
    for phase in OUR_PHASES:
        ours_s = o["seconds"].get(phase)
        theirs_s = None
        if t is not None and phase in THEIR_STEP:
            theirs_s = sum(t["steps"][k]["wall"] for k in THEIR_STEP[phase])
        label = phase + (" (+ check)" if phase == "export" else "")
        row = f"{label:22s} {cell(ours_s)} {cell(theirs_s)} {ratio(ours_s, theirs_s)}"
        if srv:
            row += f" {cell(srv['seconds'].get(phase)):>14s}"
        print(row)
    print("-" * len(head))
    inproc = sum(v["seconds"] for v in t["steps"].values()) if t else None
    row = f"{'total (in process)':22s} {cell(o['seconds'].get('total'))} {cell(inproc)} " \
          f"{ratio(o['seconds'].get('total'), inproc)}"
    print(row + (f" {cell(srv['seconds'].get('total')):>14s}" if srv else ""))
    row = f"{'wall (process, imports)':22s} {cell(o['wall'])} {cell(t['wall'] if t else None)} " \
          f"{ratio(o['wall'], t['wall'] if t else None)}"
    print(row + (f" {cell(srv['wall']):>14s}" if srv else ""), flush=True)
    if t is not None:
        st = t["steps"]
        print(f"theirs' steps are process walls (imports included); in-process: train loop {st['train']['seconds']:.1f} s, "
              f"eval {st['evaluate']['seconds']:.1f} s, export {st['export']['seconds']:.1f} s + check "
              f"{st['check']['seconds']:.1f} s ({st['export']['wall']:.1f} + {st['check']['wall']:.1f} s walls); "
              f"prepare: {st['prepare']['train']['images']} train / {st['prepare']['val']['images']} val images, "
              f"{st['prepare']['train']['boxes']} / {st['prepare']['val']['boxes']} boxes")
    print(f"load average: ours {o['load_before']:.2f} -> {o['load_after']:.2f} (ended after {o['ended_after']:.0f} s)"
          + (f"; theirs {t['load_before']:.2f} -> {t['load_after']:.2f} (ended after {t['ended_after']:.0f} s)"
             if t else ""))
    if srv:
        print(f"ours + server: mlflow server up in {srv['server_startup']:.1f} s (before the run, not counted); "
              f"ran after the pair, load average {srv['load_before']:.2f} -> {srv['load_after']:.2f}")
    sh = s["shared_eval"]
    print(f"\n{name}: val AP ({s['val_images']} images)        AP50:95    AP50")
    print(f"  ours, own evaluator (pipeline)   {o['AP50_95']:.4f}  {o['AP50']:.4f}")
    print(f"  ours, shared evaluator           {sh['ours']['AP50_95']:.4f}  {sh['ours']['AP50']:.4f}")
    if t is not None:
        ev = t["steps"]["evaluate"]
        print(f"  theirs, own evaluator            {ev['AP50_95']:.4f}  {ev['AP50']:.4f}")
        print(f"  theirs, shared evaluator         {sh['theirs']['AP50_95']:.4f}  {sh['theirs']['AP50']:.4f}")
    if srv:
        print(f"  ours + server, own evaluator     {srv['AP50_95']:.4f}  {srv['AP50']:.4f}")
    print(f"ONNX check, max |onnx - torch| on the raw outputs: ours {o['onnx_max_abs_diff']:.2e}"
          + (f", theirs {t['steps']['check']['max_abs_diff']:.2e} ({t['steps']['check']['images']} val images)"
             if t else ""))
    print(f"not the same: ours' train phase holds {s['ours_in_training_evals']} evaluation(s) of the EMA model on val "
          f"(train.eval_interval {s['eval_interval']}; their detection took {o['eval_s_in_train'] or float('nan'):.1f} s "
          "by its log, COCOeval apart), "
          "theirs none; ours also versions the data, tracks, registers and gates (the gate evaluates the start "
          f"weights too). Same split as the one theirs used: {'yes' if s['same_split'] else 'NO'}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, peer_venv="optional", threads=0, out=True,
                    threads_help="torch/OMP threads per side (0: 1 at the same time, all cores with --sequential)",
                    out_help="work folder (default: a new temporary one)")
    ap.add_argument("--data", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--workers", type=int, default=1, help="loader workers per side")
    ap.add_argument("--sequential", action="store_true", help="ours, then theirs, each with the whole machine")
    ap.add_argument("--server", action="store_true", help="also ours against a real mlflow server (its own column)")
    ap.add_argument("--epochs", type=int, default=None, help="override both sides' epochs (quick check: 1)")
    args = parse_args(ap, argv)
    use_asset_mirror()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.run_threads = args.threads or ((os.cpu_count() or 1) if args.sequential else 1)
    if args.peer_python and subprocess.run([args.peer_python, "-c", "import onnx, onnxruntime"],
                                           capture_output=True, check=False).returncode != 0:
        raise SystemExit(f"{args.peer_python}: no onnx/onnxruntime for their export check: "
                         f"{Path(args.peer_python).parent / 'pip'} install onnx onnxruntime")
    root = work_dir(args.out, "yolox-ttm-")
    root.mkdir(parents=True, exist_ok=True)
    load0 = load()
    results = {name: run_dataset(name, args, root) for name in args.data}
    print(json.dumps({"bench": "time_to_model", "mode": "sequential" if args.sequential else "same_time",
                      "threads": args.run_threads, "workers": args.workers, "epochs": args.epochs,
                      "peer": bool(args.peer_python), "server": args.server, "out": str(root),
                      "load_before": load0, "load_after": load(), **results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
