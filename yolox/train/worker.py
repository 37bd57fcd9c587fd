"""One training process of a launched job: what torchrun (``yolox/train/launch.py``) or a Kubernetes pod
(``yolox/train/k8s.py``) starts on every node, ``nproc_per_node`` times::

    python -m yolox.train.agent ... -m yolox.train.worker --params P.yaml --prepared DIR --out DIR \\
        [--run-id MLFLOW_RUN]

It trains with :func:`yolox.train.trainer.train` in the job torchrun describes (``RANK``, ``WORLD_SIZE``,
...), always continuing from ``<out>/last.pth`` when there is one: so when torchrun restarts the workers
after one of them died, or Kubernetes replaces a pod, every worker of the new round resumes from the
last checkpoint, which gives the weights of an uninterrupted run. (Which workers count as restarted
differs per node: an agent whose own worker failed counts a restart, the others only see the
rendezvous change; the checkpoint is what they agree on.) A launch that is not a resume removes an
old ``last.pth`` and ``run.json`` first (:func:`yolox.train.torchrun.clear_run_state`). Rank 0 logs each epoch's metrics into the MLflow run ``--run-id`` (the
pipeline's run; epochs already logged before a restart are not logged twice: ``run.json``'s
``reported_epoch``) through the journal ``<out>/tracking-journal.jsonl`` (:mod:`yolox.tracking.journal`): a dead
or slow tracking server never holds the job up, and a restarted rank 0 sends what its predecessor left pending.

Stopped with SIGTERM (the agent passes on the one it got, e.g. from ``yolox train`` interrupted: see
:func:`yolox.train.launch.stream_process`) or SIGINT: every rank finishes the same step, rank 0 saves a
resumable checkpoint (:mod:`yolox.train.interrupt`), and the worker exits 128 + the signal number.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from yolox.config import load_params, parse_params
from yolox.errors import Interrupted, YoloxError
from yolox.tracking.journal import epoch_journal
from yolox.train.trainer import train

log = logging.getLogger("yolox.train")

RESTART_COUNT_ENV = "TORCHELASTIC_RESTART_COUNT"


def restart_count() -> int:
    """How many times torchrun has restarted this job's workers (0 on the first attempt)."""
    return int(os.environ.get(RESTART_COUNT_ENV, "0") or 0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m yolox.train.worker", description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--params", help="Params YAML file (every node must read the same file).")
    src.add_argument("--params-json", help="The params as one JSON object (Kubernetes pods).")
    ap.add_argument("--prepared", required=True, help="Prepared dataset folder.")
    ap.add_argument("--out", required=True, help="Checkpoint folder (shared by the nodes: rank 0 writes it).")
    ap.add_argument("--run-id", default=None, help="MLflow run that rank 0 logs the epochs into.")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one worker; returns its exit status (0: trained; 1: a user error, printed on one line; 130 or
    143: interrupted by SIGINT or SIGTERM, after rank 0 saved a checkpoint)."""

    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank{rank} %(levelname)s %(message)s",
                        force=True)
    for noisy in ("alembic", "mlflow", "httpx", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.params:
            params = load_params(args.params)
        else:
            params = parse_params(json.loads(args.params_json), "--params-json")
        attempt, checkpoint = restart_count(), Path(args.out) / "last.pth"
        if attempt and rank == 0:
            log.info("elastic restart %d: resuming from %s", attempt, checkpoint)
        tp = params.tracking
        with epoch_journal(args.out, args.run_id if rank == 0 else None, tp.request_timeout_s,
                           tp.flush_timeout_s) as journal:
            train(params, args.prepared, args.out, resume=attempt > 0 or checkpoint.is_file(),
                  on_epoch_end=journal, progress=False, run_id=args.run_id)
    except YoloxError as err:
        print(f"rank {rank}: error: {err}", file=sys.stderr, flush=True)
        return 1
    except Interrupted as err:
        print(f"rank {rank}: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
