"""DVC: `dvc repro` runs every stage on the default pipeline (shortened) and a second `dvc repro` does nothing;
`yolox pipeline` on the same params makes the same prepared data (its MLflow data_version is in dvc.lock); a code
change re-runs exactly the stages that run that code; the plots show, the PNG ones offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from project_files import copy_project

pytestmark = pytest.mark.slow



def test_dvc_repro_twice(tmp_path: Path, coco128_dir: Path) -> None:
    copy_project(tmp_path)
    params_path = tmp_path / "params" / "default.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["train"].update(epochs=1, warmup_epochs=0, no_aug_epochs=0, max_iters_per_epoch=2, workers=0)
    params["export"]["check_images"] = 2
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_SITE_CACHE_DIR": str(tmp_path / ".dvc-site"), "DVC_NO_ANALYTICS": "1"}

    def sh(*cmd: str) -> str:
        proc = subprocess.run(list(cmd), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
                              check=False)
        assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    sh("git", "init", "-q")
    sh("git", "add", "-A")
    sh("git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", "init")
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

    # `yolox pipeline` (coco128 by name, from the mirror) on the same params: the same prepared bytes, so its
    # MLflow run's data_version names the dvc.lock entry, and DVC sees nothing to redo for prepare
    env["PREFECT_HOME"] = str(tmp_path / ".prefect")
    env.pop("MLFLOW_TRACKING_URI", None)
    sh("yolox", "pipeline", "--params", "params/default.yaml")
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(params["tracking"]["experiment"])
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["data_version"] == prepared_md5
    assert "prepare" not in sh("dvc", "status", "prepare")

    # a change to NMS re-runs what runs NMS (train evaluates, evaluate, export checks) and nothing else
    nms = tmp_path / "yolox" / "ops" / "nms.py"
    nms.write_text(nms.read_text() + "\n# touched by tests/test_dvc.py\n")
    status = yaml.safe_load(sh("dvc", "status", "--json")) or {}
    assert {"evaluate", "export", "train"} <= set(status) and not {"fetch", "prepare"} & set(status), status
    assert any("yolox/ops" in json.dumps(change) for change in status["evaluate"]), status["evaluate"]

    # plots: the Vega ones name their columns; the PNG ones render without a network (no CDN in the HTML)
    shown = json.loads(sh("dvc", "plots", "show", "--json"))["data"]  # DVC 3: {"data": {plot id: [...]}}
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
    assert "yolox/ops" in stages["evaluate"]["deps"] and "yolox/ops" in stages["export"]["deps"]
    assert not any(d.startswith("yolox/ops") for d in stages["prepare"]["deps"])
