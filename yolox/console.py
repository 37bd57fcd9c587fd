"""What a person at the terminal sees, all on stderr: progress bars, logs and the reports that end a command.

stdout belongs to a command's machine-readable result (``yolox pipeline --json``, ``yolox benchmark``'s JSON
line), so ``yolox pipeline --json | jq`` reads nothing else. :data:`console` is the one stderr console;
:func:`progress` makes bars that fit an 80-column terminal; :func:`quiet_libraries` keeps library output
that means nothing to the user off both streams; :func:`decision_table` and :func:`pipeline_report` say how
a gate or a pipeline run ended (``yolox gate``, ``yolox pipeline``, the Prefect flow's log).

Imports only rich: every layer may use it (data validation, training and evaluation draw their bars here).
"""

from __future__ import annotations

import io
import logging
import os
import shlex
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

console = Console(stderr=True)
"""The one console for people: stderr (rich looks ``sys.stderr`` up at each write: captured streams work)."""

SERVE_PORT = 5001
"""The port of the printed ``mlflow models serve`` command (the README's)."""


def progress(disable: bool = False, transient: bool = False) -> Progress:
    """A progress bar on :data:`console` (stderr): description, bar, done/total, elapsed, remaining.

    The bar takes the width the other columns leave (they need about 25 columns besides the description),
    so ``epoch 12/300 loss 5.811`` or ``validating train images`` fits 80 columns whole instead of
    truncating the times to ``0:0…``. A task sets its text with ``description=`` (``add_task``, ``update``).

    ``transient``: the bar is erased when done; on a stderr that is not a terminal (a log file, a pipe),
    where rich draws a bar's final state only, a transient bar is not drawn (it would leave an empty line).
    """
    off_terminal = transient and not console.is_terminal
    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    disable=disable or off_terminal, transient=transient)


QUIET_ENV = {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # "🏃 View run ... at: URL" on stdout (HTTP store)
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",   # "Downloading artifacts" bars of every read-back
}
"""Environment defaults of a command's process (a value the user set is kept): MLflow's own prints."""

QUIET_LOGGERS = ("mlflow.store.db.utils",)
"""Loggers held at WARNING unless ``--verbose``: MLflow's "Creating initial MLflow database tables..." and
"Updating database tables" on a new SQLite store (children of ``mlflow``, whose level MLflow resets on
import, so setting ``mlflow``'s would not hold)."""


def quiet_libraries(verbose: bool = False) -> None:
    """Keep the libraries' output that means nothing to the user off stdout and stderr (:data:`QUIET_ENV`,
    :data:`QUIET_LOGGERS`). Call once at a command's start, before MLflow is used; idempotent."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


# --- how a gate or a pipeline run ended ----------------------------------------------------------------


def _ap(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def decision_table(decision: Any) -> Table:
    """The gate's decision (a :class:`yolox.registry.rules.Decision`) as a table for an 80-column terminal.

    The title compares the candidate's AP50:95 with the champion's (else the base weights'; and the golden
    set's when configured); then one row per rule: its name, pass or FAIL, and the gate's own sentence
    saying why (the values compared and the threshold)."""
    cand, champ, base = decision.candidate, decision.champion, decision.base
    versus = f"champion v{champ.version}" if champ else "no champion yet"
    scores = [f"candidate {_ap(cand.ap)}"]
    if champ is not None:
        scores.append(f"champion {_ap(champ.ap)}")
    if base is not None:
        scores.append(f"base weights {_ap(base.ap)}")
    lines = [f"gate: {decision.model} v{cand.version} vs {versus}",
             f"AP50:95 on {cand.num_images} val images: " + ", ".join(scores)]
    if decision.golden_candidate is not None:
        gc, gh = decision.golden_candidate, decision.golden_champion
        lines.append(f"golden set ({gc.num_images} images): candidate {_ap(gc.ap)}"
                     + (f", champion {_ap(gh.ap)}" if gh is not None else ""))
    table = Table(title="\n".join(lines), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("rule", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("why", ratio=1)
    for rule in decision.rules:
        table.add_row(rule.name, "pass" if rule.passed else "[bold red]FAIL[/]", Text(rule.detail))
    return table


def serve_command(name: str, alias: str) -> str:
    """The command serving the registered version that holds ``alias`` on loopback (README: serving)."""
    return shlex.join(["mlflow", "models", "serve", "-m", f"models:/{name}@{alias}", "--env-manager",
                       "local", "-h", "127.0.0.1", "-p", str(SERVE_PORT)])


def registry_options(params_file: str | os.PathLike[str] | None, overrides: Sequence[str] | None
                     ) -> list[str]:
    """The ``--params``/``--set`` options of the commands a report prints (``yolox promote``, ``yolox gate``):
    the run's params file and those of its overrides that choose the registry (``tracking.``, ``gate.``;
    the others do not change what those commands do)."""
    sets = [a for o in overrides or () if o.startswith(("tracking.", "gate.")) for a in ("--set", o)]
    return [*(["--params", str(params_file)] if params_file is not None else []), *sets]


def pipeline_report(result: Any, decision: Any, params_args: Sequence[str]) -> list[RenderableType]:
    """How a pipeline run ended, for a person, as renderables for :data:`console`.

    ``result``: what :func:`yolox.pipeline.run_pipeline` returned; ``decision``: its gate decision (a
    :class:`yolox.registry.rules.Decision`), None for a skipped run. A skipped run is one line saying why and
    how to train anyway (``--force``). Otherwise: the :func:`decision_table`, then one line each for the
    decision, the outcome, where the model is (registered name, version and alias; the run folder; the ONNX
    file) and the next command: serve ``@champion`` when promoted, else try ``@challenger`` or promote it by
    hand (``yolox promote`` with ``params_args``, e.g. :func:`registry_options`).
    """
    if result.skipped:
        return [Text(f"skipped: {result.reason}: nothing trained, registered or promoted (--force trains "
                     "anyway)")]
    reg = result.registered
    gate = result.decision["gate"]
    champion_alias, challenger_alias = gate["champion_alias"], gate["challenger_alias"]
    model = f"{reg.name} version {reg.version} @{champion_alias if result.promoted else challenger_alias}"
    if not result.promoted and decision.champion is not None:
        model += f" ({champion_alias}: version {decision.champion.version})"
    elif not result.promoted and not decision.extra.get("champion_error"):
        model += f" (no {champion_alias} yet)"
    rows = [("decision", f"{decision.decision.upper()}: {decision.reason()}"),
            ("outcome", decision.outcome),
            ("model", model),
            ("run", f"{result.run_dir or '-'} (MLflow run {result.run_id})"),
            ("onnx", str(result.exported.onnx))]
    version = str(reg.version)
    if result.promoted:
        rows.append(("next", f"serve it: {serve_command(reg.name, champion_alias)}"))
    elif decision.extra.get("stale"):
        rows.append(("next", "gate it again against the new champion: "
                     + shlex.join(["yolox", "gate", *params_args, "--candidate-version", version])))
    else:
        rows.append(("next", f"try it: {serve_command(reg.name, challenger_alias)}"))
        promote = ["yolox", "promote", *params_args, "--version", version, "--reason", "..."]
        rows.append(("", f"or promote it by hand: {shlex.join(promote)}"))
    width = max(len(k) for k, _ in rows)
    return [decision_table(decision), *(Text(f"{k:<{width}}  {v}") for k, v in rows)]


def print_report(renderables: Sequence[RenderableType], to: Console | None = None) -> None:
    """Print :func:`pipeline_report`'s renderables on ``to`` (default :data:`console`): tables as they are,
    lines unwrapped (soft wrap: a command stays one line to copy, however narrow the terminal)."""
    out = to or console
    for item in renderables:
        if isinstance(item, Text):
            out.print(item, soft_wrap=True, highlight=False)
        else:
            out.print(item)


def report_text(renderables: Sequence[RenderableType], width: int = 100) -> str:
    """The same report as plain text, tables ``width`` columns wide (a log message: the flow's run log)."""
    text = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    print_report(renderables, text)
    return "\n".join(line.rstrip() for line in text.export_text().rstrip().splitlines())
