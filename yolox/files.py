"""Files written and read safely: atomic writes, file-kind checks, same-file checks, locks.

The bottom floor of the library (imports nothing from the project): every stage writes its artifacts through
:func:`atomic_path` / :func:`write_text` / :func:`write_json` (a temp file in the same folder, fsync, rename: a
crash, a kill or a full disk leaves the previous file intact and no partial file behind), checks a file's kind
before opening it (:func:`regular_file_problem`), never writes over an input (:func:`same_file`), and serialises
work on a shared folder with :func:`project_lock` (an OS lock: a lock held by a process that died is released by
the kernel, so there is nothing stale to clean up).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
"""The process's umask, read once at import (reading it means setting it, which is not thread-safe later)."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path beside ``path`` (same folder, same suffix, so writers that look at the suffix behave) to
    write into; when the block ends normally the file is fsync'ed and renamed onto ``path``, otherwise (an
    exception, Ctrl-C, SIGTERM raised as an exception) the temp file is deleted and ``path`` is untouched.

    Raises:
        OSError: the folder cannot be created or written; whatever the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)    # mkstemp makes it owner-only: give it the mode open() would
    finally:
        os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`). Returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_path`). Returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (UTF-8, trailing newline) to ``path`` atomically. Returns ``path``."""
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in 1 MiB chunks).

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system lets a folder be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def regular_file_problem(path: str | Path, max_bytes: int | None = None) -> str | None:
    """Why ``path`` cannot be read as a file, or None: missing, a folder, a FIFO, a device or a socket (reading
    one would block or never end), or larger than ``max_bytes``. Symlinks are followed. Never opens the file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "not found"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        return f"{kind}, not a regular file"
    if max_bytes is not None and st.st_size > max_bytes:
        return f"{st.st_size:,} bytes, over the limit of {max_bytes:,} bytes"
    return None


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (the same path, or the same inode through links); False when
    either does not exist yet and their resolved paths differ."""
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


@contextlib.contextmanager
def project_lock(path: str | Path, what: str, timeout: float = -1, poll_s: float = 0.5,
                 on_wait: Any = None) -> Iterator[None]:
    """Hold the OS lock file ``path`` (``filelock``: ``flock`` on POSIX) for the block, waiting up to ``timeout``
    seconds (-1: as long as it takes). The holder's pid and start time are written into ``<path>.holder`` so a
    waiting process can say who it waits for (``on_wait(holder_text)`` is called once, before waiting). A lock
    whose holder died is free at once: the kernel drops the lock with the process.

    Raises:
        TimeoutError: not acquired within ``timeout`` seconds (the message names ``what`` and the holder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    holder = path.with_name(path.name + ".holder")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        text = _holder_text(holder)
        if on_wait is not None:
            on_wait(text)
        try:
            lock.acquire(timeout=timeout, poll_interval=poll_s)
        except Timeout:
            raise TimeoutError(f"{what} is locked by {text} ({path}); waited {timeout:g} s") from None
    try:
        with contextlib.suppress(OSError):
            holder.write_text(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n",
                              encoding="utf-8")
        yield
    finally:
        with contextlib.suppress(OSError):
            holder.unlink()
        lock.release()


def _holder_text(holder: Path) -> str:
    try:
        return holder.read_text(encoding="utf-8").strip() or "another process"
    except OSError:
        return "another process"
