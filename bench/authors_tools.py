"""The authors' side of ``bench/time_to_model.py``: what a user of their YOLOX does around their training loop.

Runs in the AUTHORS' virtual environment with their repository on ``PYTHONPATH`` (``../shared/peer/README.md``),
never in this project's venv (both packages are named ``yolox``); ``bench/time_to_model.py`` starts it, one
process per step, and times each. Nothing here is imported by the project, and nothing of theirs is copied here:
each step drives their components (``bench/authors_loop.py`` is their training loop, driven the same way).

    PYTHONPATH=<their repo> <their venv>/bin/python bench/authors_tools.py coco --raw R --format voc|yolo \
        --split split.json --out D
    ... authors_tools.py eval   --exp exp.py --ckpt ema.pth [--batch 8] [--threads 1]
    ... authors_tools.py export --exp exp.py --ckpt ema.pth --out model.onnx [--threads 1]
    ... authors_tools.py check  --exp exp.py --ckpt ema.pth --onnx model.onnx [--images 8] [--threads 1]

- ``coco``: a raw dataset (Pascal VOC: ``<name>.xml`` beside or apart from the images; YOLO txt:
  ``labels/...`` mirroring ``images/...``) to the COCO layout their ``COCODataset`` reads: ``D/annotations/
  train.json`` and ``val.json``, ``D/train2017/`` and ``D/val2017/`` holding links to the RAW image files. Their
  repository has no converter, so this is the conversion every user of their code writes (stdlib + OpenCV). The
  split and the class list are given (``split.json``: ``{"names": [...], "train": [file names], "val": [...]}``):
  category ids ``1..N`` in that class order (their ``COCODataset`` maps the sorted ids to ``0..N-1``), image ids
  ``1..`` in list order. VOC: the image size from ``<size>``, the corners 1-based as their VOC loader reads them
  (``- 1``; a fraction kept), objects of classes outside the list skipped, ``difficult`` ones kept (their loader
  keeps them). YOLO: the image size from the decoded image (``cv2.imread``), ``cx cy w h`` in fractions of it.
- ``eval``: their ``COCOEvaluator`` from their ``Exp.get_evaluator`` (the exp file the bench wrote: class count,
  ``data_dir``, ``val.json``, test size 416) on the EMA weights (``ckpt["model"]``), as their ``tools/eval.py``
  does minus its CUDA calls (``torch.cuda.set_device``, ``model.cuda``: their tool does not run on a CPU-only
  machine). Prints their AP50:95 and AP50.
- ``export``: their ``tools/export_onnx.py`` itself (run with ``runpy``; ``-f exp.py -c ema.pth --output-name
  model.onnx --no-onnxsim``, their defaults otherwise: opset 11, batch 1, raw outputs). Torch 2.13 no longer has
  the private ``torch.onnx._export`` their tool calls: it is pointed at ``torch.onnx.export(..., dynamo=False)``
  (the TorchScript exporter their call meant). ``onnxsim`` is not installed in their venv (it builds from source
  here), hence ``--no-onnxsim``.
- ``check``: what a careful user does after exporting: their PyTorch model (``get_model``, the EMA weights,
  ``eval()``, ``head.decode_in_inference = False`` as in the export) and ONNX Runtime (default session options) on
  the first ``--images`` val images (sorted by name) through their ``ValTransform`` (letterbox 416), the largest
  absolute difference of the raw outputs ``(1, A, 5 + C)``.

``export`` and ``check`` need ``onnx`` and ``onnxruntime`` in their venv (not in ``../shared/peer/README.md``'s list:
``<their venv>/bin/pip install onnx onnxruntime``).

Each prints one JSON line on stdout at its end; whatever else is printed (their loggers, pycocotools) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# ------------------------------------------------------------------------------------------ raw -> COCO


def _voc_record(xml: Path, names: list[str]) -> tuple[int, int, list[tuple[int, list[float]]]]:
    """(width, height, [(class index, [x0, y0, x1, y1] 0-based)]) of a VOC annotation file."""
    import xml.etree.ElementTree as ET

    root = ET.parse(xml).getroot()
    size = root.find("size")
    width, height = int(float(size.findtext("width"))), int(float(size.findtext("height")))
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in names:
            continue
        bb = obj.find("bndbox")
        boxes.append((names.index(name), [float(bb.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]))
    return width, height, boxes


def _yolo_record(image: Path, label: Path) -> tuple[int, int, list[tuple[int, list[float]]]]:
    """(width, height, [(class index, [x0, y0, x1, y1] pixels)]) of an image and its YOLO label file."""
    import cv2

    height, width = cv2.imread(str(image)).shape[:2]
    boxes = []
    if label.is_file():
        for line in label.read_text().splitlines():
            parts = line.split()
            if len(parts) != 5:
                continue
            c, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:])
            boxes.append((c, [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                              (cy + h / 2) * height]))
    return width, height, boxes


def to_coco(a: argparse.Namespace) -> dict:
    raw, out = Path(a.raw), Path(a.out)
    split = json.loads(Path(a.split).read_text())
    names = list(split["names"])
    images = {p.name: p for p in (raw / "images" if (raw / "images").is_dir() else raw).rglob("*")
              if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")}
    xmls = {p.stem: p for p in raw.rglob("*.xml")} if a.format == "voc" else {}
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    counts = {}
    for part, folder in (("train", "train2017"), ("val", "val2017")):
        (out / folder).mkdir(exist_ok=True)
        coco: dict = {"images": [], "annotations": [],
                      "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
        for image_id, file_name in enumerate(split[part], 1):
            image = images[file_name]
            if a.format == "voc":
                width, height, boxes = _voc_record(xmls[image.stem], names)
            else:
                rel = image.relative_to(raw)
                label = raw / Path(*["labels" if p == "images" else p for p in rel.parts]).with_suffix(".txt")
                width, height, boxes = _yolo_record(image, label)
            coco["images"].append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            for c, (x0, y0, x1, y1) in boxes:
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                            "category_id": c + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                            "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
            link = out / folder / file_name
            if not link.exists():
                link.symlink_to(image.resolve())
        (out / "annotations" / f"{part}.json").write_text(json.dumps(coco))
        counts[part] = {"images": len(coco["images"]), "boxes": len(coco["annotations"])}
    return {"coco": str(out), **counts}


# ------------------------------------------------------------------------------------------ their model


def _their_model(exp_file: str, ckpt: str):
    """Their Exp of ``exp_file`` and its model with the EMA weights of ``ckpt``, in eval mode."""
    import torch
    from yolox.exp import get_exp  # theirs: PYTHONPATH points at their repository

    exp = get_exp(exp_file, None)
    model = exp.get_model()
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["model"])
    return exp, model.eval()


def evaluate(a: argparse.Namespace) -> dict:
    import torch

    exp, model = _their_model(a.exp, a.ckpt)
    evaluator = exp.get_evaluator(a.batch, False)
    with torch.no_grad():
        ap50_95, ap50, summary = evaluator.evaluate(model, False, False)
    print(summary, file=sys.stderr)
    return {"AP50_95": float(ap50_95), "AP50": float(ap50), "images": len(evaluator.dataloader.dataset)}


def export(a: argparse.Namespace) -> dict:
    import functools
    import runpy

    import torch

    torch.onnx._export = functools.partial(torch.onnx.export, dynamo=False)   # gone in torch 2.13 (docstring)
    tool = Path(os.environ["PYTHONPATH"].split(os.pathsep)[0]) / "tools" / "export_onnx.py"
    sys.argv = [str(tool), "-f", a.exp, "-c", a.ckpt, "--output-name", a.out, "--no-onnxsim"]
    runpy.run_path(str(tool), run_name="__main__")      # their @logger.catch logs an error instead of raising
    if not Path(a.out).is_file():
        raise SystemExit(f"their tools/export_onnx.py wrote no {a.out}: see its log above")
    return {"onnx": a.out, "bytes": Path(a.out).stat().st_size}


def check(a: argparse.Namespace) -> dict:
    import cv2
    import numpy as np
    import onnxruntime as ort
    import torch

    from yolox.data import ValTransform

    exp, model = _their_model(a.exp, a.ckpt)
    model.head.decode_in_inference = False
    session = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    folder = Path(exp.data_dir) / "val2017"
    files = sorted(folder.iterdir())[:a.images]
    transform, worst = ValTransform(legacy=False), 0.0
    for f in files:
        img, _ = transform(cv2.imread(str(f)), None, exp.test_size)
        x = np.ascontiguousarray(img[None], dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = session.run(None, {name: x})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    return {"max_abs_diff": worst, "images": len(files), "shape": list(got.shape)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("coco", help="raw dataset -> their COCO layout")
    c.add_argument("--raw", required=True)
    c.add_argument("--format", choices=("voc", "yolo"), required=True)
    c.add_argument("--split", required=True, help='{"names": [...], "train": [...], "val": [...]} (file names)')
    c.add_argument("--out", required=True)
    for cmd in ("eval", "export", "check"):
        p = sub.add_parser(cmd)
        p.add_argument("--exp", required=True, help="their Exp file")
        p.add_argument("--ckpt", required=True, help="{'model': EMA state_dict}")
        p.add_argument("--threads", type=int, default=1)
        if cmd == "eval":
            p.add_argument("--batch", type=int, default=8)
        if cmd == "export":
            p.add_argument("--out", required=True)
        if cmd == "check":
            p.add_argument("--onnx", required=True)
            p.add_argument("--images", type=int, default=8)
    a = ap.parse_args()
    out, sys.stdout = sys.stdout, sys.stderr     # pycocotools and their tools print: only the result goes to stdout
    t0 = time.perf_counter()
    if a.cmd != "coco":
        import torch

        torch.set_num_threads(a.threads)
    result = {"coco": to_coco, "eval": evaluate, "export": export, "check": check}[a.cmd](a)
    out.write(json.dumps({"step": a.cmd, **result, "seconds": round(time.perf_counter() - t0, 2)}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
