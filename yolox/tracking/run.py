"""One MLflow run per pipeline run: params, per-epoch metrics, AP metrics, artifacts, tags."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

from yolox.errors import TrackingError
from yolox.tracking.store import ensure_experiment, redact, tracking_uri

log = logging.getLogger("yolox.tracking")


def git_commit(cwd: str | Path | None = None) -> str:
    """The current git commit (with ``-dirty`` when the work tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class MlflowRun:
    """A started (or resumed, when ``run_id`` is given) MLflow run, driven through the client API so
    that several runs can be open in one process and nothing depends on a global active run."""

    def __init__(self, experiment: str, run_name: str | None = None, tags: dict[str, str] | None = None,
                 run_id: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        exp_id = ensure_experiment(experiment)
        self.client = MlflowClient()
        try:
            if run_id:
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
            else:
                self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags or {}).info.run_id
        except Exception as err:  # noqa: BLE001
            raise TrackingError(f"cannot start an MLflow run at {redact(tracking_uri())}: {err}") from err
        if run_id and tags:
            self.set_tags(tags)
        log.info("MLflow run %s (%s)", self.run_id, redact(tracking_uri()))

    def log_params(self, params: dict[str, Any]) -> None:
        """Log flattened params; values already logged (a resumed run) are skipped, not re-sent."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        new = [Param(k, str(v)) for k, v in params.items() if k not in logged]
        for i in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric
        import time

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status=status)
