"""A DVC remote carries the exact data version a run recorded to another machine: `dvc repro` (tiny
params) and `dvc push` to a local-directory remote, then in a fresh `git clone`: `dvc pull` restores
data/prepared and models/model.onnx with the hashes dvc.lock names, the prepared dataset's hash is the
`data_version` an MLflow run of the flow records (yolox.lineage.data_version), a version can be
restored from that hash alone, `dvc repro` has nothing to do, and `dvc exp run` / `dvc metrics diff` /
`dvc plots` work there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.project_files import copy_project

pytestmark = pytest.mark.slow
GIT = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]



def lock_outs(repo: Path) -> dict[str, dict]:
    """{output path: its dvc.lock entry (md5, size, nfiles, hash)} over all stages."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o for stage in lock["stages"].values() for o in stage.get("outs", [])}


def test_push_pull_in_a_fresh_clone_and_experiments(tmp_path: Path, coco128_dir: Path) -> None:
    from yolox.lineage import data_version as dvc_dir_hash

    project, clone, remote = tmp_path / "project", tmp_path / "clone", tmp_path / "dvc-remote"
    project.mkdir()
    copy_project(project)
    params_path = project / "params" / "default.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["train"].update(epochs=1, warmup_epochs=0, no_aug_epochs=0, max_iters_per_epoch=2, workers=0)
    params["export"]["check_images"] = 2
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_SITE_CACHE_DIR": str(tmp_path / ".dvc-site"), "DVC_NO_ANALYTICS": "1", "COLUMNS": "200"}

    def sh(cwd: Path, *cmd: str, timeout: float = 600) -> str:
        proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        assert proc.returncode == 0, f"{cmd} in {cwd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    sh(project, "git", "init", "-q")
    sh(project, "dvc", "remote", "add", "-d", "local", str(remote))          # README's command
    sh(project, "git", "add", "-A")
    sh(project, *GIT, "commit", "-qm", "project with a local DVC remote")
    out = sh(project, "dvc", "repro")
    assert "Running stage 'export'" in out
    # what the pipeline produced goes to git (dvc.lock, metrics, the plot file) and to the remote (the rest)
    sh(project, "git", "add", "dvc.lock", "metrics.json", "per_class.json")
    sh(project, "git", "add", "-f", "runs/train/history.csv")  # a cache: false plot under the ignored runs/
    sh(project, *GIT, "commit", "-qm", "pipeline outputs")
    pushed = sh(project, "dvc", "push")
    assert "pushed" in pushed, pushed

    outs = lock_outs(project)
    data_version = outs["data/prepared"]["md5"]
    # the data_version tag of an MLflow run of this data is the hash DVC records and pushed
    assert data_version.endswith(".dir") and data_version == dvc_dir_hash(project / "data" / "prepared")
    assert (remote / "files" / "md5" / data_version[:2] / data_version[2:]).is_file()

    # another machine: a fresh clone, the same remote (from the committed .dvc/config), dvc pull
    sh(tmp_path, "git", "clone", "-q", str(project), str(clone))
    assert "local" in sh(clone, "dvc", "remote", "list")
    assert not (clone / "data" / "prepared").exists() and not (clone / "models" / "model.onnx").exists()
    pulled = sh(clone, "dvc", "pull")
    assert "data/prepared" in pulled or "added" in pulled, pulled
    assert dvc_dir_hash(clone / "data" / "prepared") == data_version
    onnx = (clone / "models" / "model.onnx").read_bytes()
    assert onnx == (project / "models" / "model.onnx").read_bytes()
    assert lock_outs(clone)["models/model.onnx"]["md5"] == outs["models/model.onnx"]["md5"]
    status = sh(clone, "dvc", "status")
    assert "up to date" in status, status
    again = sh(clone, "dvc", "repro")
    assert "Running stage" not in again and "up to date" in again, again

    # an MLflow run's data_version tag -> the commit whose dvc.lock names it (README's `git log -S`)
    commit = sh(clone, "git", "log", "-S", data_version, "--format=%H", "-1", "--", "dvc.lock").strip()
    assert commit == sh(project, "git", "rev-parse", "HEAD").strip()
    # ... or the version from its hash alone: a .dvc file naming it (README's printf)
    restored = f"data-{data_version.removesuffix('.dir')}"
    dvc_file = f"outs:\n- md5: {data_version}\n  path: {restored}\n  hash: md5\n"
    (clone / "data-version.dvc").write_text(dvc_file)
    sh(clone, "dvc", "pull", "data-version.dvc")
    assert dvc_dir_hash(clone / restored) == data_version
    (clone / "data-version.dvc").unlink()
    shutil.rmtree(clone / restored)
    sh(clone, "git", "checkout", "--", ".")  # in case a .gitignore entry was added for it

    # a sweep in the clone: train/evaluate/export rerun in a temp workspace, prepare comes from the cache
    exp = sh(clone, "dvc", "exp", "run", "--temp", "-S", "params/default.yaml:train.epochs=2", timeout=900)
    assert "Running stage 'train'" in exp and "Running stage 'prepare'" not in exp, exp[-3000:]
    names = sh(clone, "dvc", "exp", "ls", "--name-only").split()
    assert len(names) == 1, names
    diff = sh(clone, "dvc", "metrics", "diff", "HEAD", names[0])
    print(diff)
    assert "metrics.json" in diff and "AP50_95" in diff
    exp_diff = sh(clone, "dvc", "exp", "diff", "HEAD", names[0])
    assert "train.epochs" in exp_diff and "AP50_95" in exp_diff
    plots = json.loads(sh(clone, "dvc", "plots", "diff", "HEAD", names[0], "--json"))
    rows = plots["data"]["runs/train/history.csv"][0]["content"]["data"]["values"]
    assert [(r["rev"], str(r["epoch"])) for r in rows] == [("HEAD", "1"), (names[0], "1"), (names[0], "2")]
    # the workspace is untouched by the temp experiment
    assert yaml.safe_load((clone / "params" / "default.yaml").read_text())["train"]["epochs"] == 1
