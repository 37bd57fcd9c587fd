"""A real ``mlflow server`` (the installed MLflow) for the tests: SQLite backend in ``root/mlflow.db``,
proxied artifacts in ``root/artifacts``, on a loopback port (a free one unless given), started in its own
session (a SIGKILL reaches its workers too) and started again on the same port and database after a kill."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from helpers.background import Background, wait_http
from yolox.train.torchrun import free_port

BIN = Path(sys.executable).parent


class MlflowServer:
    """``launch`` starts it (each start logs to ``root/server-<n>.log``), ``wait_healthy`` waits for
    ``/health``, ``kill`` SIGKILLs it (a crash), ``stop`` ends it politely. ``env``: the server's environment
    (default: this process's without MLFLOW_* variables, telemetry off); ``args``: more ``mlflow server``
    options."""

    def __init__(self, root: Path, port: int | None = None, env: dict[str, str] | None = None,
                 artifacts: bool = True, args: tuple[str, ...] = ()) -> None:
        self.root, self.port, self.starts = root, port or free_port(), 0
        self.uri = f"http://127.0.0.1:{self.port}"
        if env is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.env = {**env, "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                    *(["--artifacts-destination", str(root / "artifacts")] if artifacts else []),
                    "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1", *args]
        self.process: Background | None = None
        self.launched = 0.0

    def launch(self) -> None:
        """Start the server (the same port and database each time) without waiting for it."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.launched = time.monotonic()
        self.process = Background(f"server-{self.starts}", self.cmd, self.root, self.env, self.root)

    def wait_healthy(self, timeout: float = 120.0) -> float:
        """Seconds from the launch until ``/health`` answered; fails the test with the server's log when it
        exits or does not answer within ``timeout`` s from now."""
        assert self.process is not None, "launch() first"
        wait_http(f"{self.uri}/health", self.process, timeout, interval=0.3)
        return time.monotonic() - self.launched

    def start(self, timeout: float = 120.0) -> float:
        """``launch`` then ``wait_healthy``."""
        self.launch()
        return self.wait_healthy(timeout)

    def kill(self) -> None:
        """SIGKILL the server and whatever is left of its workers."""
        if self.process is not None:
            self.process.kill()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (then SIGINT, then SIGKILL) to the server and its workers."""
        if self.process is not None:
            self.process.stop(timeout)
