"""yolox/files.py: atomic writes keep the previous file on any interruption and get the usual file mode; file-kind
checks never open the file; locks say who holds them and time out with that name."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from yolox.files import (
    atomic_path,
    project_lock,
    regular_file_problem,
    same_file,
    sha256_file,
    write_json,
    write_text,
)


def test_atomic_write_keeps_the_previous_file_when_interrupted(tmp_path: Path) -> None:
    target = write_json(tmp_path / "report.json", {"ap": 0.5})
    before = target.read_bytes()
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text('{"ap": 0.')               # half a file, then Ctrl-C
        raise KeyboardInterrupt
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["report.json"]


def test_atomic_write_has_the_mode_open_would_give(tmp_path: Path) -> None:
    """mkstemp makes owner-only files; an artifact others serve or read (DVC, a model server) must not be."""
    mask = os.umask(0o022)
    os.umask(mask)
    path = write_text(tmp_path / "model.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert sha256_file(path) == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_regular_file_problem_names_the_kind(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    (tmp_path / "big.bin").write_bytes(b"0" * 2000)
    assert regular_file_problem(fifo) == "a FIFO, not a regular file"      # never opened: would block
    assert regular_file_problem(tmp_path) == "a folder, not a file"
    assert regular_file_problem("/dev/null") == "a device, not a regular file"
    assert regular_file_problem(tmp_path / "nope") == "not found"
    assert regular_file_problem(tmp_path / "big.bin", 1000) == "2,000 bytes, over the limit of 1,000 bytes"
    assert regular_file_problem(tmp_path / "big.bin", 2000) is None


def test_same_file_through_links_and_spellings(tmp_path: Path) -> None:
    a = write_text(tmp_path / "a.jpg", "x")
    os.link(a, tmp_path / "b.jpg")
    assert same_file(a, tmp_path / "b.jpg") and same_file(a, tmp_path / "." / "a.jpg")
    assert not same_file(a, tmp_path / "c.jpg") and same_file(tmp_path / "new", tmp_path / "x" / ".." / "new")


def test_a_held_lock_times_out_naming_its_holder(tmp_path: Path) -> None:
    lock = tmp_path / "data.lock"
    seen: list[str] = []
    with (project_lock(lock, "the data"), pytest.raises(TimeoutError) as err,
          project_lock(lock, "the data", timeout=0.3, on_wait=seen.append)):
        pass
    assert seen == [f"pid {os.getpid()} since " + seen[0].split(" since ")[1]]
    assert str(err.value).startswith(f"the data is locked by pid {os.getpid()} since ")
    with project_lock(lock, "the data", timeout=0):      # released: free at once
        pass
