"""DVC: `dvc repro` runs every stage on the default pipeline (shortened) and a second `dvc repro` does nothing;
`yolox pipeline` on the same params makes the same prepared data (its MLflow data_version is in dvc.lock) and
leaves the stages' files (metrics.json) alone; a code change re-runs exactly the stages that run that code; the
plots show, the PNG ones offline; `dvc exp show --only-changed` fits 120 columns. After `yolox pipeline` alone,
`dvc plots show` reports only missing stage files (no folder read as a file) and a run's own curves show from its
folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from helpers.project_files import copy_project

pytestmark = pytest.mark.slow



def _project(tmp_path: Path, **train: object) -> tuple[dict, Callable[..., str]]:
    """A copy of the project in ``tmp_path`` (one git commit) with ``params/default.yaml``'s train section updated
    by ``train`` and 2 export check images; returns the params and ``sh(*cmd)`` (runs there, exit 0 asserted,
    stdout + stderr returned, stdout only with ``stdout_only=True``; other keywords are environment variables)."""
    copy_project(tmp_path)
    params_path = tmp_path / "params" / "default.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["train"].update(train)
    params["export"]["check_images"] = 2
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_SITE_CACHE_DIR": str(tmp_path / ".dvc-site"), "DVC_NO_ANALYTICS": "1",
           "PREFECT_HOME": str(tmp_path / ".prefect")}
    env.pop("MLFLOW_TRACKING_URI", None)

    def sh(*cmd: str, stdout_only: bool = False, **extra: str) -> str:
        proc = subprocess.run(list(cmd), cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True,
                              timeout=900, check=False)
        assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout if stdout_only else proc.stdout + proc.stderr

    sh("git", "init", "-q")
    sh("git", "add", "-A")
    sh("git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", "init")
    return params, sh


def _plot_files() -> set[str]:
    """The files dvc.yaml's top-level plots read."""
    from yolox.lineage import PACKAGE_ROOT

    files = set()
    for plot in yaml.safe_load((PACKAGE_ROOT.parent / "dvc.yaml").read_text())["plots"]:
        props = next(iter(plot.values())) if isinstance(plot, dict) else None
        files |= set(props["y"]) if props else {plot}
    return files


def test_dvc_repro_twice(tmp_path: Path, coco128_dir: Path) -> None:
    params, sh = _project(tmp_path, epochs=1, warmup_epochs=0, no_aug_epochs=0, max_iters_per_epoch=2, workers=0)
    first = sh("dvc", "repro")
    for stage in ("fetch", "prepare", "train", "evaluate", "export"):
        assert f"Running stage '{stage}'" in first
    assert (tmp_path / "models" / "model.onnx").is_file() and (tmp_path / "metrics.json").is_file()
    assert (tmp_path / "runs" / "train" / "history.csv").is_file()
    second = sh("dvc", "repro")
    assert "Running stage" not in second and "up to date" in second
    metrics = sh("dvc", "metrics", "show", "--json")
    assert "AP50_95" in metrics and "per_class" not in metrics
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    prepared_md5 = next(o["md5"] for o in lock["stages"]["prepare"]["outs"] if o["path"] == "data/prepared")

    # every plot reads a file the stages wrote (no folder: reports/eval's PNG files one by one), none is missing
    shown = json.loads(sh("dvc", "plots", "show", "--json", stdout_only=True))
    assert "errors" not in shown, shown["errors"]
    assert {f"reports/eval/{p.name}" for p in (tmp_path / "reports" / "eval").iterdir()} == \
        {f for f in _plot_files() if f.startswith("reports/eval/")}

    # the sweep view fits 120 columns: a param set in the workspace against the commit of the repro
    sh("git", "add", "dvc.lock", "metrics.json", "per_class.json")
    sh("git", "add", "-f", "runs/train/history.csv")
    sh("git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", "repro")
    params_path = tmp_path / "params" / "default.yaml"
    committed = params_path.read_text()
    params_path.write_text(committed.replace("  epochs: 1\n", "  epochs: 3\n"))
    table = sh("dvc", "exp", "show", "--only-changed", "--no-pager", COLUMNS="120").splitlines()
    params_path.write_text(committed)
    assert "…" not in "\n".join(table) and max(map(len, table)) <= 120, "\n".join(table)
    head, rows = table[1].split(), [line.split() for line in table[3:5]]
    assert head == ["Experiment", "Created", "train.epochs"] and rows[0] == ["workspace", "-", "3"]
    assert rows[1][-1] == "1"

    # `yolox pipeline` (coco128 by name, from the mirror) on the same params: the same prepared bytes, so its
    # MLflow run's data_version names the dvc.lock entry, and DVC sees nothing to redo for prepare; the stages'
    # metrics.json is left as the last dvc repro wrote it (the run keeps its own in runs/pipeline/<run>/)
    metrics_before = (tmp_path / "metrics.json").read_bytes()
    sh("yolox", "pipeline", "--params", "params/default.yaml")
    assert (tmp_path / "metrics.json").read_bytes() == metrics_before
    (run_dir,) = (tmp_path / "runs" / "pipeline").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["AP50_95"] > 0
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(params["tracking"]["experiment"])
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["data_version"] == prepared_md5
    assert "prepare" not in sh("dvc", "status", "prepare")

    # a change to NMS re-runs what runs NMS (train evaluates, evaluate, export checks) and nothing else
    nms = tmp_path / "yolox" / "ops" / "nms.py"
    nms.write_text(nms.read_text() + "\n# touched by tests/scenarios/test_dvc.py\n")
    status = yaml.safe_load(sh("dvc", "status", "--json")) or {}
    assert {"evaluate", "export", "train"} <= set(status) and not {"fetch", "prepare"} & set(status), status
    assert any("yolox/ops" in json.dumps(change) for change in status["evaluate"]), status["evaluate"]
    nms.write_text(nms.read_text().removesuffix("\n# touched by tests/scenarios/test_dvc.py\n"))
    assert not (yaml.safe_load(sh("dvc", "status", "--json")) or {})

    # deps follow the stages: the registry and the gate re-run no stage (they run after the DVC stages: the
    # pipeline's register and gate); a model block re-runs what builds models, never prepare
    for touched, expected in (("yolox/registry/gate.py", set()), ("yolox/registry/rules.py", set()),
                              ("yolox/models/blocks.py", {"train", "evaluate", "export"})):
        path = tmp_path / touched
        text = path.read_text()
        path.write_text(text + "\n# touched by tests/scenarios/test_dvc.py\n")
        status = yaml.safe_load(sh("dvc", "status", "--json")) or {}
        path.write_text(text)
        assert set(status) == expected, (touched, status)

    # plots: the Vega ones name their columns; the PNG ones render without a network (no CDN in the HTML)
    shown = json.loads(sh("dvc", "plots", "show", "--json", stdout_only=True))["data"]  # {"data": {plot id: ...}}
    assert {"losses", "learning rate", "val AP", "per-class AP50:95"} <= set(shown), list(shown)
    sh("dvc", "plots", "show", "runs/train/training_curves.png", "reports/eval", "-o", "offline")
    html = (tmp_path / "offline" / "index.html").read_text()
    assert "<img" in html and "cdn." not in html and "pr_curves.png" in html


def test_dvc_yaml_code_deps_cover_every_stage() -> None:
    """Each stage's code deps in dvc.yaml cover every project file the stage runs (yolox.lineage.stage_code)."""
    from yolox.lineage import PACKAGE_ROOT, stage_code

    root = PACKAGE_ROOT.parent
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    for stage in ("prepare", "train", "evaluate", "export"):
        deps = [root / d for d in stages[stage]["deps"]]
        missing = [str(f.relative_to(root)) for f in stage_code(stage)
                   if not any(f == d or d in f.parents for d in deps)]
        assert not missing, f"dvc.yaml stage {stage!r} misses {missing}: python -c 'from yolox.lineage import " \
                            f"dvc_code_deps; print(dvc_code_deps(\"{stage}\"))'"
    assert "yolox/ops" in stages["evaluate"]["deps"] and "yolox/ops/nms.py" in stages["export"]["deps"]
    assert not any(d.startswith("yolox/ops") for d in stages["prepare"]["deps"])


def test_dvc_plots_after_yolox_pipeline_alone(tmp_path: Path, coco128_dir: Path) -> None:
    """A project where only `yolox pipeline` ran (no `dvc repro`): it wrote nothing the DVC stages own, `dvc plots
    show` exits 0 and reports each stage file as missing (nothing read as a file of an unknown type), and the run's
    own curves show from its folder, offline."""
    _, sh = _project(tmp_path, epochs=1, warmup_epochs=0, no_aug_epochs=0, max_iters_per_epoch=1, batch_size=2,
                     workers=0, eval_interval=1)
    sh("yolox", "pipeline", "--params", "params/default.yaml", "--set", "model.input_size=128")
    for owned in ("metrics.json", "per_class.json", "runs/train", "reports", "models"):
        assert not (tmp_path / owned).exists(), owned
    shown = json.loads(sh("dvc", "plots", "show", "--json", stdout_only=True))
    errors = {(e["source"], e["type"]) for e in shown["errors"]}
    assert errors == {(f, "FileNotFoundError") for f in _plot_files()}, errors
    assert "DVC failed to load some plots" in sh("dvc", "plots", "show", "-o", "all")
    (run_dir,) = (tmp_path / "runs" / "pipeline").iterdir()
    curves = (run_dir / "train" / "training_curves.png").relative_to(tmp_path)
    shown = sh("dvc", "plots", "show", str(curves), "-o", "offline")
    assert "failed" not in shown and "<img" in (tmp_path / "offline" / "index.html").read_text()
    assert json.loads(sh("dvc", "plots", "show", str(curves), "--json"))["data"][str(curves)][0]["type"] == "image"
