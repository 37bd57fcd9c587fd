"""Long-running commands of the tests (servers, workers): each in its own session, so that stopping it also
stops whatever it started; its output in a log file."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback: never through a proxy


class Background:
    """``cmd`` started in its own session, stdout and stderr in ``log_dir/<name>.log``. ``stop`` ends it and
    anything it started; ``stopped_by`` then says how (``SIGTERM after 1.2 s (exit 0)``, or ``SIGKILL``)."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str], log_dir: Path) -> None:
        self.name, self.log, self.stopped_by = name, log_dir / f"{name}.log", "SIGKILL"
        self._fh = self.log.open("w")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGINT, then SIGKILL (each after ``timeout`` s), and SIGKILL to whatever is left in
        its session (flow-run processes, uvicorn workers); returns the exit code."""
        code, t0 = None, time.monotonic()
        for sig in (signal.SIGTERM, signal.SIGINT):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout)
                self.stopped_by = f"{sig.name} after {time.monotonic() - t0:.1f} s (exit {code})"
            except subprocess.TimeoutExpired:
                continue
        self.kill()
        return code if code is not None else self.proc.returncode

    def kill(self) -> None:
        """SIGKILL to its whole session now (a crash, as far as the command can tell)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._fh.close()


def wait_http(url: str, proc: Background, timeout: float, interval: float = 0.5) -> float:
    """Seconds until ``GET url`` answers 200; fails the test (with the end of the command's log) when the
    command exits first or ``timeout`` seconds pass."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.proc.poll() is not None:
            pytest.fail(f"{proc.name} exited with {proc.proc.returncode}:\n{proc.output()[-4000:]}")
        try:
            with _DIRECT.open(url, timeout=3) as answer:
                if answer.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(interval)
    pytest.fail(f"{url} not up after {timeout:.0f} s:\n{proc.output()[-4000:]}")
