"""Benchmark: single-image predict end to end (read the image from disk -> detections in original pixels), ours
now beside the previous implementation (commit ``ccd9446``, issue 13) and, with ``--peer``, the authors' demo path
(issue 14), for PyTorch and ONNX Runtime (raw and end2end graphs).

Sides, each a worker process of its own (2 threads each: torch intra-op threads, ONNX Runtime intra-op threads):

- ``new``: this checkout: :func:`yolox.serve.predict.read_image` (decoded once, checked as ``prepare`` checks it) and
  :func:`yolox.inference.detect` with ``clip=True`` (what ``yolox predict`` and serving run), on a
  :func:`~yolox.inference.load_model` backend (PyTorch: Conv+BN fused, channels-last) or an
  :class:`~yolox.inference.OnnxBackend` of the raw or end2end export;
- ``old``: the package as it was at ``--previous`` (default ``ccd9446``), extracted with ``git archive`` into a temp
  folder and imported from there: ``cv2.imread`` and its ``detect`` (that commit's predict path). It has no end2end
  graph: the ``onnx-end2end`` row compares with its raw ONNX path (the serving path before and after);
- ``authors`` (``--peer PATH``: ``PATH/yolox`` their repository, ``PATH/venv`` its venv;
  ``../shared/peer/README.md``): their ``tools/demo.py`` ``Predictor.inference`` (``cv2.imread``, ``ValTransform``,
  the model, ``postprocess`` with ``class_agnostic=True`` as the demo calls it) on the same weights and images,
  boxes divided by the ratio (their ``visual``); the model unfused (the demo's default; ``--authors-fuse`` for
  their ``--fuse``). Their loguru sink is removed (no per-image log line timed). Their side is PyTorch only: it
  is the reference of every row.

The same ``--images`` coco128 images, thresholds (score 0.25, NMS IoU 0.45: ``serve.*``), input 416. Before timing,
every side answers the detections of every image (agreement printed: same class, IoU >= 0.9, |score diff| <= 0.01)
and profiles its phases (``profile``: read, letterbox, model, decode + NMS, drawing), printed per backend. Timing:
``--pairs`` rounds; in each, every side runs one block (one pass over the images, the median per image is the
block's figure), the order of the sides rotating from round to round; per round the ratio of each side to ``new``
(how many times faster ours is), then the medians and the 1-minute load average.

    .venv/bin/python bench/predict.py [--peer /work/peer] [--images 16] [--pairs 6] [--threads 2]

Ends with one JSON line: ``{"bench": "predict", "<backend>": {"ms", "previous_ms", "previous_ratio",
"previous_ratios", "authors_ms", "authors_ratio", "authors_ratios", "load_avg", "agree_previous",
"agree_authors"}, ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from common import add_common_args, assets_dir, parse_args
from sidebyside import Worker, authors_worker  # bench/sidebyside.py

BACKENDS = ("pytorch", "onnx-raw", "onnx-end2end")
CONF, NMS, MAX_DET, SIZE = 0.25, 0.45, 100, 416


# --- the workers of this venv (new and old) ---------------------------------------------------------------------


def worker(a: argparse.Namespace) -> None:
    """``new`` or ``old`` (whichever ``yolox`` package is first on the path) for ``a.backend``."""
    import cv2
    import numpy as np
    import torch
    from sidebyside import serve

    torch.set_num_threads(a.threads)
    images = Path(a.images).read_text().split()
    new = a.impl == "new"
    from yolox.inference import OnnxBackend, detect, load_model, preprocess

    if a.backend == "pytorch":
        backend = load_model(a.weights, "yolox-nano")[0]
    else:
        path = a.end2end if a.backend == "onnx-end2end" and new else a.onnx
        backend = OnnxBackend(path, threads=a.threads)
    if new:
        from yolox.serve.predict import read_image

        def once(path: str):
            img = read_image(Path(path))
            return detect(backend, [img], SIZE, CONF, NMS, MAX_DET, clip=True)[0]
    else:
        def once(path: str):
            return detect(backend, [cv2.imread(path)], SIZE, CONF, NMS, MAX_DET)[0]

    def setup(_: dict) -> dict:
        dets = [once(p) for p in images]
        return {"dets": [np.concatenate([d.boxes, d.scores[:, None], d.labels[:, None]], 1).tolist() for d in dets]}

    def run(req: dict) -> dict:
        times = []
        for k in range(req["n"]):
            t0 = time.perf_counter()
            once(images[k % len(images)])
            times.append(time.perf_counter() - t0)
        return {"times": times}

    def profile(req: dict) -> dict:
        """Mean milliseconds per phase over ``n`` images (the phases of this side's path)."""
        from yolox.ops.decode import decode_outputs
        from yolox.ops.nms import postprocess

        phases: dict[str, float] = {}

        def timed(name, fn, *args):
            t0 = time.perf_counter()
            out = fn(*args)
            phases[name] = phases.get(name, 0.0) + (time.perf_counter() - t0) * 1000 / req["n"]
            return out

        if new:
            from yolox.inference import detect_batch
            from yolox.ops.draw import draw
            from yolox.ops.nms import postprocess_raw
            from yolox.serve.predict import read_image
        else:
            from yolox.ops.draw import draw
        names = [str(i) for i in range(80)]
        for k in range(req["n"]):
            path = images[k % len(images)]
            img = timed("read", read_image, Path(path)) if new else timed("read", cv2.imread, path)
            batch, ratios = timed("letterbox", preprocess, [img], SIZE)
            if new and a.backend == "onnx-end2end":
                det = timed("model (graph with NMS)", detect_batch, backend, batch, CONF, NMS, MAX_DET)[0]
            else:
                out = timed("model", backend, batch)
                if new:
                    det = timed("decode + NMS", postprocess_raw, out, (SIZE, SIZE), tuple(backend.strides), CONF,
                                NMS, MAX_DET)[0]
                else:
                    dec = timed("decode", decode_outputs, out, (SIZE, SIZE), backend.strides)
                    det = timed("NMS", postprocess, dec, CONF, NMS, MAX_DET)[0]
            det.boxes /= ratios[0]
            timed("draw", draw, img, det, names)
        return phases

    serve({"setup": setup, "run": run, "profile": profile})


# --- the parent ------------------------------------------------------------------------------------------------


def previous_package(ref: str, dest: Path) -> Path:
    """The ``yolox`` package of commit ``ref`` (``git archive``) under ``dest``; exits with a message without git."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "yolox"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"cannot extract yolox/ of {ref} with git archive ({err}): run from a git checkout") from None
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def ours(impl: str, backend: str, pythonpath: Path, common: list[str]) -> Worker:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return Worker(impl, [sys.executable, str(HERE / "predict.py"), "--worker", "--impl", impl, "--backend", backend,
                         *common], env=env, cwd=str(pythonpath))


def agreement(a: list[list[list[float]]], b: list[list[list[float]]]) -> tuple[int, int]:
    """(detections of ``a`` with a match in ``b``, detections of ``a``): same class, IoU >= 0.9, |score| <= 0.01."""
    import numpy as np

    hit = total = 0
    for da, db in zip(a, b):
        db = np.asarray(db).reshape(-1, 6)
        for x0, y0, x1, y1, s, c in da:
            total += 1
            if not len(db):
                continue
            iw = np.clip(np.minimum(x1, db[:, 2]) - np.maximum(x0, db[:, 0]), 0, None)
            ih = np.clip(np.minimum(y1, db[:, 3]) - np.maximum(y0, db[:, 1]), 0, None)
            inter = iw * ih
            iou = inter / ((x1 - x0) * (y1 - y0) + (db[:, 2] - db[:, 0]) * (db[:, 3] - db[:, 1]) - inter)
            hit += bool(((db[:, 5] == c) & (iou >= 0.9) & (np.abs(db[:, 4] - s) <= 0.01)).any())
    return hit, total


def export_models(weights: Path, out: Path) -> tuple[Path, Path]:
    """The raw and end2end (serve thresholds) ONNX exports of the nano weights, by this checkout."""
    import torch

    from yolox.export.onnx_export import export_onnx
    from yolox.inference import load_torch_model

    torch.set_num_threads(2)
    net, meta = load_torch_model(weights, "yolox-nano")
    raw = export_onnx(net, out / "raw.onnx", SIZE, meta.names, meta.name)
    e2e = export_onnx(net, out / "end2end.onnx", SIZE, meta.names, meta.name, variant="end2end", conf_thresh=CONF,
                      nms_thresh=NMS, max_det=MAX_DET)
    return raw, e2e


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, data=True, peer="optional", pairs=True, threads=2,
                    pairs_help="rounds of alternated blocks (median over rounds)", threads_help="threads of every side")
    ap.add_argument("--weights", type=Path, default=assets_dir() / "weights" / "yolox_nano.pth")
    ap.add_argument("--previous", default="ccd9446", help="commit of the previous implementation")
    ap.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, of {BACKENDS}")
    ap.add_argument("--images", type=int, default=16, help="coco128 images (the first, by name)")
    ap.add_argument("--authors-fuse", action="store_true", help="their demo's --fuse (Conv+BN folded)")
    args = parse_args(ap, argv)
    backends = [b for b in args.backends.split(",") if b]
    if set(backends) - set(BACKENDS):
        print(f"--backends: unknown {sorted(set(backends) - set(BACKENDS))}", file=sys.stderr)
        return 2
    # absolute: the authors' worker runs in their checkout, where a relative YOLOX_ASSETS_DIR means nothing
    args.data, args.weights = args.data.resolve(), args.weights.resolve()
    images = sorted((args.data / "images" / "train2017").glob("*.jpg"))[: args.images]
    if not images or not args.weights.is_file():
        print(f"no images under {args.data}/images/train2017 or no {args.weights}: pass --data/--weights or set "
              "YOLOX_ASSETS_DIR", file=sys.stderr)
        return 2
    result: dict[str, object] = {"bench": "predict", "images": len(images), "size": SIZE, "threads": args.threads,
                                 "previous": args.previous, "conf": CONF, "nms": NMS}
    print(f"single-image predict, {len(images)} coco128 images at {SIZE}, score >= {CONF}, NMS IoU {NMS}; "
          f"{args.threads} threads per side; machine load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        tmp = Path(tmp)
        list_file = tmp / "images.txt"
        list_file.write_text("\n".join(str(p) for p in images) + "\n")
        old_pkg = previous_package(args.previous, tmp / "old")
        raw, e2e = export_models(args.weights, tmp)
        common = ["--weights", str(args.weights), "--onnx", str(raw), "--end2end", str(e2e), "--images-file",
                  str(list_file), "--threads", str(args.threads)]
        theirs = None
        if args.peer is not None:
            extra = ["--fuse"] if args.authors_fuse else []
            theirs = authors_worker(args.peer, "predict", "--weights", str(args.weights), "--images-file",
                                    str(list_file), "--threads", str(args.threads), "--conf", str(CONF),
                                    "--nms", str(NMS), "--size", str(SIZE), *extra)
            theirs.name = "authors"
        try:
            theirs_dets = theirs.call("setup")["dets"] if theirs else None
            theirs_profile = theirs.call("profile", n=len(images)) if theirs else None
            if theirs_profile:
                print("  authors' demo path, ms per image: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                                         theirs_profile.items()))
            for backend in backends:
                with ours("new", backend, REPO, common) as new, ours("old", backend, old_pkg, common) as old:
                    sides = [new, old] + ([theirs] if theirs else [])
                    dets = {"new": new.call("setup")["dets"], "old": old.call("setup")["dets"]}
                    row: dict[str, object] = {}
                    hit, total = agreement(dets["new"], dets["old"])
                    row["agree_previous"] = f"{hit}/{total}"
                    if theirs:
                        hit, total = agreement(dets["new"], theirs_dets)
                        row["agree_authors"] = f"{hit}/{total}"
                    print(f"{backend}: detections of ours found by the previous implementation "
                          f"{row['agree_previous']}" + (f", by the authors' demo {row['agree_authors']}" if theirs
                                                        else ""))
                    for w in (new, old):
                        prof = w.call("profile", n=len(images))
                        print(f"  {w.name:4s} ms per image: " + ", ".join(f"{k} {v:.1f}" for k, v in prof.items()))
                    row.update(rounds(sides, args.pairs, len(images), backend))
                    result[backend] = row
        finally:
            if theirs:
                theirs.close()
    print(json.dumps(result))
    return 0


def rounds(sides: list[Worker], pairs: int, n: int, label: str) -> dict[str, object]:
    """``pairs`` rounds of one block per side (order rotating); medians and per-round ratios other / new."""
    blocks: dict[str, list[float]] = {w.name: [] for w in sides}
    loads = []
    for i in range(pairs):
        load0 = os.getloadavg()[0]
        order = sides[i % len(sides):] + sides[: i % len(sides)]
        for w in order:
            blocks[w.name].append(statistics.median(w.call("run", n=n)["times"]))
        loads.append((load0 + os.getloadavg()[0]) / 2)
        line = "  ".join(f"{name} {b[-1] * 1000:7.1f} ms" for name, b in blocks.items())
        ratios = "  ".join(f"{name}/new {b[-1] / blocks['new'][-1]:5.2f}x" for name, b in blocks.items() if name != "new")
        print(f"  {label} round {i + 1}: {line}  {ratios}  load {loads[-1]:.2f}", flush=True)
    out: dict[str, object] = {"ms": round(statistics.median(blocks["new"]) * 1000, 2)}
    for name, key in (("old", "previous"), ("authors", "authors")):
        if name in blocks:
            r = [o / m for o, m in zip(blocks[name], blocks["new"])]
            out.update({f"{key}_ms": round(statistics.median(blocks[name]) * 1000, 2),
                        f"{key}_ratio": round(statistics.median(r), 3), f"{key}_ratios": [round(x, 3) for x in r]})
    out["load_avg"] = round(statistics.median(loads), 2)
    summary = ", ".join(f"{k} {out[k + '_ratio']}x" for k in ("previous", "authors") if f"{k}_ratio" in out)
    print(f"{label}: ours {out['ms']} ms per image; faster than: {summary} (median of {pairs} rounds); "
          f"load average {out['load_avg']}")
    return out


def worker_main() -> int:
    """``predict.py --worker ...``: the arguments :func:`ours` passes."""
    ap = argparse.ArgumentParser()
    for flag in ("--impl", "--backend", "--weights", "--onnx", "--end2end", "--images-file"):
        ap.add_argument(flag)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true")
    a = ap.parse_args()
    a.images = a.images_file
    worker(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(worker_main() if "--worker" in sys.argv else main())
