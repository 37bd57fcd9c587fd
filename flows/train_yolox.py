"""The ``train-yolox`` flow: :func:`yolox.pipeline.run_pipeline`, with each stage run as a Prefect task.

The composition (which stage runs after which, with what) lives once, in :mod:`yolox.pipeline`; this module
only says how each stage runs under Prefect (:data:`TASK_OPTIONS`: retries of transient failures, prepare
cached on its inputs' hashes, no retry where a retry could register or promote twice), routes the library's
``yolox`` log lines (a line per training epoch with losses, lr, AP and an ETA) to the task logs the Prefect
UI shows, and publishes the gate's decision as a markdown artifact. A rejected candidate is not a failure:
the flow completes and the model stays ``challenger``. The tracking store and registry are checked before any
task (``run_pipeline``'s preflight): an unusable one fails the flow at once with one line, and no task retries
it (``flows/resilience.py``: a failed preflight is not transient).

    python -m flows.train_yolox params/default.yaml [KEY=VALUE ...]   # local, Prefect's ephemeral API
    prefect deployment run train-yolox/nightly                         # a deployment (prefect.yaml)
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A fresh PREFECT_HOME on a loaded 2-core machine starts the ephemeral API slower than Prefect's default timeout.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.resilience import prepare_cache_key, prepared_intact, retries
from yolox.config import load_params

TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "prepare": {**retries(2), "cache_key_fn": prepare_cache_key, "cache_expiration": timedelta(days=30),
                "persist_result": True},
    "start-run": {**retries(), "cache_policy": NO_CACHE},
    # a retried train continues from its checkpoint into the same MLflow run (run_pipeline: resume="auto")
    "train": {**retries(2, first_delay_s=30), "cache_policy": NO_CACHE},
    "evaluate": {**retries(2), "cache_policy": NO_CACHE},
    "export": {**retries(2), "cache_policy": NO_CACHE},
    # no retry: a retry after a partial success would register a second version, or promote twice
    "register": {"cache_policy": NO_CACHE},
    "gate": {"cache_policy": NO_CACHE},
}
"""How each stage of :func:`yolox.pipeline.run_pipeline` runs as a task."""


def prefect_runner(stage: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A :data:`yolox.pipeline.Runner` that runs the stage as the task ``stage`` with :data:`TASK_OPTIONS`.

    A cached prepare result whose folder was deleted or changed since is refreshed (prepare runs again)."""
    stage_task = task(fn, name=stage, **TASK_OPTIONS[stage])
    result = stage_task(*args, **kwargs)
    if stage == "prepare" and not prepared_intact(result):
        result = stage_task.with_options(refresh_cache=True)(*args, **kwargs)
    return result


def _route_library_logs() -> None:
    """Send the ``yolox`` loggers' INFO lines to this run's Prefect logs (the handlers Prefect gives its
    ``extra_loggers``), once per process; pycocotools' prints are not logs and stay out (no ``log_prints``)."""
    lib = logging.getLogger("yolox")
    lib.setLevel(logging.INFO)
    for handler in logging.getLogger("prefect.extra").handlers:
        if handler not in lib.handlers:
            lib.addHandler(handler)


@flow(name="train-yolox", log_prints=False)
def train_yolox(params_file: str = "params/default.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """Prepare, train, evaluate, export, register and gate one model (:func:`yolox.pipeline.run_pipeline`);
    returns its summary (run id, AP, version, alias after the gate, the gate's decision record)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.runtime import flow_run

    from yolox.pipeline import run_pipeline
    from yolox.tracking.gate import Decision

    _route_library_logs()
    params = load_params(params_file, overrides)
    result = run_pipeline(params, prefect_runner, {"prefect_flow_run": str(flow_run.id or "local")},
                          progress=False)
    decision = result.decision
    create_markdown_artifact(markdown=Decision.from_json(decision).markdown(), key="gate-decision",
                             description=f"{result.registered.name} v{result.registered.version}: "
                                         f"{decision['decision']}")
    get_run_logger().info("pipeline done: %s v%s %s (%s)", result.registered.name, result.registered.version,
                          decision["decision"], decision["outcome"])
    return result.summary()


if __name__ == "__main__":
    import json
    import sys

    from yolox.errors import YoloxError

    try:
        summary = train_yolox(*(sys.argv[1:2] or []), overrides=sys.argv[2:])
    except YoloxError as err:      # e.g. the preflight: one line (the flow run's log has Prefect's traceback)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(summary, indent=2))
