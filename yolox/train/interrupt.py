"""Stopping a training run on SIGINT (Ctrl-C) or SIGTERM without losing it.

While :func:`yolox.train.trainer.train` runs its epochs, :class:`StopRequest` holds both signals. The
first one only asks the loop to stop: the optimizer step in flight is FINISHED (not abandoned), then the
trainer writes a resumable checkpoint that records the step within the epoch, and raises
:class:`~yolox.errors.Interrupted` (the CLI exits 130 or 143 and prints how to resume).

Why finish rather than abandon the step: the state is only consistent between steps. Abandoning a step
half-way (after ``optimizer.step()`` updated some parameters, before the EMA followed) would need a copy
of the whole state taken before every step to save instead; finishing it costs at most one step (seconds),
and the checkpoint is then exactly the state an uninterrupted run has after that step. Under DDP all ranks
must stop after the SAME step (a rank that left would block the others in the next gradient all-reduce):
:meth:`StopRequest.agreed` is a collective (one all-reduce of the signal number per step), so a signal
that reached any rank stops every rank at the same step boundary, and rank 0 writes the checkpoint.

A second signal raises :class:`~yolox.errors.Interrupted` at once, wherever the program is: a checkpoint
being written is abandoned (the write is atomic: the previous checkpoint stays, the temp file is removed).

The handlers are installed only in the main thread (Python delivers signals there; elsewhere, e.g. a
task run in a worker thread, the process keeps whatever handles them) and the previous ones are restored
on exit. The data loader's worker processes ignore both signals (:func:`yolox.data.dataset.seed_worker`).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any, Self

import torch

from yolox.errors import Interrupted
from yolox.train.distributed import DistContext

log = logging.getLogger("yolox.train")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A context manager holding SIGINT and SIGTERM: ``signum`` is the first one received (None before).

    Raises (from the handler, wherever the main thread is):
        Interrupted: on a second signal.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        else:
            log.debug("training outside the main thread: SIGINT and SIGTERM keep their handlers")
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum
        log.warning("%s: finishing the current step, then saving a checkpoint (send it again to stop at once)",
                    signal.Signals(signum).name)

    def agreed(self, ctx: DistContext) -> int | None:
        """The signal that stops the run now, or None to go on. Under DDP a collective: every rank must
        call it at the same point; it returns the same value on all (the largest signal number any rank
        received: SIGTERM wins over SIGINT)."""
        if not ctx.distributed:
            return self.signum
        import torch.distributed as dist

        flag = torch.tensor([self.signum or 0], dtype=torch.int32, device=ctx.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None
