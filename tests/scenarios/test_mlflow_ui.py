"""The MLflow UI as a person uses it after `yolox pipeline`: a real `mlflow server` on the run's SQLite store,
driven in a real browser (Debian's chromium through Playwright), plus what the project writes for that UI,
checked through MLflow's API: experiments recorded as model training, run names that a person can scan, the
data counts as params and AP per class as a table (the metrics are the epoch curves and the headline numbers).
(Experiment kinds and run names, through MLflow's API: tests/tracking/test_tracking_store.py.)

MLflow 3.17's UI opens on its GenAI views until the sidebar's switch is set to *Model training* (the choice is kept
by the browser; no server flag or environment variable sets it, and the experiment tag ``mlflow.experimentKind`` is
not read for it): the browser test sets the switch as the README says, then checks the pages the README points at.
Screenshots are saved under the test's tmp_path (``screenshots/*.png``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.mlflow_server import MlflowServer

from yolox.tracking.store import EXPERIMENT_KIND_TAG, TRAINING_KIND

CHROMIUM = "/usr/bin/chromium"
EXPERIMENT, MODEL = "ui", "yolox-ui"

# tiny, on coco128 (CPU, ~45 s on 2 busy cores): two epochs, so the loss and AP curves have two points; no base
# check and no AP floor, so the first version is promoted and holds both aliases
PARAMS = {
    "data": {"source": "coco128", "val_fraction": 0.1},
    "model": {"name": "yolox-nano", "input_size": 320, "weights": "yolox_nano.pth"},
    "augment": {"multiscale_range": 0},
    "train": {"epochs": 2, "batch_size": 4, "warmup_epochs": 1, "no_aug_epochs": 1, "max_iters_per_epoch": 2,
              "eval_interval": 1, "workers": 0, "basic_lr_per_img": 1.5625e-5, "freeze": ["backbone.backbone.stem"]},
    "export": {"check_images": 1},
    "gate": {"min_ap": 0.0, "base_check": False},
    "tracking": {"experiment": EXPERIMENT, "registered_model": MODEL},
}
PLOTS = ["confusion_matrix.json", "confusion_matrix.png", "per_class_ap.png", "pr_curves.png", "training_curves.png",
         "val_detections.png"]


# --- the UI in a real browser -------------------------------------------------------------------------------------


def _browser_or_skip() -> str:
    """The system chromium, with Playwright importable; else skip saying how to install them."""
    exe = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if not exe:
        pytest.skip("no chromium: install Debian's package (apt-get install -y chromium; .ci/run does); Playwright "
                    "drives the system browser, `playwright install` is never run")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright is not installed: .venv/bin/pip install -e '.[dev]' (or pip install playwright)")
    return exe


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, coco128_dir: Path, nano_pth: Path):
    """A short pipeline (`yolox pipeline`, SQLite store in a fresh folder) and an `mlflow server` on its store:
    ``(base URL, folder, MlflowClient of the store)``. The server starts while the pipeline runs (the store's
    schema is made first, so that the two never migrate it at once) and is stopped afterwards."""
    import mlflow

    exe = _browser_or_skip()
    root = tmp_path_factory.mktemp("mlflow-ui")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments()                      # creates the database and its tables, once
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    server = MlflowServer(root, env=env, artifacts=False)   # the store's own artifact locations
    server.launch()
    try:
        proc = subprocess.run([str(Path(sys.executable).parent / "yolox"), "pipeline", "--params", "params.yaml"],
                              cwd=root, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        server.wait_healthy(120)
        yield server.uri, root, client, exe
    finally:
        server.stop(30)


def test_the_mlflow_ui_shows_training_runs_and_models(ui) -> None:
    """After one short pipeline, in chromium: (a) the experiment opens on its runs, listing the run under its whole
    name, with its AP once the column is added; (b) the run's metrics are the training curves (loss and AP per
    epoch as line charts) and the headline numbers, nothing per class or per data count, and its artifacts show the
    plots and the per-class AP table; (c) the Models pages list the registered model with both aliases, the
    version's first description line a plain status sentence and its gate record rendered below."""
    from playwright.sync_api import expect, sync_playwright

    base, root, client, exe = ui
    shots = root / "screenshots"
    shots.mkdir()
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp.tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    run, = client.search_runs([exp.experiment_id])
    metrics, params = run.data.metrics, run.data.params
    ap = metrics["eval/AP50_95"]
    assert re.fullmatch(r"nano [0-9a-f]{8} \d{4}-\d{4}", run.info.run_name), run.info.run_name
    assert {k.split("/")[0] for k in metrics} == {"train", "val", "eval", "export", "gate", "wall"}, sorted(metrics)
    timings = sum(k.startswith("wall/") for k in metrics)     # the seconds of each stage and of the whole run
    assert metrics["wall/total_s"] >= metrics["wall/train_s"] > 0 and timings >= 9
    assert int(params["data/train_images"]) + int(params["data/val_images"]) == 128
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "metrics/per_class_table.json", str(root)))
                       .read_text())
    assert table["columns"] == ["class", "AP50_95", "boxes"] and table["data"][0][1] == max(r[1] for r in table["data"])
    versions = {a: str(v) for a, v in client.get_registered_model(MODEL).aliases.items()}
    assert versions == {"champion": "1", "challenger": "1"}
    description = client.get_model_version(MODEL, "1").description
    status = description.split("\n", 1)[0]
    assert status.startswith("Champion and challenger. Promoted by the gate at "), status

    def close_assistant(page) -> None:    # MLflow's assistant panel opens by itself and hides a third of the page
        button = page.get_by_role("button", name="Close")
        if button.count() and button.first.is_visible():
            button.first.click()

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(root / "chromium-profile"), executable_path=exe, headless=True, viewport={"width": 1600, "height": 1000},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        browser.set_default_timeout(60_000)
        page = browser.new_page()

        # the sidebar switch, as the README says: Model training (kept by the browser)
        page.goto(f"{base}/#/")
        page.get_by_text("Model training", exact=True).click()
        expect(page.get_by_text("Model registry", exact=True)).to_be_visible()
        close_assistant(page)
        page.screenshot(path=shots / "1-home.png")

        # (a) the experiment opens on its runs; the run's whole name shows; its AP once the column is added
        page.goto(f"{base}/#/experiments/{exp.experiment_id}")
        expect(page).to_have_url(re.compile(rf"#/experiments/{exp.experiment_id}/runs\b"))
        name = page.get_by_role("link", name=run.info.run_name, exact=True)
        expect(name).to_be_visible()
        assert name.evaluate("e => e.scrollWidth <= e.clientWidth"), "the run name is cut in the runs table"
        close_assistant(page)
        page.get_by_role("button", name="Columns").click()
        expect(page.get_by_text(f"Metrics ({len(metrics)})", exact=True)).to_be_visible()
        page.get_by_text("eval/AP50_95", exact=True).click()
        page.keyboard.press("Escape")
        expect(page.get_by_role("gridcell", name=str(ap), exact=True)).to_be_visible()
        page.screenshot(path=shots / "2-experiment-runs.png")

        # (b) the run's metrics: the sections, then the epoch curves (line charts over steps)
        page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}/model-metrics")
        search = page.get_by_placeholder("Search metric charts")
        expect(search).to_be_visible()
        close_assistant(page)
        expect(page.get_by_text("eval", exact=True)).to_be_visible()                  # the first section
        sections = dict(re.findall(r"^(\w+)\n\((\d+)\)$", page.locator("body").inner_text(), re.MULTILINE))
        assert sections == {"eval": "6", "export": "1", "gate": "1", "train": "8", "val": "6", "wall": str(timings)}, \
            sections
        assert list(sections)[-1] == "wall", sections          # the stage timings come after the epoch curves

        def curves(query: str, keys: list[str], shot: str) -> None:
            """Filter the charts by ``query``: each metric of ``keys`` is a line chart over the epochs (its legend
            names the run and the key, its x axis is Step; a one-number metric is a bar chart without either)."""
            search.fill(query)
            for key in keys:         # charts are drawn when their section is on screen: scroll to it
                section = key.rsplit("/", 1)[0]
                page.get_by_role("button").filter(has_text=re.compile(rf"^{section}\s*\(\d+\)$")).first \
                    .scroll_into_view_if_needed()
                expect(page.get_by_text(f"{run.info.run_name} ({key})", exact=True)).to_be_visible()
            expect(page.get_by_text("Step", exact=True).first).to_be_visible()
            page.screenshot(path=shots / shot)

        curves("loss", [f"train/{k}_loss" for k in ("total", "iou", "obj", "cls", "l1")], "3-run-loss-curves.png")
        curves("val/AP", ["val/AP50_95", "val/AP50", "val/AP75"], "4-run-val-ap-curves.png")
        curves("train/lr", ["train/lr"], "4b-run-lr-curve.png")

        # (b) the artifacts: the plots, and AP per class as a table
        page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}/artifacts")
        page.get_by_text("plots", exact=True).click()
        close_assistant(page)
        for plot in PLOTS:
            expect(page.get_by_text(plot, exact=True)).to_be_visible()
        page.get_by_text("training_curves.png", exact=True).click()
        image = page.get_by_role("img", name="plots/training_curves.png")
        expect(image).to_be_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        page.screenshot(path=shots / "5-run-artifacts-plots.png")
        page.get_by_text("metrics", exact=True).click()
        page.get_by_text("per_class_table.json", exact=True).click()
        expect(page.get_by_text("View as table", exact=True)).to_be_visible()
        best = table["data"][0][0]
        for text in ("class", "AP50_95", "boxes", best):
            expect(page.get_by_text(text, exact=True).first).to_be_visible()
        page.screenshot(path=shots / "6-run-per-class-table.png")

        # (c) the registered model and its aliases; the versions list shows the status sentence
        page.goto(f"{base}/#/models")
        row = page.get_by_role("row").filter(has_text=MODEL)
        expect(row).to_be_visible()
        expect(row.get_by_role("link", name="champion : Version 1")).to_be_visible()      # "@ champion : Version 1"
        close_assistant(page)
        page.screenshot(path=shots / "7-models.png")
        page.get_by_role("link", name=MODEL, exact=True).click()
        version_row = page.get_by_role("row").filter(has_text="Version 1")
        for alias in ("champion", "challenger"):
            expect(version_row.get_by_text(f"@ {alias}", exact=True)).to_be_visible()
        expect(version_row.get_by_text(re.compile(r"^Champion and challenger\. "))).to_be_visible()   # cut at ~30
        close_assistant(page)
        page.screenshot(path=shots / "8-model-versions.png")
        page.goto(f"{base}/#/models/{MODEL}/versions/1")
        expect(page.get_by_text(status, exact=True)).to_be_visible()
        expect(page.locator("h2", has_text=f"Gate: PROMOTE {MODEL} version 1")).to_be_visible()   # rendered
        assert "## Gate" not in page.locator("body").inner_text()
        close_assistant(page)
        page.screenshot(path=shots / "9-model-version.png")
        browser.close()
    print("screenshots:", *sorted(p.name for p in shots.glob("*.png")), "in", shots)
