"""Run the ``yolox`` command as the tests do: in the test process (the tests of bad input and interruptions),
or as the real script in a subprocess with a clean environment."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from helpers.project_files import REPO


def yolox(*args: Any, cwd: Path | None = None) -> tuple[int, str]:
    """Run the ``yolox`` entry point in this process: (exit code, everything printed)."""
    from yolox import cli

    out, err = io.StringIO(), io.StringIO()
    argv, old_cwd, width = sys.argv, Path.cwd(), cli.console.width
    sys.argv = ["yolox", *map(str, args)]
    cli.console.width = 1000  # log lines unwrapped, whatever the terminal
    code = 0
    try:
        if cwd:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            cli.run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv, cli.console.width = argv, width
        os.chdir(old_cwd)
    return code, out.getvalue() + err.getvalue()


def yolox_stderr(args: list[str], capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """``yolox ARGS`` in this process, its output captured by pytest: (exit status, stderr). For the tests
    that send this process a signal from inside a training step (:func:`helpers.train.signal_at_step`)."""
    from yolox import cli as cli_module

    monkeypatch.setattr(sys, "argv", ["yolox", *args])
    capsys.readouterr()
    try:
        cli_module.run()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capsys.readouterr().err


# --- the real ``yolox`` script, in a subprocess ------------------------------------------------------------

BIN = Path(sys.executable).parent


def yolox_env(tmp: Path, **extra: str) -> dict[str, str]:
    """This process's environment for a ``yolox`` subprocess: no MLFLOW_* variable, telemetry off, 80 columns,
    the repository on PYTHONPATH (``python -m flows...``), Prefect's home in ``tmp/.prefect``; then
    ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "80", "PYTHONPATH": str(REPO),
                "PREFECT_HOME": str(tmp / ".prefect"), **extra})
    return env


def run_timed(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 120
              ) -> tuple[subprocess.CompletedProcess[str], float]:
    """``cmd`` run to its end (output captured, never checked): the process and the seconds it took."""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc, time.monotonic() - t0
