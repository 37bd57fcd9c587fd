"""What the benchmarks share: their common arguments, the asset mirror, the authors' checkout (the peer), work folders
and the coco128 reader.

The authors' checkout (``--peer PATH``; ``../shared/peer/README.md``) is ``PATH/yolox`` (their repository) and
``PATH/venv`` (its virtual environment). The scripts that start ``authors_loop.py`` themselves also take it as
``--peer-python PATH/venv/bin/python --peer-src PATH/yolox`` (their older spelling, kept).

Stdlib only at import: ``sidebyside.py`` imports this module, and ``authors_worker.py`` imports that one in the
authors' venv. What needs numpy, OpenCV or this project is imported inside the function that uses it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Literal

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEER_README = "../shared/peer/README.md"


# ------------------------------------------------------------------------------------------ assets, work folders


def assets_dir() -> Path:
    """``$YOLOX_ASSETS_DIR``, else the asset mirror beside the checkout (``<repo>/../shared``)."""
    return Path(os.environ.get("YOLOX_ASSETS_DIR") or str(REPO.parent / "shared")).expanduser()


def coco128_dir() -> Path:
    """coco128 in its YOLO layout, in the assets (:func:`assets_dir`)."""
    return assets_dir() / "data" / "coco128"


def use_asset_mirror() -> None:
    """Point ``YOLOX_ASSETS_DIR`` at the mirror ``<repo>/../shared`` when it is unset and the mirror exists."""
    mirror = REPO.parent / "shared"
    if not os.environ.get("YOLOX_ASSETS_DIR") and mirror.is_dir():
        os.environ["YOLOX_ASSETS_DIR"] = str(mirror)


def work_dir(given: Path | None, prefix: str) -> Path:
    """``given`` (``--out``), else a new temporary folder named ``<prefix>...``; absolute."""
    return (given or Path(tempfile.mkdtemp(prefix=prefix))).resolve()


def missing_dataset(data: Path) -> bool:
    """True, after a line on stderr, when ``data`` (``--data``) holds no ``dataset.yaml``."""
    if (data / "dataset.yaml").is_file():
        return False
    print(f"{data}/dataset.yaml not found: pass --data or set YOLOX_ASSETS_DIR", file=sys.stderr)
    return True


def read_yolo_dataset(root: Path):
    """A YOLO-layout dataset (``images/<split>/*.jpg``, ``labels/<split>/*.txt``, ``dataset.yaml``)."""
    import cv2
    import numpy as np
    import yaml

    from yolox.data.records import DetectionDataset, ImageRecord

    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    names = [meta["names"][i] for i in range(len(meta["names"]))]
    split = meta.get("train", "images/train2017")
    image_dir = root / split
    label_dir = root / split.replace("images", "labels", 1)
    records = []
    for k, path in enumerate(sorted(image_dir.glob("*.jpg"))):
        h, w = cv2.imread(str(path)).shape[:2]
        label_file = label_dir / f"{path.stem}.txt"
        rows = np.loadtxt(label_file, ndmin=2).reshape(-1, 5) if label_file.is_file() else np.zeros((0, 5))
        cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32)
        records.append(ImageRecord(k + 1, path.resolve(), w, h, boxes, rows[:, 0].astype(np.int64)))
    return DetectionDataset(names, list(range(1, len(names) + 1)), records)


# ------------------------------------------------------------------------------------------ the peer


def peer_paths(peer: str | Path) -> tuple[Path, Path]:
    """``(their python, their repository)`` under ``peer``; exits with a message naming what is missing."""
    root = Path(peer).expanduser().resolve()
    python, repo = root / "venv" / "bin" / "python", root / "yolox"
    missing = []
    if not python.is_file():
        missing.append(f"their venv's python {python}")
    if not (repo / "yolox" / "exp").is_dir():
        missing.append(f"their repository in {repo} (no {repo / 'yolox' / 'exp'})")
    if missing:
        raise SystemExit(f"--peer {root}: missing {' and '.join(missing)} (see {PEER_README})")
    return python, repo


def peer_env(repo: str | Path) -> dict[str, str]:
    """This process's environment with the authors' repository as ``PYTHONPATH`` (their ``yolox`` package)."""
    return {**os.environ, "PYTHONPATH": str(repo)}


def authors_loop_argv(python: str | Path, *args: str) -> list[str]:
    """The command of ``bench/authors_loop.py`` (their training loop) in their venv."""
    return [str(python), str(HERE / "authors_loop.py"), *args]


# ------------------------------------------------------------------------------------------ arguments


def add_common_args(ap: argparse.ArgumentParser, *, peer: Literal[False, "optional", "required"] = False,
                    peer_venv: Literal[False, "optional", "required"] = False, data: bool = False,
                    threads: int | None = None, threads_help: str | None = "torch threads on both sides",
                    pairs: bool = False, pairs_help: str = "alternated blocks per side (median over pairs)",
                    out: bool = False, out_help: str | None = None) -> argparse.ArgumentParser:
    """Add the arguments the benchmarks share, each only where asked for, with the defaults they always had.

    - ``peer``: ``--peer PATH`` (``PATH/yolox``, ``PATH/venv``), checked by :func:`parse_args`;
    - ``peer_venv``: ``--peer-python`` and ``--peer-src``, and ``--peer PATH`` for both (:func:`parse_args` fills
      them in from it; ``"required"``: one of the two spellings must be given);
    - ``data``: ``--data DIR``, a YOLO dataset, default coco128 in the assets;
    - ``threads``: ``--threads N`` with this default; ``pairs``: ``--pairs N`` (default 6);
    - ``out``: ``--out DIR``, a work folder (default None: the script makes a temporary one).
    """
    if peer:
        ap.add_argument("--peer", type=Path, default=None, required=peer == "required",
                        help="the authors' code: PATH/yolox and PATH/venv")
    if peer_venv:
        if not peer:
            ap.add_argument("--peer", type=Path, default=None,
                            help="the authors' code: PATH/yolox and PATH/venv (for --peer-python and --peer-src)")
        optional = " (omit: ours only)" if peer_venv == "optional" else ""
        ap.add_argument("--peer-python", default=None, help=f"python of the authors' venv{optional}")
        ap.add_argument("--peer-src", default=None, help="the authors' repository (put on their PYTHONPATH)")
        ap.set_defaults(_peer_venv_required=peer_venv == "required")
    if data:
        ap.add_argument("--data", type=Path, default=coco128_dir(), help="YOLO dataset folder (coco128)")
    if threads is not None:
        ap.add_argument("--threads", type=int, default=threads, help=threads_help)
    if pairs:
        ap.add_argument("--pairs", type=int, default=6, help=pairs_help)
    if out:
        ap.add_argument("--out", type=Path, default=None, help=out_help)
    return ap


def parse_args(ap: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``ap.parse_args(argv)``, then the peer: ``--peer PATH`` checked (:func:`peer_paths`) and, where the script
    takes ``--peer-python``/``--peer-src``, those filled in from it when not given."""
    args = ap.parse_args(argv)
    if getattr(args, "peer", None) is not None:
        python, repo = peer_paths(args.peer)
        if hasattr(args, "peer_python"):
            args.peer_python = args.peer_python or str(python)
            args.peer_src = args.peer_src or str(repo)
    if getattr(args, "_peer_venv_required", False) and not (args.peer_python and args.peer_src):
        ap.error("the authors' code is needed: --peer PATH, or --peer-python and --peer-src")
    return args
