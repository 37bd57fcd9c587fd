"""What a user sees (issue 24, items 2 and 3, row 5): how a run ends, stdout a script can read, and params
checked before any server starts. (The progress bar and the report's other branches: tests/test_console.py;
the params' own checks: tests/test_config.py; ``yolox benchmark``'s model arguments:
tests/export/test_benchmark.py.)

- ``yolox pipeline --json`` against a real ``mlflow server`` (an HTTP store: where MLflow prints its run URLs
  on stdout), a tiny run on real coco128 at COLUMNS=80: stdout is the JSON summary and nothing else; stderr
  ends with the gate's table and the lines saying where the model is and what to run next; the progress bar
  is whole at 80 columns; the library warnings that mean nothing to the user are gone.
- A new SQLite store's schema creation says nothing (unless ``--verbose``).
- ``train.epochs=N`` alone gets its note and contradictions are one line, before any server starts (``yolox
  pipeline`` and the Prefect flow's entry).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from helpers.cli_runner import BIN, REPO, run_timed, yolox_env
from helpers.mlflow_server import MlflowServer

from yolox.train.torchrun import free_port

DEFAULT = REPO / "params" / "default.yaml"
QUIET = ("The given NumPy array is not writable", "Inferred schema contains integer column",
         "serialized using CloudPickle", "Validating input example", "Downloading artifacts",
         "Waiting up to", "Creating initial MLflow database tables", "Updating database tables")
"""What a run printed before issue 24 and must not any more (each seen in a real run's stderr)."""
CONTRADICTION = ("train.no_aug_epochs=2 and train.epochs=1, both overridden: no_aug_epochs must not exceed "
                 "epochs; lower train.no_aug_epochs or raise train.epochs")
EPOCHS_NOTE = ("train.epochs=1: lowered train.no_aug_epochs 2 -> 1, train.eval_interval 5 -> 1 to fit the "
               "run (override them to choose)")


# --- a real pipeline run: stdout is the JSON, stderr says how it ended -----------------------------------


@pytest.fixture()
def mlflow_server(tmp_path: Path):
    """A real ``mlflow server`` (SQLite backend, proxied artifacts) on a free loopback port; its URI."""
    server = MlflowServer(tmp_path / "server", env=yolox_env(tmp_path))
    try:
        server.start(timeout=180)
        yield server.uri
    finally:
        server.stop()


TINY = {
    "data": {"source": "coco128", "val_fraction": 0.2},
    "model": {"name": "yolox-nano", "input_size": 416, "weights": "yolox_nano.pth"},
    "augment": {"multiscale_range": 0},
    "train": {"epochs": 1, "batch_size": 4, "warmup_epochs": 1, "no_aug_epochs": 1, "max_iters_per_epoch": 2,
              "eval_interval": 1, "workers": 0, "basic_lr_per_img": 1.5625e-5,
              "freeze": ["backbone.backbone.stem"]},
    "export": {"check_images": 2},
    "tracking": {"experiment": "run-end", "registered_model": "yolox-run-end"},
    "gate": {"min_ap": 0.0, "max_regression": 1.0},      # a first model that passes: the promoted branch
}


def test_pipeline_json_on_stdout_and_the_end_on_stderr(tmp_path: Path, coco128_dir: Path,
                                                       mlflow_server: str) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    cmd = [str(BIN / "yolox"), "pipeline", "--params", "params.yaml", "--json", "--json-out", "summary.json"]
    proc, seconds = run_timed(cmd, tmp_path, yolox_env(tmp_path, MLFLOW_TRACKING_URI=mlflow_server),
                              timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout)                   # the whole of stdout: the summary and nothing else
    assert proc.stdout.startswith("{") and proc.stdout.endswith("}\n")
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (summary["registered_model"], summary["version"], summary["alias"], summary["promoted"]) == \
        ("yolox-run-end", "1", "champion", True)
    for text in ("View run", "View experiment", "━", "validating", "INFO"):   # MLflow's URLs, bars, logs
        assert text not in proc.stdout
    err = [line.rstrip() for line in proc.stderr.splitlines()]   # rich pads a table's lines to the width
    for text in QUIET:
        assert not any(text in line for line in err), text
    # the validation bar's final state, whole at 80 columns
    (bar,) = [line for line in err if line.startswith("validating train images")]
    assert re.fullmatch(r"validating train images ━+ 128/128 \d:\d\d:\d\d 0:00:00", bar), bar
    assert len(bar) <= 80

    # the gate's table: the title, then one row per rule of the decision record, with its verdict
    start = err.index("gate: yolox-run-end v1 vs no champion yet")
    base = summary["gate"]["base"]["metrics"]["AP50_95"]
    assert err[start + 1] == (f"AP50:95 on 17 val images: candidate {summary['AP50_95']:.4f}, "
                              f"base weights {base:.4f}")
    rules = summary["gate"]["rules"]
    assert [r["name"] for r in rules] == ["min_ap", "max_regression", "best_ever", "base_weights",
                                          "export_check", "same_val_set"]
    rows = [line for line in err[start:] if re.match(r" \w+ +(pass|FAIL) ", line)]
    assert [row.split()[:2] for row in rows] == [[r["name"], "pass"] for r in rules]
    assert all(len(line) <= 80 for line in err[start:start + 12])     # the table fits the terminal
    ap, onnx, run_dir = summary["AP50_95"], summary["onnx"], summary["run_dir"]
    assert err[-6:] == [
        f"decision  PROMOTE: yolox-run-end version 1 passes the gate (AP50_95 {ap:.4f}; no champion yet)",
        "outcome   promoted: version 1 is champion (previous: none)",
        "model     yolox-run-end version 1 @champion",
        f"run       {run_dir} (MLflow run {summary['mlflow_run_id']})",
        f"onnx      {onnx}",
        ("next      serve it: mlflow models serve -m models:/yolox-run-end@champion --env-manager local "
         "-h 127.0.0.1 -p 5001")]
    assert (tmp_path / onnx).is_file() and Path(onnx).parent.parent == Path(run_dir)
    print(f"pipeline --json against an HTTP store: {seconds:.0f} s")


def test_a_new_sqlite_store_is_created_quietly(tmp_path: Path) -> None:
    """MLflow's "Creating initial MLflow database tables..." on a store's first use: gone, unless -v."""
    lines = {}
    for verbose in (False, True):
        cwd = tmp_path / f"verbose-{verbose}"
        cwd.mkdir()
        params = {"tracking": {"experiment": "q", "registered_model": "q"}}
        (cwd / "p.yaml").write_text(yaml.safe_dump(params))
        cmd = [str(BIN / "yolox"), *(["-v"] * verbose), "promote", "--params", "p.yaml", "--version", "1"]
        proc, _ = run_timed(cmd, cwd, yolox_env(tmp_path))
        assert proc.returncode == 1 and (cwd / "mlflow.db").is_file(), proc.stderr
        assert proc.stderr.splitlines()[-1] == ("error: no registered model 'q': run the pipeline to "
                                                "register one, or check tracking.registered_model in the "
                                                "params")
        lines[verbose] = [line for line in proc.stderr.splitlines() if "database tables" in line]
    assert lines[False] == []
    assert [line.split(": ", 1)[1] for line in lines[True]] == ["Creating initial MLflow database tables...",
                                                                "Updating database tables"]


@pytest.mark.parametrize("entry", ["cli", "flow"])
def test_entries_check_the_epochs_before_any_server(entry: str, tmp_path: Path) -> None:
    """``yolox pipeline`` and ``python -m flows.train_yolox``: a contradiction is one line and exit 1; and
    ``train.epochs=1`` alone goes on to the tracking store (a closed port here: the preflight's one line), the
    pipeline saying its note first (the flow's entry leaves the note to the flow run, which logs it once,
    where the run is read: none here); both in seconds, with no Prefect server started and nothing written."""
    def command(*overrides: str) -> list[str]:
        if entry == "flow":
            return [sys.executable, "-m", "flows.train_yolox", str(DEFAULT), *overrides]
        sets = [a for o in overrides for a in ("--set", o)]
        return [str(BIN / "yolox"), "pipeline", "--params", str(DEFAULT), *sets]

    uri = f"http://127.0.0.1:{free_port()}"           # nothing listens there
    env = yolox_env(tmp_path, MLFLOW_TRACKING_URI=uri, COLUMNS="300")
    work = tmp_path / "work"
    work.mkdir()
    proc, seconds = run_timed(command("train.epochs=1", "train.no_aug_epochs=2"), work, env)
    assert (proc.returncode, proc.stdout, proc.stderr.splitlines()) == (1, "", [f"error: {CONTRADICTION}"])
    assert seconds < 10, f"took {seconds:.1f} s"

    proc, seconds = run_timed(command("train.epochs=1", "tracking.preflight_timeout_s=1"), work, env)
    assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr
    *notes, error = (line.rstrip() for line in proc.stderr.strip().splitlines())
    if entry == "cli":
        (note,) = notes
        assert note.endswith(EPOCHS_NOTE) and "WARNING" in note, note
    else:
        assert notes == []
    assert error == (f"error: MLflow tracking store {uri} (MLFLOW_TRACKING_URI) is unreachable: connection "
                     "refused; start the MLflow server or point MLFLOW_TRACKING_URI at a running one")
    assert seconds < 10, f"took {seconds:.1f} s"
    assert list(work.iterdir()) == []                                  # no run folder, no store, no data
    assert not (tmp_path / ".prefect" / "prefect.db").exists()        # Prefect's API server never started
