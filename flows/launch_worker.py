"""Start a Prefect worker for the ``train-yolox`` deployments, ready to be stopped with SIGTERM.

    python flows/launch_worker.py                      # pool from prefect.yaml (yolox-process), type process
    python flows/launch_worker.py --limit 1 --name gpu-0   # any other `prefect worker start` option

Why a launcher: a process started in the background by a non-interactive shell (``cmd &``, nohup, CI,
``subprocess.Popen``) inherits SIGINT as *ignored*, and the Prefect worker then ignores SIGTERM too. Here
SIGINT is reset to its default before ``exec``, so SIGTERM (docker stop, systemd, kill) stops the worker.

It also sets ``YOLOX_PROJECT_DIR`` (read by prefect.yaml's ``set_working_directory`` pull step when a run
starts) to this checkout, unless it is set already, and defaults ``PREFECT_HOME`` to ``<checkout>/.prefect``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]


def default_pool(prefect_yaml: Path = PROJECT_DIR / "prefect.yaml") -> str:
    """The work pool the deployments in ``prefect_yaml`` use (the first one named)."""
    import yaml

    config = yaml.safe_load(prefect_yaml.read_text())
    for deployment in config.get("deployments") or []:
        name = (deployment.get("work_pool") or {}).get("name")
        if name:
            return str(name)
    raise SystemExit(f"{prefect_yaml}: no deployment names a work_pool; pass --pool NAME")


def worker_command(argv: list[str]) -> list[str]:
    """The ``prefect worker start ...`` command line for ``argv`` (adds --pool and --type when missing)."""
    local = Path(sys.executable).parent / "prefect"
    prefect = str(local) if local.is_file() else (shutil.which("prefect") or "prefect")
    cmd = [prefect, "worker", "start", *argv]
    if not any(a in ("--pool", "-p") or a.startswith("--pool=") for a in argv):
        cmd += ["--pool", default_pool()]
    if not any(a in ("--type", "-t") or a.startswith("--type=") for a in argv):
        cmd += ["--type", "process"]
    return cmd


def main(argv: list[str] | None = None) -> None:
    cmd = worker_command(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("YOLOX_PROJECT_DIR", str(PROJECT_DIR))
    os.environ.setdefault("PREFECT_HOME", str(PROJECT_DIR / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # inherited SIG_IGN would survive exec
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    print("exec:", " ".join(cmd), f"(YOLOX_PROJECT_DIR={os.environ['YOLOX_PROJECT_DIR']})", flush=True)
    os.execv(cmd[0], cmd) if os.path.isabs(cmd[0]) else os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
