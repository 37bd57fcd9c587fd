"""One MLflow run per pipeline run: params, per-epoch metrics, AP metrics, artifacts, tags."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any

from yolox.errors import TrackingError
from yolox.tracking.store import configure, ensure_experiment, redact, tracking_uri

log = logging.getLogger("yolox.tracking")

PER_CLASS_TABLE = "metrics/per_class_table.json"
"""Where a pipeline run logs its AP50:95 per class (:meth:`MlflowRun.log_table`; columns ``class``, ``AP50_95``,
``boxes``: the evaluated split's boxes of that class), best first: a table in the run's artifacts, not one metric
per class."""


def git_commit(cwd: str | Path | None = None) -> str:
    """The git commit of the code that runs (with ``-dirty`` when tracked files changed), or ``unknown``.

    Looks in ``cwd`` (default: the working directory), then in the folder of the installed ``yolox``
    package (an editable install run from elsewhere, e.g. a pipeline started in a scratch folder).
    """
    found = _git_commit(cwd)
    if found == "unknown" and cwd is None:
        found = _git_commit(Path(__file__).resolve().parents[2])
    return found


def _git_commit(cwd: str | Path | None) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def default_run_name(model: str, data_version: str, started: float | None = None) -> str:
    """The name a pipeline run gets in MLflow unless ``tracking.run_name`` sets one: ``<model> <data> <when>``,
    e.g. ``nano 1a2b3c4d 1207-0612``: the model without its ``yolox-`` prefix (``nano``, ``s``, ``darknet53``), the
    first 8 characters of the data version, and the start time in UTC (``MMDD-HHMM``; ``started``: seconds since
    the epoch, default now). In the order a person scans MLflow's runs table (which model, on which data, then
    when: runs of one recipe differ by their time), and short: the table's Run Name column shows about 23
    characters (141 px measured in MLflow 3.17's UI): all of it for every model but darknet53 (its minutes are
    cut); the Created column beside it tells apart runs started in the same minute."""
    return f"{model.removeprefix('yolox-')} {data_version[:8]} {time.strftime('%m%d-%H%M', time.gmtime(started))}"


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
        except Exception as err:
            raise TrackingError(f"cannot start an MLflow run at {redact(tracking_uri())}: {redact(str(err))}") from err
        if run_id and tags:
            self.set_tags(tags)
        log.info("MLflow run %s (%s)", self.run_id, redact(tracking_uri()))

    @classmethod
    def attach(cls, run_id: str) -> MlflowRun:
        """An existing run, to add artifacts or tags without changing its status (e.g. a finished run).

        Raises:
            TrackingError: the run does not exist or the store cannot be reached.
        """
        from mlflow.tracking import MlflowClient

        configure()
        self = cls.__new__(cls)
        self.client = MlflowClient()
        try:
            self.run_id = self.client.get_run(run_id).info.run_id
        except Exception as err:
            raise TrackingError(f"MLflow run {run_id} not found at {redact(tracking_uri())}: {redact(str(err))}") from err
        return self

    def log_params(self, params: dict[str, Any]) -> None:
        """Log flattened params; values already logged (a resumed run) are skipped, not re-sent."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        new = [Param(k, str(v)) for k, v in params.items() if k not in logged]
        for i in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

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

    def log_table(self, rows: list[dict[str, Any]], artifact_file: str) -> None:
        """Log ``rows`` (dicts with the same keys, the columns in their order) as an MLflow table artifact
        (``artifact_file``, a ``.json`` path such as ``metrics/per_class_table.json``), which the run's artifact
        view shows as a table; for values that are facts of one run, not curves over epochs (no metrics).

        Raises:
            MlflowException: the tracking store refused the artifact or cannot be reached (within the bounds of
                :func:`yolox.tracking.store.bound_requests`).
        """
        columns = list(rows[0]) if rows else []
        self.client.log_table(self.run_id, data={c: [r.get(c) for r in rows] for c in columns},
                              artifact_file=artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure as an image artifact (e.g. ``plots/pr_curves.png``)."""
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_figures(self, figures: dict[str, Any]) -> None:
        """Log ``{artifact_file: figure}`` (figures of :mod:`yolox.evaluate.plots`)."""
        for name, fig in figures.items():
            self.log_figure(fig, name)

    def log_dict(self, obj: dict[str, Any], artifact_file: str) -> None:
        """Log a dict as a json (or yaml, by suffix) artifact, e.g. ``gate/decision.json``."""
        self.client.log_dict(self.run_id, obj, artifact_file)

    def set_note(self, markdown: str) -> None:
        """The run's description in the MLflow UI (Markdown)."""
        self.client.set_tag(self.run_id, "mlflow.note.content", markdown)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status=status)


def attach(params: Any, run_id: str | None) -> Any:
    """The MLflow run ``run_id`` of ``params.tracking.experiment`` to log to, or None without a run id (a stage
    called outside a pipeline run logs nothing)."""
    if not run_id:
        return None
    return MlflowRun(params.tracking.experiment, run_id=run_id)
