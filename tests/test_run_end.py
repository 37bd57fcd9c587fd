"""What a user sees (issue 24, items 2 and 3, row 5): how a run ends, stdout a script can read, params that
do what the user meant, and ``yolox benchmark``'s model arguments checked before any measuring.

- ``yolox pipeline --json`` against a real ``mlflow server`` (an HTTP store: where MLflow prints its run URLs
  on stdout), a tiny run on real coco128 at COLUMNS=80: stdout is the JSON summary and nothing else; stderr
  ends with the gate's table and the lines saying where the model is and what to run next; the progress bar
  is whole at 80 columns; the library warnings that mean nothing to the user are gone.
- A new SQLite store's schema creation says nothing (unless ``--verbose``).
- The report's other branches (rejected, skipped), rendered from real gate decisions (``decide``).
- ``train.epochs=N`` alone lowers the phases to fit, with one note; contradictions are one line, before any
  server starts (``yolox pipeline`` and the Prefect flow's entry).
- ``yolox benchmark --reference NAME`` resolves as ``--weights`` does; a missing or unloadable model
  argument fails in seconds, before anything is read or measured.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from yolox.config import PipelineParams, load_params, params_from, parse_params
from yolox.errors import AssetError, CheckpointError, ConfigError

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULT = REPO / "params" / "default.yaml"
QUIET = ("The given NumPy array is not writable", "Inferred schema contains integer column",
         "serialized using CloudPickle", "Validating input example", "Downloading artifacts",
         "Waiting up to", "Creating initial MLflow database tables", "Updating database tables")
"""What a run printed before issue 24 and must not any more (each seen in a real run's stderr)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "80", "PYTHONPATH": str(REPO),
                "PREFECT_HOME": str(tmp_path / ".prefect"), **extra})
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 120
         ) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc, time.monotonic() - t0


# --- the progress bar at 80 columns ----------------------------------------------------------------------


def test_progress_bar_fits_80_columns() -> None:
    """Every column of a bar (description, bar, done/total, elapsed, remaining) whole at 80 columns; before
    issue 24 the trainer's read ``epoch 1/5 ━╸ 3/7 loss 5.811 iou ... size 416 0:0… -:--:…``."""
    from rich.console import Console

    from yolox.console import progress

    with progress(disable=True) as bar:     # drawn below on an 80-column console, not on the test's stderr
        bar.add_task("epoch 12/300 loss 5.811", total=1000, completed=10)
        bar.add_task("validating train images", total=128, completed=128)
        out = io.StringIO()
        Console(file=out, width=80, color_system=None).print(bar.get_renderable())
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 and "…" not in line for line in lines), lines
    assert re.fullmatch(r"epoch 12/300 loss 5\.811 .* 10/1000 0:00:00 -:--:--", lines[0]), lines[0]
    assert re.fullmatch(r"validating train images ━+ +128/128 +0:00:00 -:--:--", lines[1]), lines[1]


# --- a real pipeline run: stdout is the JSON, stderr says how it ended -----------------------------------


@pytest.fixture()
def mlflow_server(tmp_path: Path):
    """A real ``mlflow server`` (SQLite backend, proxied artifacts) on a free loopback port; its URI."""
    import httpx

    root = tmp_path / "server"
    root.mkdir()
    port = _free_port()
    log = (root / "server.log").open("w")
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=_env(tmp_path))
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mlflow server not healthy after 180 s"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


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
    proc, seconds = _run(cmd, tmp_path, _env(tmp_path, MLFLOW_TRACKING_URI=mlflow_server), timeout=900)
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
        proc, _ = _run(cmd, cwd, _env(tmp_path))
        assert proc.returncode == 1 and (cwd / "mlflow.db").is_file(), proc.stderr
        assert proc.stderr.splitlines()[-1] == ("error: no registered model 'q': run the pipeline to "
                                                "register one, or check tracking.registered_model in the "
                                                "params")
        lines[verbose] = [line for line in proc.stderr.splitlines() if "database tables" in line]
    assert lines[False] == []
    assert [line.split(": ", 1)[1] for line in lines[True]] == ["Creating initial MLflow database tables...",
                                                                "Updating database tables"]


# --- the report's other branches, from real gate decisions -------------------------------------------------

RUN_DIR = Path("runs/pipeline/20261207-101010-abcdef12")


def _evaluated(version: str | None, ap: float):
    from yolox.registry.rules import ModelEval

    return ModelEval(version, {"AP50_95": ap, "AP50": ap + 0.2}, "sha256:0123456789abcdef", "d1", 17)


def _result(decision, promoted: bool) -> SimpleNamespace:
    reg = SimpleNamespace(name=decision.model, version=str(decision.candidate.version))
    return SimpleNamespace(skipped=False, registered=reg, decision=decision.to_json(), promoted=promoted,
                           run_dir=RUN_DIR, run_id="r1",
                           exported=SimpleNamespace(onnx=RUN_DIR / "export/m.onnx"))


def test_report_of_a_rejected_candidate_names_the_commands() -> None:
    from yolox.config import GateParams
    from yolox.console import pipeline_report, registry_options, report_text
    from yolox.registry.gate import apply_decision
    from yolox.registry.rules import decide

    gp = GateParams(max_regression=0.01)
    decision = decide("m", _evaluated("2", 0.30), _evaluated("1", 0.45), True, gp)
    apply_decision(decision, gp)      # a rejection moves nothing (no registry call)
    options = registry_options("p.yaml", ["train.epochs=1", "tracking.registered_model=m", "gate.min_ap=0.2"])
    assert options == ["--params", "p.yaml", "--set", "tracking.registered_model=m", "--set",
                       "gate.min_ap=0.2"]
    text = report_text(pipeline_report(_result(decision, False), decision, options), width=80).splitlines()
    assert text[:2] == ["gate: m v2 vs champion v1",
                        "AP50:95 on 17 val images: candidate 0.3000, champion 0.4500"]
    rows = [line.split()[:2] for line in text if re.match(r" \w+ +(pass|FAIL) ", line)]
    assert rows == [["min_ap", "pass"], ["max_regression", "FAIL"], ["best_ever", "pass"],
                    ["export_check", "pass"], ["same_val_set", "pass"]]
    assert " max_regression   FAIL     AP50_95 0.3000 < 0.4400 = champion v1 0.4500 - 0.01" in text
    assert text[-7:] == [
        ("decision  REJECT: m version 2 rejected: max_regression: AP50_95 0.3000 < 0.4400 = champion v1 "
         "0.4500 - 0.01"),
        "outcome   not promoted: version 2 stays challenger",
        "model     m version 2 @challenger (champion: version 1)",
        f"run       {RUN_DIR} (MLflow run r1)",
        f"onnx      {RUN_DIR}/export/m.onnx",
        ("next      try it: mlflow models serve -m models:/m@challenger --env-manager local -h 127.0.0.1 "
         "-p 5001"),
        ("          or promote it by hand: yolox promote --params p.yaml --set tracking.registered_model=m "
         "--set gate.min_ap=0.2 --version 2 --reason ...")]


def test_report_of_a_skipped_night_is_one_line() -> None:
    from yolox.console import pipeline_report, report_text

    reason = "data unchanged since version 1 (champion): same data, params and code"
    skipped = SimpleNamespace(skipped=True, reason=reason)
    assert report_text(pipeline_report(skipped, None, ["--params", "p.yaml"])) == (
        f"skipped: {reason}: nothing trained, registered or promoted (--force trains anyway)")


# --- train.epochs=N alone --------------------------------------------------------------------------------


def _phases(p: PipelineParams) -> tuple:
    t = p.train
    return t.epochs, t.warmup_epochs, t.no_aug_epochs, t.close_mosaic_epochs, t.eval_interval


def _note(epochs: int, lowered: str) -> str:
    return f"train.epochs={epochs}: lowered {lowered} to fit the run (override them to choose)"


def test_epochs_override_alone_fits_the_phases(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "yolox.config")
    assert _phases(load_params(DEFAULT, ["train.epochs=1"])) == (1, 1, 1, None, 1)   # default.yaml: 1, 2, 5
    assert _phases(params_from(None, ["train.epochs=3"])) == (3, 3, 3, None, 3)       # defaults: 5, 15, 10
    assert _phases(load_params(DEFAULT, ["train.epochs=50"])) == (50, 1, 2, None, 5)  # nothing to lower
    # a phase set with it is the user's: kept where it may be (an evaluation interval); the others still fit
    assert _phases(load_params(DEFAULT, ["train.epochs=1", "train.eval_interval=4"])) == (1, 1, 1, None, 4)
    mosaic = tmp_path / "mosaic.yaml"
    mosaic.write_text(yaml.safe_dump({"train": {"epochs": 10, "no_aug_epochs": 2, "close_mosaic_epochs": 3}}))
    assert _phases(load_params(mosaic, ["train.epochs=2"])) == (2, 2, 2, 2, 2)
    assert [r.getMessage() for r in caplog.records] == [
        _note(1, "train.no_aug_epochs 2 -> 1, train.eval_interval 5 -> 1"),
        _note(3, "train.warmup_epochs 5 -> 3, train.no_aug_epochs 15 -> 3, train.eval_interval 10 -> 3"),
        _note(1, "train.no_aug_epochs 2 -> 1"),
        _note(2, "train.warmup_epochs 5 -> 2, train.close_mosaic_epochs 3 -> 2, train.eval_interval 10 -> 2")]


CONTRADICTION = ("train.no_aug_epochs=2 and train.epochs=1, both overridden: no_aug_epochs must not exceed "
                 "epochs; lower train.no_aug_epochs or raise train.epochs")


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.epochs=1", "train.no_aug_epochs=2"], CONTRADICTION),
    (["train.no_aug_epochs=9"],
     (f"train.no_aug_epochs=9 exceeds train.epochs (5 in {DEFAULT}): add the override train.epochs=9 "
      "(or more), or lower train.no_aug_epochs")),
    (["train.close_mosaic_epochs=6"],
     (f"train.close_mosaic_epochs=6 exceeds train.epochs (5 in {DEFAULT}): add the override "
      "train.epochs=6 (or more), or lower train.close_mosaic_epochs")),
], ids=["both-set", "phase-alone", "close-mosaic-alone"])
def test_contradicting_overrides_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_params(DEFAULT, overrides)
    assert str(err.value) == message


def test_a_params_file_that_contradicts_itself_is_still_an_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"train": {"epochs": 1, "no_aug_epochs": 2}}, "p.yaml")
    assert str(err.value).splitlines() == [
        "p.yaml: invalid params",
        ("  train: Value error, no_aug_epochs (2) must not exceed epochs (1): lower no_aug_epochs or raise "
         "epochs (an override of train.epochs alone lowers the phases to fit)")]


@pytest.mark.parametrize("entry", ["cli", "flow"])
def test_entries_check_the_epochs_before_any_server(entry: str, tmp_path: Path) -> None:
    """``yolox pipeline`` and ``python -m flows.train_yolox``: a contradiction is one line and exit 1; and
    ``train.epochs=1`` alone gets its note and goes on to the tracking store (a closed port here: the
    preflight's one line); both in seconds, with no Prefect server started and nothing written."""
    def command(*overrides: str) -> list[str]:
        if entry == "flow":
            return [sys.executable, "-m", "flows.train_yolox", str(DEFAULT), *overrides]
        sets = [a for o in overrides for a in ("--set", o)]
        return [str(BIN / "yolox"), "pipeline", "--params", str(DEFAULT), *sets]

    uri = f"http://127.0.0.1:{_free_port()}"           # nothing listens there
    env = _env(tmp_path, MLFLOW_TRACKING_URI=uri, COLUMNS="300")
    work = tmp_path / "work"
    work.mkdir()
    proc, seconds = _run(command("train.epochs=1", "train.no_aug_epochs=2"), work, env)
    assert (proc.returncode, proc.stdout, proc.stderr.splitlines()) == (1, "", [f"error: {CONTRADICTION}"])
    assert seconds < 10, f"took {seconds:.1f} s"

    proc, seconds = _run(command("train.epochs=1", "tracking.preflight_timeout_s=1"), work, env)
    assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr
    note, error = (line.rstrip() for line in proc.stderr.strip().splitlines())
    assert note.endswith(_note(1, "train.no_aug_epochs 2 -> 1, train.eval_interval 5 -> 1")), note
    assert "WARNING" in note
    assert error == (f"error: MLflow tracking store {uri} (MLFLOW_TRACKING_URI) is unreachable: connection "
                     "refused; start the MLflow server or point MLFLOW_TRACKING_URI at a running one")
    assert seconds < 10, f"took {seconds:.1f} s"
    assert list(work.iterdir()) == []                                  # no run folder, no store, no data
    assert not (tmp_path / ".prefect" / "prefect.db").exists()        # Prefect's API server never started


# --- yolox benchmark: model arguments --------------------------------------------------------------------

BENCH = {"export": {"benchmark_warmup": 0, "benchmark_repeats": 2, "benchmark_batch": 1}}


def test_benchmark_reference_by_name_resolves_as_weights_do(nano_onnx: Path, coco128_dir: Path,
                                                            assets_dir: Path) -> None:
    from yolox.export.benchmark import run_benchmark

    params = PipelineParams.model_validate(BENCH)
    result = run_benchmark(params, str(nano_onnx), str(coco128_dir), "train", "yolox-nano",
                           reference="yolox_nano.pth", max_images=2)
    mirror = assets_dir / "weights" / "yolox_nano.pth"
    assert [(r.format, r.status, r.path) for r in result.rows] == [
        ("onnx-raw", "ok", str(nano_onnx)), ("reference", "ok", str(mirror))]
    raw, ref = result.rows
    assert abs(raw.AP50_95 - ref.AP50_95) <= 0.002 and ref.p50_ratio == 1.0   # one network, two runtimes


def test_benchmark_reference_onnx_by_name(nano_onnx: Path, coco128_dir: Path, assets_dir: Path) -> None:
    """The README's ``--reference yolox_nano.onnx``, resolved by name as ``--weights`` is."""
    from yolox.export.benchmark import run_benchmark

    result = run_benchmark(PipelineParams.model_validate(BENCH), str(nano_onnx), str(coco128_dir), "train",
                           "yolox-nano", reference="yolox_nano.onnx", max_images=2)
    assert result.rows[-1].path == str(assets_dir / "weights" / "yolox_nano.onnx")


@pytest.fixture()
def nothing_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if the benchmark reads the dataset, exports or measures anything."""
    import yolox.export.benchmark as bench

    def forbidden(what: str):
        def call(*args, **kwargs):
            raise AssertionError(f"{what} ran before the model arguments were checked")
        return call

    monkeypatch.setattr(bench, "load_dataset", forbidden("load_dataset"))
    monkeypatch.setattr(bench, "_candidates", forbidden("the export of the candidates"))
    monkeypatch.setattr(bench, "_accuracy", forbidden("an AP measurement"))
    monkeypatch.setattr(bench, "_timings", forbidden("a latency measurement"))


def _unknown(option: str, name: str) -> str:
    from yolox.assets import WEIGHTS

    return (f"{option} {name}: weights '{name}': no such file, and not a released checkpoint name (known: "
            f"{', '.join(sorted(WEIGHTS))})")


def test_benchmark_model_arguments_checked_first(tmp_path: Path, nano_pth: Path, nothing_measured: None
                                                 ) -> None:
    from yolox.export.benchmark import run_benchmark

    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("not a model")
    labels = tmp_path / "labels.txt"
    labels.write_text("person\n")
    cases = [
        (str(nano_pth), "missing.onnx", AssetError, _unknown("--reference", "missing.onnx")),
        (str(nano_pth), str(garbage), CheckpointError, f"--reference: {garbage}: not a loadable ONNX model"),
        (str(nano_pth), str(labels), ConfigError,
         (f"--reference {labels}: not a .pth checkpoint or an .onnx model (a registered version is "
          "models:/NAME/VERSION or models:/NAME@ALIAS)")),
        ("missing.pth", None, AssetError, _unknown("--weights", "missing.pth")),
    ]
    params = PipelineParams.model_validate(BENCH)
    for weights, reference, kind, message in cases:
        t0 = time.monotonic()
        with pytest.raises(kind) as err:
            run_benchmark(params, weights, "coco128", "val", "yolox-nano", reference=reference)
        assert str(err.value).startswith(message), str(err.value)
        assert time.monotonic() - t0 < 5


def test_benchmark_cli_fails_in_seconds_on_a_missing_reference(tmp_path: Path) -> None:
    cmd = [str(BIN / "yolox"), "benchmark", "--weights", "yolox_nano.pth", "--model", "yolox-nano", "--data",
           "coco128", "--reference", "missing.onnx"]
    proc, seconds = _run(cmd, tmp_path, _env(tmp_path))
    assert (proc.returncode, proc.stdout, proc.stderr.splitlines()) == \
        (1, "", [f"error: {_unknown('--reference', 'missing.onnx')}"])
    assert seconds < 5, f"took {seconds:.1f} s"
