"""Run the ``yolox`` command in the test process (shared by the tests of bad input at the command line)."""

from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any


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
