"""The ``train-yolox`` flow: :func:`yolox.pipeline.run_pipeline`, with each stage run as a Prefect task.

The composition (which stage runs after which, with what) lives once, in :mod:`yolox.pipeline`; this module
only says how each stage runs under Prefect (:data:`TASK_OPTIONS`: retries of transient failures, prepare
cached on its inputs' hashes, no retry where a retry could register or promote twice), routes the library's
``yolox`` log lines (a line per training epoch with losses, lr, AP and an ETA) to the task logs the Prefect
UI shows, and publishes the gate's decision as a markdown artifact. A rejected candidate is not a failure:
the flow completes and the model stays ``challenger``. The tracking store and registry are checked before any
task (``run_pipeline``'s preflight; ``main`` checks them before Prefect's API server starts): an unusable one
fails the flow at once with one line, and no task retries it (``flows/resilience.py``: a failed preflight is
not transient). Every MLflow request of the tasks is bounded (``tracking.http_timeout_s`` per attempt, 2
retries: :func:`yolox.tracking.store.bound_requests`): a server that dies mid-run fails a call in about 30 s.

Interrupted: SIGTERM (what a Prefect worker or runner sends to cancel a flow run, or a node shutting down)
or SIGINT while the train task runs make the trainer finish its step and save a resumable checkpoint
(:class:`yolox.errors.Interrupted`); the MLflow run is marked KILLED (:func:`yolox.pipeline.run_pipeline`).
The flow then hands the signal to Prefect as Prefect's own handlers would have: SIGTERM as its
``TerminationSignal`` (the flow run ends Cancelled when it was cancelled through the API, else Crashed, and
the process exits by SIGTERM), SIGINT as KeyboardInterrupt (Crashed). The log says how to resume.

    python -m flows.train_yolox params/default.yaml [KEY=VALUE ...] [--force]   # local, Prefect's ephemeral API
    prefect deployment run train-yolox/nightly                         # a deployment (prefect.yaml)
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

from flows.resilience import prepare_cache_key, prepared_intact, retries
from yolox.config import load_params
from yolox.console import pipeline_report, quiet_libraries, registry_options, report_text
from yolox.errors import Interrupted

quiet_libraries()   # MLflow's run URLs off stdout (main prints the summary there), its chatter off stderr

TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "prepare": {**retries(2), "cache_key_fn": prepare_cache_key, "cache_expiration": timedelta(days=30),
                "persist_result": True},
    "start-run": {**retries(), "cache_policy": NO_CACHE},
    "check-changes": {**retries(), "cache_policy": NO_CACHE},
    "warm-start": {**retries(2), "cache_policy": NO_CACHE},
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
def train_yolox(params_file: str = "params/default.yaml", overrides: list[str] | None = None,
                force: bool = False) -> dict[str, Any]:
    """Prepare, train, evaluate, export, register and gate one model (:func:`yolox.pipeline.run_pipeline`);
    returns its summary (run id, AP, version, alias after the gate, the gate's decision record). A night with
    nothing new (same data, params and code as the champion's) ends early, "skipped: ..." in the log, unless
    ``force``."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.runtime import flow_run

    from yolox.pipeline import run_pipeline
    from yolox.registry.rules import Decision
    from yolox.tracking.store import bound_requests, check_registry_params

    _route_library_logs()
    params = load_params(params_file, overrides)
    check_registry_params(params)                   # before any request: names the registry accepts
    bound_requests(params.tracking.http_timeout_s)  # every MLflow request of the tasks (run_pipeline checks)
    try:
        result = run_pipeline(params, prefect_runner, {"prefect_flow_run": str(flow_run.id or "local")},
                              progress=False, force=force)
    except Interrupted as err:
        raise _to_prefect(err, params_file, overrides) from err
    if result.skipped:
        create_markdown_artifact(markdown=f"## Skipped\n\n{result.reason}.\n", key="gate-decision",
                                 description=f"skipped: {result.reason}")
        get_run_logger().info("skipped: %s (run with force=true to train anyway)", result.reason)
        return result.summary()
    decision = result.decision
    create_markdown_artifact(markdown=Decision.from_json(decision).markdown(), key="gate-decision",
                             description=f"{result.registered.name} v{result.registered.version}: "
                                         f"{decision['decision']}")
    logger = get_run_logger()
    logger.info("pipeline done: %s v%s %s (%s)", result.registered.name, result.registered.version,
                decision["decision"], decision["outcome"])
    logger.info("%s", report_text(_report(result, params_file, overrides)))   # as `yolox pipeline` ends
    return result.summary()


def _report(result: Any, params_file: str, overrides: list[str] | None) -> list[Any]:
    """:func:`yolox.console.pipeline_report` of a flow run: its commands name the flow's params file and the
    overrides that choose the registry (``tracking.``, ``gate.``)."""
    from yolox.registry.rules import Decision

    decision = None if result.skipped else Decision.from_json(result.decision)
    return pipeline_report(result, decision, registry_options(params_file, overrides))


def _to_prefect(err: Interrupted, params_file: str, overrides: list[str] | None) -> BaseException:
    """Log what the interrupted run saved and how to resume it; the exception Prefect's engine expects for
    that signal (module docstring)."""
    from prefect.exceptions import TerminationSignal

    sets = [a for o in overrides or [] for a in ("--set", o)]
    own = [] if err.checkpoint is None else [       # the run's own data snapshot and training folder
        "--prepared", str(err.checkpoint.parent.parent / "data"), "--out", str(err.checkpoint.parent)]
    resume = shlex.join(["yolox", "train", "--params", params_file, *sets, *own, "--resume"])
    get_run_logger().warning("%s; the MLflow run is KILLED. Resume the training with: %s", err, resume)
    # send the run's logs to the API now: on SIGTERM, Prefect ends this process right after the crash report
    for handler in {*logging.getLogger("prefect.flow_runs").handlers, *logging.getLogger("prefect.extra").handlers}:
        handler.flush()
    if err.signum == signal.SIGTERM:
        return TerminationSignal(err.signum)
    return KeyboardInterrupt(str(err))


EPHEMERAL_STARTUP_TIMEOUT_S = 180
"""Seconds Prefect's ephemeral API server may take to start when the user has not set
``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (environment or profile): Prefect's default (20 s) is too
short for a fresh ``PREFECT_HOME`` on a loaded 2-core machine; 180 s was measured to be enough."""

_EPHEMERAL_TIMEOUT_TEXT = "Timed out while attempting to connect to ephemeral Prefect API server"


@contextmanager
def generous_ephemeral_startup() -> Iterator[None]:
    """Within: ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` defaults to :data:`EPHEMERAL_STARTUP_TIMEOUT_S`
    (a value the user set, in the environment or a Prefect profile, is kept)."""
    with temporary_settings(set_defaults={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: EPHEMERAL_STARTUP_TIMEOUT_S}):
        yield


def ephemeral_startup_failure(err: BaseException) -> str | None:
    """One line saying what to do when ``err`` is Prefect's ephemeral API start-up timeout, else None."""
    if not (isinstance(err, RuntimeError) and _EPHEMERAL_TIMEOUT_TEXT in str(err)):
        return None
    return (f"Prefect's temporary API server did not start within {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()}"
            " s (the machine is busy): set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS higher, or start a "
            "server (prefect server start) and set PREFECT_API_URL to it")


def main(argv: list[str]) -> int:
    """``python -m flows.train_yolox [PARAMS_FILE [KEY=VALUE ...]] [--force]``: run the flow with Prefect's ephemeral API
    (given time to start), print its summary as JSON; a start-up timeout is one line on stderr and exit 1. The params
    and the MLflow stores are checked first (:func:`yolox.tracking.store.preflight`, within
    ``tracking.preflight_timeout_s``): a bad param or an unusable store is one line and exit 1 before any
    server starts."""
    import json

    from yolox.errors import YoloxError
    from yolox.tracking.store import preflight

    force = "--force" in argv
    args = [a for a in argv if a != "--force"]
    notes = logging.getLogger("yolox.config")   # a params note (e.g. phases fitted to train.epochs) is the flow's to
    notes.disabled = True                        # log, once, where its run is read; this is only the early check
    try:
        preflight(load_params(args[0] if args else "params/default.yaml", args[1:]))
    except YoloxError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        notes.disabled = False
    with generous_ephemeral_startup():
        try:
            summary = train_yolox(*(args[:1] or []), overrides=args[1:], force=force)
        except RuntimeError as err:
            line = ephemeral_startup_failure(err)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            return 1
        except YoloxError as err:      # e.g. the preflight: one line (the flow run's log has Prefect's traceback)
            print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as err:   # Ctrl-C: the flow run is Crashed; the run's log says how to resume
            print(f"train-yolox: {err or 'interrupted by SIGINT'}", file=sys.stderr)
            return 128 + signal.SIGINT
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
