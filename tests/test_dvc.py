"""`dvc repro` runs every stage on the default pipeline (shortened) and a second `dvc repro` does nothing."""

from __future__ import annotations

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
        proc = subprocess.run(list(cmd), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
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
    assert "AP50_95" in metrics
