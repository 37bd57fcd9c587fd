"""Side-by-side measurement against the authors' code: two worker processes, alternated in blocks.

The benchmarks (``train_step.py``, ``assign.py``, ``data.py``) measure OUR side in a worker process of this
venv and THEIR side in a worker process of the authors' venv (``--peer PATH``: ``PATH/yolox`` holds their
repository, ``PATH/venv`` its virtual environment; ``../shared/peer/README.md``). Each worker sets itself up
once (model, optimizer, inputs from the same files) and then answers requests on stdin, one JSON line each,
with one JSON line on its stdout. The parent asks one side at a time for a block of timed repetitions and
alternates the order of the two sides from pair to pair (ours, theirs / theirs, ours, ...), so that both
sides of a pair see the same state of a shared machine; only one side runs at any time.

Per pair: the median of each side's block and their ratio (theirs / ours for times: how many times faster
we are); over pairs: the median ratio, each side's median, and the 1-minute load average around each pair.

Stdlib only (as ``common.py``, for :func:`peer_paths`): ``authors_worker.py`` imports this module in the authors'
venv (for :func:`serve`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from common import peer_env, peer_paths  # bench/common.py (stdlib only too)

HERE = Path(__file__).resolve().parent
REPLY = "@@reply "  # prefix of a worker's answer line (anything else a library prints is ignored)


def serve(handlers: dict[str, Callable[[dict], dict]]) -> None:
    """Worker loop: read JSON requests ``{"op": name, ...}`` from stdin, answer each with
    ``handlers[name](request)`` as one ``@@reply {...}`` line on stdout, until stdin closes or ``op`` is
    ``"exit"``. Whatever else is printed goes to stderr (so a library's prints cannot break the protocol)."""
    out = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("op") == "exit":
            break
        reply = handlers[request["op"]](request)
        out.write(REPLY + json.dumps(reply) + "\n")
        out.flush()


class WorkerError(RuntimeError):
    """A worker died or answered nothing; the message holds the end of its stderr."""


class Worker:
    """A worker process (:func:`serve` on the other end) and its stderr log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, env=env, cwd=cwd, bufsize=1)

    def call(self, op: str, **args: Any) -> dict:
        """Send one request and wait for its answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerError(self._died()) from None
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        raise WorkerError(self._died())

    def _died(self) -> str:
        self.proc.wait(timeout=30)
        self.log.flush()
        tail = Path(self.log.name).read_text()[-3000:]
        return f"{self.name} worker exited with code {self.proc.returncode}; end of its stderr:\n{tail}"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.log.close()
        os.unlink(self.log.name)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ours_worker(script: str, *args: str) -> Worker:
    """Our side: ``bench/<script> --worker ...`` in this venv."""
    return Worker("ours", [sys.executable, str(HERE / script), "--worker", *args])


def authors_worker(peer: str | Path, task: str, *args: str) -> Worker:
    """Their side: ``bench/authors_worker.py <task> ...`` in their venv, their repository on PYTHONPATH."""
    python, repo = peer_paths(peer)
    return Worker("theirs", [str(python), str(HERE / "authors_worker.py"), task, *args], env=peer_env(repo), cwd=repo)


@dataclass
class Pair:
    ours: float      # median of our block (seconds per repetition)
    theirs: float    # median of their block
    load: float      # mean of the 1-minute load average before and after the pair

    @property
    def ratio(self) -> float:
        """theirs / ours: how many times faster ours is."""
        return self.theirs / self.ours


@dataclass
class SideBySide:
    pairs: list[Pair] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(p.ratio for p in self.pairs)

    @property
    def ours(self) -> float:
        return statistics.median(p.ours for p in self.pairs)

    @property
    def theirs(self) -> float:
        return statistics.median(p.theirs for p in self.pairs)

    @property
    def load(self) -> float:
        return statistics.median(p.load for p in self.pairs)

    def as_dict(self, prefix: str, scale: float = 1000.0, digits: int = 1) -> dict[str, Any]:
        """``{prefix_ms, prefix_authors_ms, prefix_ratio, prefix_ratios, prefix_load_avg}``."""
        return {f"{prefix}_ms": round(self.ours * scale, digits), f"{prefix}_authors_ms": round(self.theirs * scale, digits),
                f"{prefix}_ratio": round(self.ratio, 3), f"{prefix}_ratios": [round(p.ratio, 3) for p in self.pairs],
                f"{prefix}_load_avg": round(self.load, 2)}


def alternate(ours: Worker, theirs: Worker, pairs: int, request: dict[str, Any],
              report: Callable[[int, Pair], None] | None = None) -> SideBySide:
    """``pairs`` pairs of blocks: ``request`` (an op answering ``{"times": [seconds, ...]}``) sent to
    one side then the other, the order swapped every pair. ``report(i, pair)`` after each pair."""
    result = SideBySide()
    for i in range(pairs):
        load0 = os.getloadavg()[0]
        order = (ours, theirs) if i % 2 == 0 else (theirs, ours)
        medians = {w.name: statistics.median(w.call(**request)["times"]) for w in order}
        pair = Pair(medians["ours"], medians["theirs"], (load0 + os.getloadavg()[0]) / 2)
        result.pairs.append(pair)
        if report is not None:
            report(i, pair)
    return result


def blocks(worker: Worker, n: int, request: dict[str, Any]) -> list[float]:
    """One side alone (no ``--peer``): ``n`` blocks of ``request`` (an op answering ``{"times": [...]}``), the
    median of each."""
    return [statistics.median(worker.call(**request)["times"]) for _ in range(n)]


def print_pair(label: str, unit: str = "ms", scale: float = 1000.0) -> Callable[[int, Pair], None]:
    """A ``report`` for :func:`alternate` printing one line per pair."""
    def report(i: int, p: Pair) -> None:
        print(f"  {label} pair {i + 1}: ours {p.ours * scale:8.1f} {unit}  theirs {p.theirs * scale:8.1f} {unit}  "
              f"ratio {p.ratio:5.2f}x  load {p.load:.2f}", flush=True)
    return report
