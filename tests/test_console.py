"""What the console shows (yolox/console.py; issue 24): a progress bar whole at 80 columns, and the pipeline's
report for a rejected candidate (naming the commands to run next) and for a skipped night, rendered from real
gate decisions (``decide``). The report of a promoted run, as a real run prints it:
tests/scenarios/test_run_end.py."""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace

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
