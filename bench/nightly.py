"""Benchmark: does nightly retraining make better models night after night? The proof, through the deployed flow.

Replays nights of arriving labelled data through the ``train-yolox`` deployment as production runs it: a Prefect
server on loopback (SQLite), a process work pool, ``prefect deploy --all`` from ``prefect.yaml``, a worker
(``flows/launch_worker.py``), then ``prefect deployment run train-yolox/nightly`` once per night, watched to its end;
MLflow on a SQLite store. The params are ``params/raccoon.yaml`` (warm start from the champion, the fine-tune
recipe, the gate with a golden set).

The data: raccoon (``$YOLOX_ASSETS_DIR/data/raccoon``, 160 images, one class COCO lacks, Pascal VOC). A fixed
golden set (the images whose hash with seed 1000 is below 0.2: about 30, :func:`yolox.data.prepare.split_hash`)
is kept out of the data and given to the gate (``gate.golden``); the other images arrive about ``--night-size``
a night, in the order of another hash, into the folder the params point at (``data/raccoon-live``):

====== =====================================================================================================
night  what arrives
====== =====================================================================================================
1      batch A (the first run: no champion yet, so it starts from the authors' COCO weights)
2      batch B (warm start from the champion)
3      nothing (the run must end early: skipped)
4      batch C with broken labels: boxes moved off their raccoon, 2 malformed XML files, 1 misspelt class
       (the prepare report lists the bad files; the gate must keep the champion if the model got worse)
5      batch C's labels fixed, and the rest of the images (D)
====== =====================================================================================================

Then a baseline: the same recipe trained once on everything (night 5's data) from the authors' COCO weights.

Printed: a table per night (data version, images train/val and skipped, train seconds, AP50:95 of candidate and
champion on the night's val split and on the golden set, the decision and the champion after it), the checks of
issue 21 (golden AP of the champion never falls, night 3 skipped, night 4 not promoted, last champion within 0.01
of the baseline or above) and one JSON line. Exit 1 when a check fails.

    YOLOX_ASSETS_DIR=../shared .venv/bin/python bench/nightly.py [--work /tmp/yolox-nightly] [--night-size 32]
        [--set train.epochs=10 ...] [--no-baseline]

About 25 minutes on 2 CPU cores with the recipe's 30 epochs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))
from common import assets_dir  # bench/common.py

from yolox.data.prepare import split_hash

GOLDEN_SEED, ORDER_SEED, GOLDEN_FRACTION = 1000, 1001, 0.2
MODEL = "yolox-raccoon"
LIVE = "data/raccoon-live"


@dataclass
class Night:
    """One night: what arrives (image stems), and what happens to batch C's labels."""

    name: str
    arrive: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)


def plan(stems: list[str], size: int) -> tuple[list[str], list[Night]]:
    """The golden set and the five nights (module docstring) from raccoon's image stems."""
    golden = sorted(s for s in stems if split_hash(s, GOLDEN_SEED) < GOLDEN_FRACTION)
    rest = sorted((s for s in stems if s not in golden), key=lambda s: split_hash(s, ORDER_SEED))
    a, b, c, d = rest[:size], rest[size:2 * size], rest[2 * size:3 * size], rest[3 * size:]
    return golden, [Night("1: batch A", arrive=a), Night("2: batch B", arrive=b), Night("3: no new data"),
                    Night("4: batch C, broken labels", arrive=c, broken=c),
                    Night("5: C fixed + rest", arrive=d, fixed=c)]


def link_pair(src: Path, dst: Path, stem: str) -> None:
    """Hard-link (else copy) raccoon's image and annotation of ``stem`` into the VOC folder ``dst``."""
    for sub, suffix in (("images", ".jpg"), ("annotations", ".xml")):
        target = dst / sub / f"{stem}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(src / sub / f"{stem}{suffix}", target)
        except OSError:
            shutil.copy(src / sub / f"{stem}{suffix}", target)


def break_labels(folder: Path, stems: list[str]) -> dict[str, int]:
    """Spoil the annotations of ``stems`` in ``folder`` (written as new files, the source untouched): 2 cut short
    (malformed XML), 1 with a misspelt class, every other box moved by its own width (off its raccoon, still
    inside the image). Returns the count of each kind."""
    counts = {"malformed": 0, "misspelt_class": 0, "moved_boxes": 0}
    for i, stem in enumerate(stems):
        path = folder / "annotations" / f"{stem}.xml"
        text = path.read_text()
        path.unlink()                                   # a hard link to the source: never write through it
        if i < 2:
            path.write_text(text[: len(text) // 2])
            counts["malformed"] += 1
            continue
        if i == 2:
            path.write_text(text.replace("<name>raccoon</name>", "<name>racoon</name>"))
            counts["misspelt_class"] += 1
            continue
        width = int(re.search(r"<width>(\d+)</width>", text).group(1))

        def move(m: re.Match[str], width: int = width) -> str:
            x0, x1 = float(m["x0"]), float(m["x1"])
            w = x1 - x0
            shift = w if x1 + w <= width else -min(w, x0)
            counts["moved_boxes"] += 1
            return f"<xmin>{int(x0 + shift)}</xmin>{m['mid']}<xmax>{int(x1 + shift)}</xmax>"

        path.write_text(_XSPAN.sub(move, text))
    return counts


_XSPAN = re.compile(r"<xmin>(?P<x0>[\d.]+)</xmin>(?P<mid>\s*<ymin>[\d.]+</ymin>\s*)<xmax>(?P<x1>[\d.]+)</xmax>")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Background:
    """A command in its own session, output to a log file; :meth:`stop` ends it and what it started."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str], logs: Path) -> None:
        self.log = logs / f"{name}.log"
        self._fh = self.log.open("w")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    continue
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._fh.close()


def wait_healthy(url: str, server: Background, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"prefect server exited: see {server.log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not healthy after {timeout:.0f} s: see {server.log}")


def mlflow_row(client, experiment: str, filter_string: str) -> dict:
    """The tags, metrics and params of the one MLflow run of ``experiment`` matching ``filter_string``."""
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string)
    if len(runs) != 1:
        raise SystemExit(f"expected one MLflow run for {filter_string!r} in {experiment}, found {len(runs)}")
    return {"run_id": runs[0].info.run_id, "status": runs[0].info.status, "tags": dict(runs[0].data.tags),
            "metrics": dict(runs[0].data.metrics), "params": dict(runs[0].data.params)}


def _count(params: dict, key: str) -> int | None:
    return int(params[key]) if key in params else None


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/yolox-nightly"), help="work folder (replaced)")
    ap.add_argument("--night-size", type=int, default=32, help="images arriving per night")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra params override")
    ap.add_argument("--no-baseline", action="store_true", help="skip the train-once-on-everything baseline")
    args = ap.parse_args(argv)

    assets = assets_dir().resolve()
    source = assets / "data" / "raccoon"
    if not (source / "annotations").is_dir():
        raise SystemExit(f"{source}: no raccoon dataset (set YOLOX_ASSETS_DIR to the asset mirror)")
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    project, logs = work / "project", work / "logs"
    logs.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (project / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, project / f)

    stems = sorted(p.stem for p in (source / "images").glob("*.jpg"))
    golden, nights = plan(stems, args.night_size)
    for stem in golden:
        link_pair(source, work / "golden", stem)
    live = project / LIVE
    (live / "images").mkdir(parents=True)
    (live / "annotations").mkdir(parents=True)
    print(f"raccoon: {len(stems)} images; golden set {len(golden)} images ({work / 'golden'}); arrivals "
          + ", ".join(f"night {n.name.split(':')[0]}: {len(n.arrive)}" for n in nights), flush=True)

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(work / ".prefect"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200", "YOLOX_ASSETS_DIR": str(assets),
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DVC_NO_ANALYTICS": "1", "YOLOX_CACHE_DIR": str(work / "cache"), "YOLOX_PROJECT_DIR": str(project)}
    overrides = [f"data.source={LIVE}", f"gate.golden={work / 'golden'}", *args.overrides]

    def prefect(*cmd: str, timeout: float = 180) -> str:
        proc = subprocess.run([str(BIN / "prefect"), *cmd], cwd=project, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"prefect {' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout + proc.stderr

    from mlflow import MlflowClient

    started: list[Background] = []
    rows: list[dict] = []
    champion_golden: float | None = None
    try:
        server = Background("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                       str(port)], project, env, logs)
        started.append(server)
        wait_healthy(f"{api}/health", server)
        pool = "yolox-process"
        prefect("work-pool", "create", pool, "--type", "process")
        prefect("--no-prompt", "deploy", "--all")
        started.append(Background("worker", [sys.executable, str(project / "flows" / "launch_worker.py")],
                                  project, env, logs))
        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
        for night in nights:
            for stem in night.arrive:
                link_pair(source, live, stem)
            for stem in night.fixed:
                link_pair(source, live, stem)
            broken = break_labels(live, night.broken) if night.broken else {}
            t0 = time.monotonic()
            run = subprocess.run([str(BIN / "prefect"), "deployment", "run", "train-yolox/nightly",
                                  "--param", "params_file=params/raccoon.yaml",
                                  "--param", f"overrides={json.dumps(overrides)}",
                                  "--watch", "--watch-timeout", "3600"],
                                 cwd=project, env=env, capture_output=True, text=True, timeout=3700, check=False)
            out = run.stdout + run.stderr
            (logs / f"night{night.name[0]}.log").write_text(out)
            flow_run = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
            if run.returncode != 0 or flow_run is None:
                raise SystemExit(f"night {night.name}: the flow run failed:\n{out[-3000:]}\n(worker log: "
                                 f"{logs / 'worker.log'})")
            r = mlflow_row(client, "yolox-raccoon", f"tags.prefect_flow_run = '{flow_run.group(1)}'")
            tags, m = r["tags"], r["metrics"]
            aliases = client.get_registered_model(MODEL).aliases
            decision = "skipped" if "skipped" in tags else tags.get("gate.decision", "?")
            if decision == "promote" and tags.get("gate.outcome", "").startswith("promoted"):
                champion_golden = m.get("gate/golden_candidate_AP50_95")
            row = {"night": night.name, "data_version": tags.get("data_version", "")[:8],
                   "arrived": len(list((live / "images").glob("*.jpg"))),
                   **{k: _count(r["params"], f"data/{name}") for k, name in (   # data counts are params
                       ("train", "train_images"), ("val", "val_images"), ("skipped_images", "skipped_images"),
                       ("skipped_boxes", "skipped_boxes"))},
                   "train_s": m.get("train/seconds"), "wall_s": round(time.monotonic() - t0),
                   "val_candidate": m.get("gate/candidate_AP50_95"), "val_champion": m.get("gate/champion_AP50_95"),
                   "golden_candidate": m.get("gate/golden_candidate_AP50_95"),
                   "golden_champion": m.get("gate/golden_champion_AP50_95"), "decision": decision,
                   "reason": tags.get("skipped", ""), "version": tags.get("registered_version"),
                   "warm_start": tags.get("warm_start", ""), "champion": str(aliases.get("champion")),
                   "champion_golden": champion_golden, "broken": broken}
            rows.append(row)
            print(f"night {row['night']}: {decision} ({row['reason'] or tags.get('gate.outcome', '')}); "
                  f"golden cand {fmt(row['golden_candidate'])} champ {fmt(row['golden_champion'])}; "
                  f"{row['wall_s']} s", flush=True)
    finally:
        for b in reversed(started):
            b.stop()

    baseline = None
    if not args.no_baseline:
        once = ["model.weights=yolox_nano.pth", "model.fallback_weights=null", "tracking.experiment=yolox-raccoon-once",
                "tracking.registered_model=yolox-raccoon-once", "data.prepared_dir=data/prepared-once",
                "train.output_dir=runs/train-once", "export.onnx_path=models/once.onnx", *overrides]
        t0 = time.monotonic()
        proc = subprocess.run([str(BIN / "yolox"), "pipeline", "--params", "params/raccoon.yaml",
                               *[a for o in once for a in ("--set", o)]], cwd=project, env=env, capture_output=True,
                              text=True, timeout=3600, check=False)
        (logs / "baseline.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"baseline failed:\n{proc.stderr[-3000:]}")
        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
        r = mlflow_row(client, "yolox-raccoon-once", "attributes.status = 'FINISHED'")
        baseline = {"golden": r["metrics"].get("gate/golden_candidate_AP50_95"),
                    "val": r["metrics"].get("gate/candidate_AP50_95"), "train_s": r["metrics"].get("train/seconds"),
                    "train": _count(r["params"], "data/train_images"), "wall_s": round(time.monotonic() - t0)}

    head = (f"{'night':28s} {'data':8s} {'imgs':>4s} {'train':>5s} {'val':>3s} {'skip':>4s} {'train s':>7s} "
            f"{'val cand':>8s} {'val champ':>9s} {'gold cand':>9s} {'gold champ':>10s}  decision -> champion (golden)")
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        def n(v: float | None) -> str:
            return "-" if v is None else str(int(v))
        print(f"{r['night']:28s} {r['data_version']:8s} {r['arrived']:>4d} {n(r['train']):>5s} {n(r['val']):>3s} "
              f"{n(r['skipped_images']):>4s} {n(r['train_s']):>7s} {fmt(r['val_candidate']):>8s} "
              f"{fmt(r['val_champion']):>9s} {fmt(r['golden_candidate']):>9s} {fmt(r['golden_champion']):>10s}  "
              f"{r['decision']} -> v{r['champion']} ({fmt(r['champion_golden'])})")
    if baseline:
        print(f"{'baseline: once on everything':28s} {'':8s} {'':>4s} {n(baseline['train']):>5s} {'':>3s} {'':>4s} "
              f"{n(baseline['train_s']):>7s} {fmt(baseline['val']):>8s} {'':>9s} {fmt(baseline['golden']):>9s}")

    series = [r["champion_golden"] for r in rows if r["champion_golden"] is not None]
    checks = {
        "champion golden AP never falls": all(b >= a - 1e-9 for a, b in itertools.pairwise(series)) and bool(series),
        "night 3 skipped": rows[2]["decision"] == "skipped",
        "night 4 (broken labels) not promoted": str(rows[3]["champion"]) != str(rows[3]["version"]),
        "night 5 promoted": str(rows[4]["champion"]) == str(rows[4]["version"]),
    }
    if baseline and baseline["golden"] is not None and series:
        checks["last champion within 0.01 of the once-on-everything baseline, or above"] = \
            series[-1] >= baseline["golden"] - 0.01
    print()
    for what, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {what}")
    print(json.dumps({"bench": "nightly", "golden_images": len(golden), "nights": rows, "baseline": baseline,
                      "checks": checks}))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
