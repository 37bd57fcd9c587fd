"""Benchmark: the data path at 1k, 10k and 100k images (issue 12 item 3).

For each size N, a YOLO-layout dataset of N real coco128 images under distinct names
(``<k>_<coco name>.jpg``, hard links to the 128 originals, each with its own copy of its label file) is
built, then each step runs in a fresh subprocess (so its peak RSS is its own):

- prepare: ``yolox.data.prepare.prepare_dataset`` (read, validate in parallel, split, write): wall time
  and peak RSS;
- hashing: the data version (DVC ``.dir`` hash) of the prepared folder and of the raw source (what a
  pipeline run hashes), cold (empty DVC state: every file read, what each hash cost before the state was
  reused) and warm (second run, files unchanged), in ms per image; ``warm_ratio`` = warm / cold;
- loader: ``load_prepared`` + ``build_train_loader`` (yolox-nano recipe at 416, batch 16, 2 workers):
  time to the first batch, RSS of the main process, then PSS and USS of each worker (what a worker costs
  beyond the pages it shares with the main process), and the throughput of the next ``--batches`` batches.

    .venv/bin/python bench/scale.py [--sizes 1000 10000 100000] [--root /tmp/yolox-scale] [--batches 20]

Prints a table and ends with one JSON line (``{"bench": "scale", "load_avg": ..., "sizes": {...}}``).
Done-when figures of the issue: 100k prepared and versioned (``versioned_s`` = prepare + cold hash of the
prepared folder) in < 15 min; a warm re-hash < 2 ms/image; a second pipeline run's hashing
(``second_run_hashing_s`` = raw source + prepared folder, warm: what the flow hashes on unchanged data) < 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from common import coco128_dir  # bench/common.py


def build_dataset(coco128: Path, n: int, root: Path) -> Path:
    """A YOLO dataset of ``n`` coco128 images (hard links) with their labels; returns its folder."""
    if (root / "dataset.yaml").is_file() and len(os.listdir(root / "images" / "train2017")) == n:
        return root
    shutil.rmtree(root, ignore_errors=True)
    images, labels = root / "images" / "train2017", root / "labels" / "train2017"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    src = sorted((coco128 / "images" / "train2017").glob("*.jpg"))
    texts = {}
    for path in src:
        label = coco128 / "labels" / "train2017" / f"{path.stem}.txt"
        texts[path.stem] = label.read_text() if label.is_file() else None
    for k in range(n):
        path = src[k % len(src)]
        name = f"{k:06d}_{path.stem}"
        os.link(path, images / f"{name}.jpg")
        if texts[path.stem] is not None:
            (labels / f"{name}.txt").write_text(texts[path.stem])
    shutil.copy(coco128 / "dataset.yaml", root / "dataset.yaml")
    return root


def run_step(code: str, env: dict[str, str], *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; returns its JSON result (last stdout line) plus ``wall_s`` and
    ``peak_rss_mb`` (the largest RSS of the process or of any of its children, from ``wait4``)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, stdout=out,
                                stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"step failed ({proc.returncode}):\n{err.read()[-3000:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    result["wall_s"] = wall
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


PREPARE = '''
    import json, resource, sys, time
    from yolox.config import DataParams
    from yolox.data.prepare import prepare_dataset
    t0 = time.perf_counter()
    r = prepare_dataset(DataParams(source=sys.argv[1]), sys.argv[2])
    print(json.dumps({"seconds": time.perf_counter() - t0, "train": r.num_train_images, "val": r.num_val_images,
                      "self_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''

HASH = '''
    import json, sys, time
    t0 = time.perf_counter()
    from HASH_MODULE import HASH_FUNCTION as data_version
    t1 = time.perf_counter()
    value = data_version(sys.argv[1])
    print(json.dumps({"seconds": time.perf_counter() - t1, "import_s": t1 - t0, "hash": value}))
'''

LOADER = '''
    import json, os, sys, time, resource
    import torch
    torch.set_num_threads(1)
    from yolox.config import AugmentParams
    from yolox.data.dataset import build_train_loader
    from yolox.data.records import load_prepared

    def mem(pid):
        fields = {}
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
        return {"rss": fields.get("Rss", 0.0), "pss": fields.get("Pss", 0.0),
                "uss": fields.get("Private_Clean", 0.0) + fields.get("Private_Dirty", 0.0)}

    batches = int(sys.argv[2])
    t0 = time.perf_counter()
    dataset = load_prepared(sys.argv[1], "train")
    t_load = time.perf_counter() - t0
    main_after_load = mem(os.getpid())["rss"]
    loader = build_train_loader(dataset, AugmentParams(), "yolox-nano", 416, 16, 2, seed=0, multiscale=False)
    it = iter(loader)
    next(it)
    t_first = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * 16 / (time.perf_counter() - t1)
    workers = [mem(w.pid) for w in it._workers]
    print(json.dumps({"load_s": t_load, "first_batch_s": t_first, "img_s": rate, "main_rss_mb": mem(os.getpid())["rss"],
                      "main_rss_after_load_mb": main_after_load,
                      "worker_pss_mb": max(w["pss"] for w in workers), "worker_uss_mb": max(w["uss"] for w in workers)}))
    del it   # shuts the workers down now (not through multiprocessing's exit handler)
'''


def hash_code(module: str, function: str) -> str:
    return HASH.replace("HASH_MODULE", module).replace("HASH_FUNCTION", function)


def find_hash_function() -> tuple[str, str]:
    """(module, function) of the data version."""
    return "yolox.lineage", "data_version"


def measure(n: int, args: argparse.Namespace) -> dict:
    root = args.root / f"n{n}"
    t0 = time.perf_counter()
    raw = build_dataset(args.coco128, n, root / "raw")
    built_s = time.perf_counter() - t0
    state = root / "dvc-state"
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(root / "prepared", ignore_errors=True)
    env = {**os.environ, "YOLOX_CACHE_DIR": str(state), "DVC_SITE_CACHE_DIR": str(state / "site"),
           "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    row: dict = {"images": n, "build_s": built_s}
    prep = run_step(PREPARE, env, str(raw), str(root / "prepared"))
    row.update(prepare_s=prep["seconds"], prepare_rss_mb=prep["self_rss_mb"],
               prepare_children_rss_mb=prep["peak_rss_mb"])
    code = hash_code(*find_hash_function())
    for what, path in (("prepared", root / "prepared"), ("raw", raw)):
        cold = run_step(code, env, str(path))
        warm = run_step(code, env, str(path))
        assert cold["hash"] == warm["hash"], (cold, warm)
        row.update({f"hash_{what}_cold_s": cold["seconds"], f"hash_{what}_warm_s": warm["seconds"],
                    f"hash_{what}_warm_ms_per_image": 1000 * warm["seconds"] / n,
                    f"hash_{what}_warm_ratio": warm["seconds"] / cold["seconds"]})
    row["versioned_s"] = row["prepare_s"] + row["hash_prepared_cold_s"]
    # a second pipeline run on unchanged data hashes the raw source (prepare's cache key) and the prepared
    # folder (the cached result still on disk?), both warm
    row["second_run_hashing_s"] = row["hash_raw_warm_s"] + row["hash_prepared_warm_s"]
    loader = run_step(LOADER, env, str(root / "prepared"), str(args.batches))
    row.update({f"loader_{k}": v for k, v in loader.items() if k != "wall_s"})
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--root", type=Path, default=Path("/tmp/yolox-scale"))
    ap.add_argument("--coco128", type=Path, default=coco128_dir())
    ap.add_argument("--batches", type=int, default=20, help="Batches (of 16) timed after the first.")
    ap.add_argument("--keep", action="store_true", help="Keep the datasets (else removed after each size).")
    args = ap.parse_args(argv)
    rows = []
    for n in args.sizes:
        load_before = os.getloadavg()
        row = measure(n, args)
        row["load_avg"] = [round(x, 2) for x in (load_before[0], os.getloadavg()[0])]
        rows.append(row)
        print(_table(rows), file=sys.stderr, flush=True)
        if not args.keep:
            shutil.rmtree(args.root / f"n{n}", ignore_errors=True)
    print(json.dumps({"bench": "scale", "sizes": {str(r["images"]): r for r in rows}}))
    return 0


COLUMNS = [("images", "{:d}"), ("prepare_s", "{:.1f}"), ("prepare_rss_mb", "{:.0f}"), ("versioned_s", "{:.1f}"),
           ("hash_prepared_cold_s", "{:.1f}"), ("hash_prepared_warm_s", "{:.2f}"),
           ("hash_prepared_warm_ms_per_image", "{:.3f}"), ("hash_raw_cold_s", "{:.1f}"),
           ("hash_raw_warm_s", "{:.2f}"), ("second_run_hashing_s", "{:.2f}"), ("loader_first_batch_s", "{:.1f}"), ("loader_main_rss_mb", "{:.0f}"),
           ("loader_worker_pss_mb", "{:.0f}"), ("loader_worker_uss_mb", "{:.0f}"), ("loader_img_s", "{:.0f}"),
           ("load_avg", "{}")]


def _table(rows: list[dict]) -> str:
    head = " | ".join(name for name, _ in COLUMNS)
    lines = [f"| {head} |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(fmt.format(r[name]) for name, fmt in COLUMNS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
