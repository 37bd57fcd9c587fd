"""Benchmark: what the pipeline costs on top of its stages (issue 10). Target: <= 5 % on the quickstart params.

Three timed runs on the same params, in fresh work folders (each its own MLflow store and PREFECT_HOME):

1. **bare**: the stage functions alone, as ``dvc repro`` runs them (no tracking): :func:`yolox.pipeline.prepare`,
   ``train``, ``evaluate``, ``export``;
2. **pipeline**: :func:`yolox.pipeline.run_pipeline` (what ``yolox pipeline`` runs): the same stages plus MLflow
   (run, params, per-epoch metrics, artifacts, plots, registration), data-version hashing and the gate (which
   evaluates the registered candidate, the champion or the base weights, through their ONNX / PyTorch);
3. **flow** (unless ``--no-flow``): the Prefect flow ``train-yolox`` (the same, each stage a task, on the
   ephemeral API).

Inside run 2 the time spent in MLflow calls, in hashing and in the gate's evaluations is measured by wrapping
those functions (their own wall time, exclusive of the stages' compute). Prints a table and one JSON line:
each share is ``seconds / bare total``; ``overhead`` is ``(pipeline - bare) / bare``.

    YOLOX_ASSETS_DIR=../shared .venv/bin/python bench/overhead.py [--params params/default.yaml] [--set K=V ...]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from common import add_common_args, parse_args, use_asset_mirror, work_dir  # bench/common.py

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def workdir(root: Path, name: str) -> Iterator[Path]:
    """Run in a fresh folder with its own MLflow store and Prefect home (relative paths resolve there)."""
    path = root / name
    path.mkdir(parents=True)
    old_cwd, old_env = Path.cwd(), dict(os.environ)
    os.chdir(path)
    os.environ["PREFECT_HOME"] = str(path / ".prefect")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield path
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


class Timers:
    """Wall time of wrapped functions; nested calls of the same category count once (outermost)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._depth: dict[str, int] = defaultdict(int)
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, category: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            self._depth[category] += 1
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth[category] -= 1
                if self._depth[category] == 0:
                    self.seconds[category] += time.perf_counter() - t0
                    self.calls[category] += 1

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)


def instrument(timers: Timers) -> None:
    """Wrap every MLflow entry point of yolox/tracking, the hashing and the gate's evaluations."""
    import yolox.lineage
    import yolox.pipeline
    from yolox.registry import gate
    from yolox.registry import versions as registry
    from yolox.tracking.run import MlflowRun

    for attr in ("__init__", "attach", "log_params", "log_metrics", "set_tags", "log_artifact", "log_figure",
                 "log_dict", "log_table", "set_note", "end"):
        timers.wrap(MlflowRun, attr, "mlflow")
    for attr in ("log_and_register", "promote", "set_version_tags", "describe_version", "version_info",
                 "alias_version", "registered_model_tags", "set_registered_model_tag"):
        timers.wrap(registry, attr, "mlflow")
    timers.wrap(yolox.lineage, "data_version", "hashing")
    timers.wrap(gate, "evaluate_registered", "gate evaluations")
    timers.wrap(gate, "evaluate_base", "gate evaluations")
    timers.wrap(gate, "val_set_id", "gate evaluations")
    timers.wrap(yolox.pipeline, "start_run", "mlflow")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default=str(HERE.parent / "params" / "default.yaml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="param override K=V")
    ap.add_argument("--no-flow", action="store_true", help="skip the Prefect flow run")
    add_common_args(ap, out=True, out_help="work folder (default: a temp folder, removed)")
    args = parse_args(ap, argv)
    use_asset_mirror()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    params_file = str(Path(args.params).resolve())

    from yolox import pipeline
    from yolox.config import load_params

    params = load_params(params_file, args.overrides)
    root = work_dir(args.out, "yolox-overhead-")
    print(f"params {params_file} {args.overrides}; work folder {root}; load average {os.getloadavg()[0]:.2f}",
          flush=True)

    stages: dict[str, float] = {}
    with workdir(root, "bare"):
        t0 = time.perf_counter()
        for name, call in (("prepare", lambda: pipeline.prepare(params)),
                           ("train", lambda: pipeline.train(params, progress=False)),
                           ("evaluate", lambda: pipeline.evaluate(params, progress=False)),
                           ("export", lambda: pipeline.export(params))):
            s = time.perf_counter()
            call()
            stages[name] = time.perf_counter() - s
        bare = time.perf_counter() - t0

    timers = Timers()
    with workdir(root, "pipeline"):
        instrument(timers)
        try:
            t0 = time.perf_counter()
            result = pipeline.run_pipeline(params, progress=False)
            piped = time.perf_counter() - t0
        finally:
            timers.restore()

    flow_s = None
    if not args.no_flow:
        with workdir(root, "flow"):
            import sys

            sys.path.insert(0, str(HERE.parent))
            from flows.train_yolox import train_yolox

            t0 = time.perf_counter()
            train_yolox(params_file, args.overrides)
            flow_s = time.perf_counter() - t0

    shares = {k: round(v / bare, 4) for k, v in timers.seconds.items()}
    rows = [("bare stages", bare, None), ("yolox pipeline", piped, (piped - bare) / bare)]
    rows += [(f"  of which {k}", v, v / bare) for k, v in sorted(timers.seconds.items())]
    if flow_s is not None:
        rows += [("Prefect flow", flow_s, (flow_s - bare) / bare),
                 ("  of which Prefect (flow - pipeline)", flow_s - piped, (flow_s - piped) / bare)]
    print("\nstages (bare): " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    print(f"{'run':40s} {'seconds':>9s} {'share of bare':>14s}")
    for name, sec, share in rows:
        print(f"{name:40s} {sec:9.1f} {'' if share is None else f'{share:+.1%}':>14s}")
    print(f"gate: {result.decision['decision']} ({result.decision['outcome']}); load average "
          f"{os.getloadavg()[0]:.2f}")
    print(json.dumps({"bench": "overhead", "bare_s": round(bare, 2), "stages_s": {k: round(v, 2) for k, v in stages.items()},
                      "pipeline_s": round(piped, 2), "flow_s": None if flow_s is None else round(flow_s, 2),
                      "overhead": round((piped - bare) / bare, 4),
                      "flow_overhead": None if flow_s is None else round((flow_s - bare) / bare, 4),
                      "shares": shares, "calls": dict(timers.calls)}))
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
