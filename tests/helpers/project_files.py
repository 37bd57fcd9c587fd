"""Test helper: a copy of the repository's files, for tests that run DVC, Prefect or git on the project."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]   # tests/helpers/project_files.py -> the repository


def copy_project(dst: Path) -> None:
    """The repository's files (tracked and new, not ignored) copied into ``dst``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)
