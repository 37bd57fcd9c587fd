"""Bad inputs of eval, predict, export, serving and the command line (issue 11): each case asserts the exact
outcome (the error line and exit code of the `yolox` entry point, or the reported skip and its reason) and that
the good items of the same input survive.

The CLI runs in this process (`yolox.cli.run` with `sys.argv` set: the same code path as the `yolox` script,
without a Python start-up per case). Real files throughout: coco128 images and the authors' nano weights and
ONNX; models run at 128 px to stay fast. One workspace (module fixture) serves every case.
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers.cli_runner import yolox

COCO_IMAGES = ("000000000009.jpg", "000000000025.jpg", "000000000030.jpg")  # food; giraffes; a vase
VAL_IMAGES = ("000000000034.jpg", "000000000036.jpg", "000000000042.jpg")   # a zebra; a person; a dog
SIZE_RULE = "must be a positive multiple of 32 (the model's largest stride)"
RELEASES = ("yolox_darknet.pth, yolox_l.pth, yolox_m.pth, yolox_nano.onnx, yolox_nano.pth, yolox_s.pth, "
            "yolox_tiny.pth, yolox_x.pth")


def error_line(output: str) -> str:
    """The ``error: ...`` message (with its indented detail lines, for params that list several fields)."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(starts) == 1, output[-3000:]
    block = [lines[starts[0]]]
    block += [line for line in lines[starts[0] + 1:] if line.startswith("  ")][:20]
    return "\n".join(block)


class _Exec:
    """A pickled payload: unpickled by a full unpickler it runs ``exec`` (which writes a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _png_bomb() -> bytes:
    """A PNG header claiming 50000 x 50000 RGB pixels (2.5 Gpx, above OpenCV's limit) with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _identity_onnx(path: Path) -> Path:
    """A valid ONNX model that is no detector: y = x, (1, 3, 64, 64)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _renamed_input(src: Path, dst: Path, name: str = "input_0") -> Path:
    """A copy of an exported YOLOX ONNX whose input is called ``name`` instead of ``images``."""
    import onnx

    model = onnx.load(src)
    old = model.graph.input[0].name
    model.graph.input[0].name = name
    for node in model.graph.node:
        node.input[:] = [name if i == old else i for i in node.input]
    onnx.save(model, dst)
    return dst


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, coco128_dir: Path, nano_pth: Path, nano_onnx: Path) -> SimpleNamespace:
    """Every file the cases need, made once: bad weights, small datasets, a mixed image folder, params files,
    and the nano model exported at 128 px through `yolox export` into a folder that does not exist yet."""
    root = tmp_path_factory.mktemp("faults_cli")
    coco = coco128_dir / "images" / "train2017"
    w = SimpleNamespace(root=root, nano_pth=nano_pth, nano_onnx=nano_onnx, coco=coco)
    rng = np.random.default_rng(0)

    # weights
    (root / "w").mkdir()
    w.missing_pth = root / "w" / "nope.pth"
    w.weights_dir = root / "w" / "a_folder.pth"
    w.weights_dir.mkdir()
    w.empty_pth = root / "w" / "empty.pth"
    w.empty_pth.write_bytes(b"")
    w.truncated_pth = root / "w" / "truncated.pth"
    w.truncated_pth.write_bytes(nano_pth.read_bytes()[:100_000])
    w.random_pth = root / "w" / "random.pth"
    w.random_pth.write_bytes(rng.bytes(4096))
    w.marker = root / "w" / "payload_ran"
    w.payload_pth = root / "w" / "payload.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Exec(w.marker)}, w.payload_pth)
    w.random_onnx = root / "w" / "random.onnx"
    w.random_onnx.write_bytes(rng.bytes(3000))
    w.identity_onnx = _identity_onnx(root / "w" / "identity.onnx")
    from yolox.models.checkpoint import read_state_dict
    from yolox.models.meta import meta_for

    w.nano_meta_pth = root / "w" / "nano_with_meta.pth"  # this project's layout: weights + ModelMeta
    torch.save({"model": read_state_dict(nano_pth), "meta": meta_for("yolox-nano", [str(i) for i in range(80)],
                                                                     128).to_dict()}, w.nano_meta_pth)

    # export through the CLI into a missing folder (the case export-out-missing-dir), used by predict and serve
    w.onnx128 = root / "not" / "yet" / "nano128.onnx"
    w.export_code, w.export_out = yolox("export", "--model", "yolox-nano", "--weights", nano_pth, "--img-size", 128,
                                        "--out", w.onnx128, "--skip-check", cwd=root)
    w.renamed_onnx = _renamed_input(w.onnx128, root / "w" / "renamed_input.onnx") if w.onnx128.is_file() else None

    # datasets: 3 coco images with their coco128 labels (80 classes), prepared through the CLI, and a copy of
    # the prepared one without val images; the same images as a 2-class dataset; a dataset whose val folder is empty
    names = yaml.safe_load((coco128_dir / "dataset.yaml").read_text())["names"]
    for folder, labels in (("tiny80", None), ("tiny2", "1 0.5 0.5 0.3 0.3\n")):
        for split, files in (("train", COCO_IMAGES), ("val", VAL_IMAGES)):
            (root / folder / "images" / split).mkdir(parents=True)
            (root / folder / "labels" / split).mkdir(parents=True)
            for name in files:
                stem = Path(name).stem
                shutil.copy(coco / name, root / folder / "images" / split / name)
                (root / folder / "labels" / split / f"{stem}.txt").write_text(
                    labels or (coco128_dir / "labels" / "train2017" / f"{stem}.txt").read_text())
        (root / folder / "images" / "empty").mkdir()
    w.tiny_yaml = root / "tiny2" / "dataset.yaml"
    w.tiny_yaml.write_text(yaml.safe_dump({"path": str(root / "tiny2"), "train": "images/train", "val": "images/val",
                                           "names": {0: "cat", 1: "dog"}}))
    w.empty_val_yaml = root / "tiny2" / "empty_val.yaml"
    w.empty_val_yaml.write_text(yaml.safe_dump({"path": str(root / "tiny2"), "train": "images/train",
                                                "val": "images/empty", "names": {0: "cat", 1: "dog"}}))
    (root / "tiny80" / "dataset.yaml").write_text(yaml.safe_dump(
        {"path": str(root / "tiny80"), "train": "images/train", "val": "images/val", "names": names}))
    w.prepared = root / "prepared"
    w.prepare_code, w.prepare_out = yolox("prepare", "--data", root / "tiny80" / "dataset.yaml", "--out", w.prepared,
                                          cwd=root)
    w.prepared_no_val = root / "prepared_no_val"
    if w.prepared.is_dir():
        shutil.copytree(w.prepared, w.prepared_no_val)
        val = w.prepared_no_val / "annotations" / "val.json"
        val.write_text(json.dumps({**json.loads(val.read_text()), "images": [], "annotations": []}))

    # params files
    (root / "params").mkdir()
    for name, text in {"not_yaml.yaml": "train: [1, 2\n", "empty.yaml": "", "comments.yaml": "# nothing here\n",
                       "unknown_section.yaml": "trian:\n  epochs: 3\n", "list.yaml": "- train\n- eval\n",
                       "section_scalar.yaml": "model: 5\n"}.items():
        (root / "params" / name).write_text(text)
    (root / "params" / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81" + rng.bytes(64))
    (root / "params" / "a_folder.yaml").mkdir()

    # a folder of good, bad and odd files for `yolox predict`
    src = root / "mixed"
    (src / "sub").mkdir(parents=True)
    img = cv2.imread(str(coco / COCO_IMAGES[1]))  # giraffes: found at 128 px, whatever the file format
    shutil.copy(coco / COCO_IMAGES[1], src / "good.jpg")
    shutil.copy(coco / COCO_IMAGES[2], src / "sub" / "nested.jpg")
    cv2.imwrite(str(src / "gray.png"), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(src / "alpha.png"), cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(src / "deep16.png"), img.astype(np.uint16) * 257)
    cv2.imwrite(str(src / "one_pixel.png"), img[:1, :1])
    cv2.imwrite(str(src / "huge.jpg"), cv2.resize(img, (4000, 3000)))
    _, png = cv2.imencode(".png", img)
    (src / "png_named.jpg").write_bytes(png.tobytes())
    (src / "garbage.jpg").write_bytes(rng.bytes(2048))
    (src / "truncated.jpg").write_bytes((coco / COCO_IMAGES[0]).read_bytes()[:20_000])
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes.txt").write_text("not an image\n")
    (src / "bomb.png").write_bytes(_png_bomb())
    w.mixed = src
    w.mixed_out = root / "mixed_out"
    w.mixed_code, w.mixed_output = yolox("predict", "--weights", nano_pth, "--model", "yolox-nano", "--source", src,
                                         "--out", w.mixed_out, "--img-size", 128, cwd=root)
    w.mixed_json = json.loads((w.mixed_out / "predictions.json").read_text())
    w.single = root / "single.jpg"
    shutil.copy(coco / COCO_IMAGES[1], w.single)
    (root / "empty_folder").mkdir()
    w.a_file = root / "a_file.txt"
    w.a_file.write_text("x")
    return w


# --- error cases: (id, args, expected error line or a callable checking it, exit code) -----------------------

def _e(text: str) -> str:
    return f"error: {text}"


ERROR_CASES = [
    # eval
    ("eval-img-size-negative", lambda w: ["eval", "--weights", w.nano_onnx, "--data", w.tiny_yaml, "--img-size", -32],
     lambda w: _e(f"--img-size -32: {SIZE_RULE}, e.g. 32"), 1),
    ("eval-img-size-not-multiple", lambda w: ["eval", "--weights", w.nano_onnx, "--data", w.tiny_yaml,
                                              "--img-size", 333],
     lambda w: _e(f"--img-size 333: {SIZE_RULE}, e.g. 320 or 352"), 1),
    ("eval-img-size-zero", lambda w: ["eval", "--weights", w.nano_onnx, "--data", w.tiny_yaml, "--img-size", 0],
     lambda w: _e(f"--img-size 0: {SIZE_RULE}, e.g. 32"), 1),
    ("eval-missing-weights", lambda w: ["eval", "--model", "yolox-nano", "--weights", w.missing_pth,
                                        "--data", w.tiny_yaml],
     lambda w: _e(f"weights '{w.missing_pth}': no such file, and not a released checkpoint name (known: {RELEASES})"),
     1),
    ("eval-weights-folder", lambda w: ["eval", "--model", "yolox-nano", "--weights", w.weights_dir,
                                       "--data", w.tiny_yaml],
     lambda w: _e(f"weights '{w.weights_dir}' is a folder: pass a .pth checkpoint or an .onnx model file"), 1),
    ("eval-weights-empty-file", lambda w: ["eval", "--model", "yolox-nano", "--weights", w.empty_pth,
                                           "--data", w.tiny_yaml],
     lambda w: _e(f"{w.empty_pth}: not a valid checkpoint (the file is empty): copy or download it again"), 1),
    ("eval-weights-truncated", lambda w: ["eval", "--model", "yolox-nano", "--weights", w.truncated_pth,
                                          "--data", w.tiny_yaml],
     lambda w: _e(f"{w.truncated_pth}: not a valid checkpoint: the file is cut short or corrupt (PytorchStreamReader "
                  "failed reading zip archive: failed finding central directory); copy or download it again"), 1),
    ("eval-weights-random-bytes", lambda w: ["eval", "--model", "yolox-nano", "--weights", w.random_pth,
                                             "--data", w.tiny_yaml],
     lambda w: _e(f"{w.random_pth}: not a valid checkpoint: not a PyTorch checkpoint file, or a corrupt one (it does "
                  "not unpickle as tensors and plain data); pass a .pth written by torch.save, or copy or download "
                  "it again"), 1),
    ("eval-weights-pickle-payload", lambda w: ["eval", "--model", "yolox-nano", "--weights", w.payload_pth,
                                               "--data", w.tiny_yaml],
     lambda w: _e(f"{w.payload_pth}: not a safe checkpoint: loading it would import exec, which is refused. "
                  "Use a checkpoint that holds only tensors and plain data, from a source you trust (save one with "
                  "torch.save({'model': model.state_dict()}, path))"), 1),
    ("eval-weights-other-model-size", lambda w: ["eval", "--model", "yolox-s", "--weights", w.nano_pth,
                                                 "--data", w.tiny_yaml, "--img-size", 128],
     lambda w: (_e(f"{w.nano_pth} does not fit this model: shape mismatch: backbone.backbone.stem.conv.conv.weight "
                   "(16, 12, 3, 3) vs model (32, 12, 3, 3)"), ". Is it a checkpoint of another model size?"), 1),
    ("eval-checkpoint-of-another-model", lambda w: ["eval", "--model", "yolox-s", "--weights", w.nano_meta_pth,
                                                    "--data", w.tiny_yaml],
     lambda w: _e(f"{w.nano_meta_pth} is a yolox-nano checkpoint, not yolox-s: drop --model or fix it"), 1),
    ("eval-pth-without-model", lambda w: ["eval", "--weights", w.nano_pth, "--data", w.tiny_yaml],
     lambda w: _e("this checkpoint does not say which model it is: pass --model (e.g. yolox-nano)"), 1),
    ("eval-unknown-model", lambda w: ["eval", "--model", "yolox-q", "--weights", w.nano_pth, "--data", w.tiny_yaml],
     lambda w: _e("unknown model 'yolox-q' (allowed: yolox-nano, yolox-tiny, yolox-s, yolox-m, yolox-l, yolox-x, "
                  "yolox-darknet53)"), 1),
    ("eval-onnx-random-bytes", lambda w: ["eval", "--weights", w.random_onnx, "--data", w.tiny_yaml],
     lambda w: _e(f"{w.random_onnx}: not a loadable ONNX model ([ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load "
                  f"model from {w.random_onnx} failed:Protobuf parsing failed.)"), 1),
    ("eval-onnx-not-a-detector", lambda w: ["eval", "--weights", w.identity_onnx, "--data", w.tiny_yaml],
     lambda w: _e(f"{w.identity_onnx}: not a YOLOX detector (inputs 'x' (1, 3, 64, 64), outputs 'y' (1, 3, 64, 64); "
                  "expected one input (B, 3, S, S) and an output (B, A, 5 + C)): export one with yolox export"), 1),
    ("eval-onnx-fixed-size", lambda w: ["eval", "--weights", w.nano_onnx, "--data", w.tiny_yaml, "--img-size", 320],
     lambda w: _e(f"{w.nano_onnx} takes 416 px inputs only, not 320: drop --img-size / eval.img_size, or export the "
                  "model at 320"), 1),
    ("eval-split-missing", lambda w: ["eval", "--weights", w.onnx128, "--data", w.prepared, "--split", "test"],
     lambda w: _e(f"{w.prepared} is a prepared dataset with the splits train, val: no 'test' split (use --split "
                  "train or --split val)"), 1),
    ("eval-zero-val-images", lambda w: ["eval", "--weights", w.onnx128, "--data", w.prepared_no_val,
                                        "--out", w.root / "m0.json"],
     lambda w: _e(f"{w.prepared_no_val}: the 'val' split has no images: nothing to evaluate"), 1),
    ("eval-val-folder-empty", lambda w: ["eval", "--weights", w.onnx128, "--data", w.empty_val_yaml],
     lambda w: _e(f"{w.empty_val_yaml}: no images (.jpg/.jpeg/.png/.bmp/.webp/.tif/.tiff) found in "
                  f"{w.empty_val_yaml.parent / 'images' / 'empty'}"), 1),
    ("eval-class-count-mismatch", lambda w: ["eval", "--weights", w.onnx128, "--data", w.tiny_yaml,
                                             "--out", w.root / "m1.json"],
     lambda w: _e("the model predicts 80 classes, the dataset has 2: evaluate a model trained on this dataset's "
                  "classes"), 1),
    ("eval-data-missing", lambda w: ["eval", "--weights", w.onnx128, "--data", w.root / "no" / "such.yaml"],
     lambda w: _e(f"dataset '{w.root / 'no' / 'such.yaml'}': no such file or folder, and not a known dataset name "
                  "(known: coco128, raccoon)"), 1),
    ("eval-out-is-folder", lambda w: ["eval", "--weights", w.onnx128, "--data", w.prepared, "--out", w.root],
     lambda w: _e(f"--out {w.root} is a folder: give the metrics .json file to write"), 1),
    # export
    ("export-img-size-not-multiple", lambda w: ["export", "--model", "yolox-nano", "--weights", w.nano_pth,
                                                "--img-size", 333],
     lambda w: _e(f"--img-size 333: {SIZE_RULE}, e.g. 320 or 352"), 1),
    ("export-img-size-negative", lambda w: ["export", "--model", "yolox-nano", "--weights", w.nano_pth,
                                            "--img-size", -64],
     lambda w: _e(f"--img-size -64: {SIZE_RULE}, e.g. 32"), 1),
    ("export-onnx-as-weights", lambda w: ["export", "--weights", w.nano_onnx, "--out", w.root / "x.onnx"],
     lambda w: _e(f"--weights {w.nano_onnx}: export takes a .pth checkpoint; this is an ONNX model already"), 1),
    ("export-out-is-folder", lambda w: ["export", "--model", "yolox-nano", "--weights", w.nano_pth, "--out", w.root],
     lambda w: _e(f"--out {w.root} is a folder: give the .onnx file to write"), 1),
    ("export-missing-weights", lambda w: ["export", "--model", "yolox-nano", "--weights", w.missing_pth],
     lambda w: _e(f"weights '{w.missing_pth}': no such file, and not a released checkpoint name (known: {RELEASES})"),
     1),
    ("export-weights-pickle-payload", lambda w: ["export", "--model", "yolox-nano", "--weights", w.payload_pth],
     lambda w: _e(f"{w.payload_pth}: not a safe checkpoint: loading it would import exec, which is refused. "
                  "Use a checkpoint that holds only tensors and plain data, from a source you trust (save one with "
                  "torch.save({'model': model.state_dict()}, path))"), 1),
    ("export-check-images-not-folder", lambda w: ["export", "--model", "yolox-nano", "--weights", w.nano_pth,
                                                  "--out", w.root / "y.onnx", "--check-images", w.a_file],
     lambda w: _e(f"--check-images {w.a_file}: not a folder of images"), 1),
    # predict
    ("predict-img-size-not-multiple", lambda w: ["predict", "--weights", w.onnx128, "--source", w.single,
                                                 "--out", w.root / "p", "--img-size", 333],
     lambda w: _e(f"--img-size 333: {SIZE_RULE}, e.g. 320 or 352"), 1),
    ("predict-img-size-zero", lambda w: ["predict", "--weights", w.onnx128, "--source", w.single,
                                         "--out", w.root / "p", "--img-size", 0],
     lambda w: _e(f"--img-size 0: {SIZE_RULE}, e.g. 32"), 1),
    ("predict-conf-above-one", lambda w: ["predict", "--weights", w.onnx128, "--source", w.single,
                                          "--out", w.root / "p", "--conf", 1.5, "--nms", -1],
     lambda w: _e("--conf 1.5: must be in [0, 1] (serve.conf_thresh)"), 1),
    ("predict-nms-negative", lambda w: ["predict", "--weights", w.onnx128, "--source", w.single,
                                        "--out", w.root / "p", "--nms", -1],
     lambda w: _e("--nms -1.0: must be in (0, 1] (serve.nms_thresh)"), 1),
    ("predict-nms-zero", lambda w: ["predict", "--weights", w.onnx128, "--source", w.single,
                                    "--out", w.root / "p", "--nms", 0],
     lambda w: _e("--nms 0.0: must be in (0, 1] (serve.nms_thresh)"), 1),
    ("predict-source-missing", lambda w: ["predict", "--weights", w.onnx128, "--source", w.root / "nothing",
                                          "--out", w.root / "p"],
     lambda w: _e(f"{w.root / 'nothing'}: no such file or folder"), 1),
    ("predict-empty-folder", lambda w: ["predict", "--weights", w.onnx128, "--source", w.root / "empty_folder",
                                        "--out", w.root / "p"],
     lambda w: _e(f"no images at {w.root / 'empty_folder'} (expected an image file or a folder of ['.bmp', '.jpeg', "
                  "'.jpg', '.png', '.tif', '.tiff', '.webp'])"), 1),
    ("predict-out-is-a-file", lambda w: ["predict", "--weights", w.onnx128, "--source", w.single,
                                         "--out", w.a_file],
     lambda w: _e(f"--out {w.a_file} is a file: give a folder for the drawn images and predictions.json"), 1),
    ("predict-out-under-a-file", lambda w: ["predict", "--weights", w.onnx128, "--source", w.single,
                                            "--out", w.a_file / "sub"],
     lambda w: _e(f"--out {w.a_file / 'sub'}: cannot create the folder (Not a directory)"), 1),
    ("predict-only-bad-images", lambda w: ["predict", "--weights", w.onnx128, "--source", w.mixed / "truncated.jpg",
                                           "--out", w.root / "p_bad"],
     lambda w: _e(f"no image of {w.mixed / 'truncated.jpg'} could be read (1 skipped: truncated JPEG); see "
                  f"{w.root / 'p_bad' / 'predictions.json'}"), 1),
    ("predict-conf-not-a-number", lambda w: ["predict", "--weights", w.onnx128, "--source", w.single,
                                             "--out", w.root / "p", "--conf", "high"],
     lambda w: "Error: Invalid value for '--conf': Input should be a valid number, unable to parse string as a "
               "number", 2),
    # the command line and params files (any command reads them first)
    ("cli-set-bad-syntax", lambda w: ["eval", "--set", "train.epochs"],
     lambda w: _e("override 'train.epochs': expected KEY.PATH=VALUE, e.g. train.epochs=5"), 1),
    ("cli-set-unknown-key", lambda w: ["eval", "--set", "train.lr=0.1"],
     lambda w: _e("--set: invalid params\n  train.lr: unknown key (got 0.1)"), 1),
    ("cli-set-bad-type", lambda w: ["eval", "--set", "train.epochs=many"],
     lambda w: _e("--set: invalid params\n  train.epochs: Input should be a valid integer, unable to parse string as an "
                  "integer (got 'many')"), 1),
    ("cli-set-below-range", lambda w: ["eval", "--set", "eval.conf_thresh=-0.5"],
     lambda w: _e("--set: invalid params\n  eval.conf_thresh: Input should be greater than or equal to 0 (got -0.5)"), 1),
    ("cli-set-img-size-rule", lambda w: ["eval", "--set", "eval.img_size=100"],
     lambda w: _e("--set: invalid params\n  eval.img_size: Input should be a multiple of 32 (got 100)"), 1),
    ("cli-set-unknown-section", lambda w: ["eval", "--set", "trian.epochs=3"],
     lambda w: _e("--set: invalid params\n  trian: unknown section (sections: data, model, augment, train, eval, "
                  "export, serve, tracking, gate, predict)"), 1),
    ("cli-params-not-yaml", lambda w: ["eval", "--params", w.root / "params" / "not_yaml.yaml"],
     lambda w: _e(f"{w.root / 'params' / 'not_yaml.yaml'}: not valid YAML: while parsing a flow sequence, "
                  "expected ',' or ']', but got '<stream end>' (line 2, column 1)"), 1),
    ("cli-params-empty", lambda w: ["eval", "--params", w.root / "params" / "empty.yaml"],
     lambda w: _e(f"{w.root / 'params' / 'empty.yaml'}: the params file is empty: give the sections to override "
                  "(data, model, train, ...), or drop --params to use the defaults"), 1),
    ("cli-params-comments-only", lambda w: ["eval", "--params", w.root / "params" / "comments.yaml"],
     lambda w: _e(f"{w.root / 'params' / 'comments.yaml'}: the params file is empty: give the sections to override "
                  "(data, model, train, ...), or drop --params to use the defaults"), 1),
    ("cli-params-unknown-section", lambda w: ["eval", "--params", w.root / "params" / "unknown_section.yaml"],
     lambda w: _e(f"{w.root / 'params' / 'unknown_section.yaml'}: invalid params\n  trian: unknown section (sections: "
                  "data, model, augment, train, eval, export, serve, tracking, gate, predict)"), 1),
    ("cli-params-not-a-mapping", lambda w: ["eval", "--params", w.root / "params" / "list.yaml"],
     lambda w: _e(f"{w.root / 'params' / 'list.yaml'}: expected a mapping of sections (data, model, train, ...), "
                  "got list"), 1),
    ("cli-params-section-not-a-mapping", lambda w: ["eval", "--params", w.root / "params" / "section_scalar.yaml"],
     lambda w: _e(f"{w.root / 'params' / 'section_scalar.yaml'}: invalid params\n  model: Input should be a valid "
                  "dictionary or instance of ModelParams (got 5)"), 1),
    ("cli-params-missing", lambda w: ["eval", "--params", w.root / "params" / "nope.yaml"],
     lambda w: _e(f"params file not found: {w.root / 'params' / 'nope.yaml'}"), 1),
    ("cli-params-folder", lambda w: ["eval", "--params", w.root / "params" / "a_folder.yaml"],
     lambda w: _e(f"params file {w.root / 'params' / 'a_folder.yaml'} is a folder: pass a YAML file, e.g. "
                  "params/default.yaml"), 1),
    ("cli-params-binary", lambda w: ["eval", "--params", w.root / "params" / "binary.yaml"],
     lambda w: _e(f"{w.root / 'params' / 'binary.yaml'}: not a text file (not UTF-8): pass a params YAML file"), 1),
    ("cli-unknown-option", lambda w: ["eval", "--weigths", w.onnx128],
     lambda w: "Error: No such option: --weigths (Possible options: --weights)", 2),
    ("cli-img-size-not-an-integer", lambda w: ["eval", "--weights", w.onnx128, "--img-size", "big"],
     lambda w: "Error: Invalid value for '--img-size': Input should be a valid integer, unable to parse string as an "
               "integer", 2),
    ("cli-preview-zero-samples", lambda w: ["augment-preview", "--n", "0"],
     lambda w: "Error: Invalid value for '--n': Input should be greater than or equal to 1", 2),
    ("cli-unknown-command", lambda w: ["evaluate", "--weights", w.onnx128],
     lambda w: "Error: No such command 'evaluate'. Did you mean 'eval'?", 2),
]


@pytest.mark.parametrize("args, expected, code", [pytest.param(a, e, c, id=i) for i, a, e, c in ERROR_CASES])
def test_error_case(ws: SimpleNamespace, args, expected, code: int) -> None:
    got_code, output = yolox(*args(ws), cwd=ws.root)
    assert got_code == code, output[-3000:]
    assert "Traceback" not in output
    want = expected(ws)
    if code == 1:
        line = error_line(output)
        if isinstance(want, tuple):  # (start, end) of a message listing many tensors
            assert line.startswith(want[0]) and line.endswith(want[1]), line
        else:
            assert line == want
    else:
        assert want in output, output
    assert "weights_only=False" not in output
    assert not ws.marker.exists()  # a pickled payload never ran


def test_matrix_counts() -> None:
    """At least 40 distinct kinds over the stages eval, predict, export, serve and cli."""
    ids = [i for i, *_ in ERROR_CASES] + [f"predict-{k}" for k in FOLDER_CASES] + \
        [f"serve-{k}" for k in SERVE_CASES] + list(SURVIVOR_CASES)
    assert len(ids) == len(set(ids))
    kinds = {i.split("-", 1)[1] for i in ids}
    print(len(ids), "cases,", len(kinds), "distinct kinds")
    assert len(kinds) >= 40 and {i.split("-", 1)[0] for i in ids} == {"eval", "predict", "export", "serve", "cli"}


# --- good inputs next to the bad ones: they must work ---------------------------------------------------------

def _export_into_a_missing_folder(ws: SimpleNamespace) -> None:
    """The folders are made; the ONNX says the size it was exported at (128), not the checkpoint's (416)."""
    from yolox.inference import OnnxBackend

    assert ws.export_code == 0, ws.export_out[-3000:]
    assert f"{ws.onnx128} (raw, 128px): ONNX check skipped" in ws.export_out
    assert OnnxBackend(ws.onnx128).meta.input_size == 128


def _eval_the_prepared_dataset(ws: SimpleNamespace) -> None:
    """The prepared dataset of the bad split cases evaluates, at the ONNX model's own size."""
    assert ws.prepare_code == 0, ws.prepare_out[-3000:]
    out = ws.root / "metrics_ok.json"
    code, output = yolox("eval", "--weights", ws.onnx128, "--data", ws.prepared, "--out", out, cwd=ws.root)
    assert code == 0, output[-3000:]
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == len(VAL_IMAGES) and 0.0 <= metrics["AP50_95"] <= 1.0, output


def _predict_onnx_with_another_input_name(ws: SimpleNamespace) -> None:
    """The ONNX input is found by position, not by name; a single image whose extension OpenCV does not write
    still gets its drawn copy (as PNG)."""
    src = ws.root / "photo.gif"
    src.write_bytes((ws.coco / COCO_IMAGES[1]).read_bytes())
    out = ws.root / "p_renamed"
    code, output = yolox("predict", "--weights", ws.renamed_onnx, "--source", src, "--out", out, cwd=ws.root)
    assert code == 0, output[-3000:]
    result = json.loads((out / "predictions.json").read_text())
    assert result["skipped"] == [] and result["images"][0]["detections"]
    assert (out / "photo.gif.png").is_file()


def _predict_out_inside_source(ws: SimpleNamespace) -> None:
    """A second run does not predict on the first run's drawn images."""
    src = ws.root / "inside"
    src.mkdir()
    shutil.copy(ws.single, src / "a.jpg")
    for _ in range(2):
        code, output = yolox("predict", "--weights", ws.onnx128, "--source", src, "--out", src / "pred", cwd=ws.root)
        assert code == 0, output[-3000:]
    result = json.loads((src / "pred" / "predictions.json").read_text())
    assert [Path(r["image"]).name for r in result["images"]] == ["a.jpg"] and result["skipped"] == []


SURVIVOR_CASES = {
    "export-out-missing-dir": _export_into_a_missing_folder,
    "eval-good-prepared-dataset": _eval_the_prepared_dataset,
    "predict-onnx-other-input-name": _predict_onnx_with_another_input_name,
    "predict-out-inside-source": _predict_out_inside_source,
}


@pytest.mark.parametrize("case", [pytest.param(f, id=i) for i, f in SURVIVOR_CASES.items()])
def test_good_input_works(ws: SimpleNamespace, case) -> None:
    case(ws)


# --- predict on a folder of good, bad and odd files: one run, one case per file -------------------------------

GOOD_FILES = {"good.jpg", "sub/nested.jpg", "gray.png", "alpha.png", "deep16.png", "one_pixel.png", "huge.jpg",
              "png_named.jpg"}
FOLDER_CASES = {
    # kind: (file, None if it survives else (reason, detail))
    "undecodable-image": ("garbage.jpg", ("not a decodable image", "cannot read the image header")),
    "truncated-jpeg": ("truncated.jpg", ("truncated JPEG", "no end-of-image marker: the file is cut short")),
    "empty-image-file": ("empty.jpg", ("not a decodable image", "cannot read the image header")),
    "non-image-file": ("notes.txt", ("not an image file", ("extension '.txt' is not one of ['.bmp', '.jpeg', '.jpg', "
                                                           "'.png', '.tif', '.tiff', '.webp']"))),
    "png-bomb-header": ("bomb.png", ("not a decodable image",
                                     ("the header claims too many pixels (Image size (2500000000 pixels) exceeds "
                                      "limit of 178956970 pixels, could be decompression bomb DOS attack.)"))),
    "grayscale-png": ("gray.png", None),
    "alpha-png": ("alpha.png", None),
    "16bit-png": ("deep16.png", None),
    "1x1-image": ("one_pixel.png", None),
    "huge-image": ("huge.jpg", None),
    "nested-folder": ("sub/nested.jpg", None),
    "png-named-jpg": ("png_named.jpg", None),
}


@pytest.mark.parametrize("kind", [pytest.param(k, id=f"predict-{k}") for k in FOLDER_CASES])
def test_predict_folder_case(ws: SimpleNamespace, kind: str) -> None:
    file, skip = FOLDER_CASES[kind]
    assert ws.mixed_code == 0, ws.mixed_output[-3000:]
    done = {str(Path(r["image"]).relative_to(ws.mixed)): r for r in ws.mixed_json["images"]}
    skipped = {str(Path(s["image"]).relative_to(ws.mixed)): s for s in ws.mixed_json["skipped"]}
    assert set(done) == GOOD_FILES  # every good image survives, whatever else the folder holds
    assert set(skipped) == {f for f, s in FOLDER_CASES.values() if s}
    if skip is None:
        assert (ws.mixed_out / file).is_file() and file not in skipped
        assert all(set(d) == {"box_xyxy", "score", "class_id", "class_name"} for d in done[file]["detections"])
    else:
        reason, detail = skip
        assert skipped[file] == {"image": str(ws.mixed / file), "reason": reason, "detail": detail}
        assert f"skipped {ws.mixed / file}: {reason} ({detail})" in ws.mixed_output  # the log line
        assert not (ws.mixed_out / file).exists()


def test_predict_folder_summary_and_detections(ws: SimpleNamespace) -> None:
    """The summary line counts the skips; coco images keep their detections (original-image pixels)."""
    assert f"-> {ws.mixed_out} (predictions.json, 5 skipped (listed in it))" in ws.mixed_output
    by_name = {Path(r["image"]).name: r["detections"] for r in ws.mixed_json["images"]}
    giraffes = [d for d in by_name["good.jpg"] if d["class_name"] == "giraffe"]
    assert giraffes and max(d["box_xyxy"][2] for d in giraffes) > 128  # not in letterbox pixels
    for name in ("alpha.png", "deep16.png", "huge.jpg", "png_named.jpg"):  # made from good.jpg: same pixels
        assert "giraffe" in {d["class_name"] for d in by_name[name]}, name
    assert max(d["box_xyxy"][2] for d in by_name["huge.jpg"]) > 2000  # 4000 px wide: boxes in its pixels


# --- serving: the pyfunc's predict, as MLflow's scoring server calls it ---------------------------------------

@pytest.fixture(scope="module")
def served(ws: SimpleNamespace):
    from yolox.serve.pyfunc import YoloxOnnxModel

    model = YoloxOnnxModel()
    model.load_context(SimpleNamespace(artifacts={"onnx": str(ws.onnx128)}))
    return model


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


SERVE_CASES = {
    # kind: (frame builder, params, expected message or None when it is answered)
    "bad-base64": (lambda w: pd.DataFrame({"image": [_b64(w.single), "not*base64!"]}), None,
                   "row 1: 'image' is not valid base64 (Only base64 data is allowed)"),
    "not-an-image": (lambda w: pd.DataFrame({"image": [base64.b64encode(b"hello, not an image").decode()]}), None,
                     ("row 0: 'image' is not a base64-encoded image file: its 19 bytes do not decode as an image "
                      "(JPEG, PNG, ...)")),
    "empty-string": (lambda w: pd.DataFrame({"image": [_b64(w.single), ""]}), None,
                     "row 1: 'image' is empty: expected the base64 text of an image file"),
    "wrong-column": (lambda w: pd.DataFrame({"img": [_b64(w.single)]}), None,
                     ("the input has no 'image' column (got ['img']): send one base64-encoded image file per row in "
                      "a column 'image'")),
    "missing-value": (lambda w: pd.DataFrame({"image": [_b64(w.single), None]}), None,
                      "row 1: 'image' is missing, not the base64 text of an image file"),
    "number-value": (lambda w: pd.DataFrame({"image": [7]}), None,
                     "row 0: 'image' is int 7, not the base64 text of an image file"),
    "png-bomb-header": (lambda w: pd.DataFrame({"image": [_b64(w.mixed / "bomb.png")]}), None,
                        ("row 0: 'image' claims 2,500,000,000 pixels in its header, over the limit of 50,000,000 "
                         "pixels per image (serve.max_image_pixels)")),
    "conf-out-of-range": (lambda w: pd.DataFrame({"image": [_b64(w.single)]}), {"conf_thresh": 1.5},
                          "params.conf_thresh 1.5: must be in [0, 1] (serve.conf_thresh)"),
    "param-bad-type": (lambda w: pd.DataFrame({"image": [_b64(w.single)]}), {"max_det": "many"},
                       ("params.max_det many: Input should be a valid integer, unable to parse string as an "
                        "integer (serve.max_det)")),
    "unknown-param": (lambda w: pd.DataFrame({"image": [_b64(w.single)]}), {"iou": 0.5},
                      "params: unknown iou (known: conf_thresh, nms_thresh, max_det)"),
    "base64-with-newlines": (lambda w: pd.DataFrame({"image": [base64.encodebytes(w.single.read_bytes()).decode()]}),
                             None, None),
    "data-url": (lambda w: pd.DataFrame({"image": ["data:image/jpeg;base64," + _b64(w.single)]}), None, None),
    "no-rows": (lambda w: pd.DataFrame({"image": pd.Series([], dtype=str)}), None, None),
}


TOO_LARGE = {"png-bomb-header"}
"""Cases over a serving budget (``serve.max_*``): refused from the header, before decoding, with HTTP 413."""


@pytest.mark.parametrize("kind", [pytest.param(k, id=f"serve-{k}") for k in SERVE_CASES])
def test_serve_case(ws: SimpleNamespace, served, kind: str) -> None:
    from mlflow.exceptions import MlflowException

    build, params, message = SERVE_CASES[kind]
    frame = build(ws)
    if message is None:
        out = served.predict(None, frame, params)
        assert list(out.columns) == ["image", "x0", "y0", "x1", "y1", "score", "class_id", "class_name"]
        assert (len(out) > 0) == (len(frame) > 0)
    else:
        with pytest.raises(MlflowException) as err:
            served.predict(None, frame, params)
        expected = (("RESOURCE_EXHAUSTED", 413) if kind in TOO_LARGE else ("INVALID_PARAMETER_VALUE", 400))
        assert (err.value.error_code, err.value.get_http_status_code()) == expected   # 413: over a budget
        assert err.value.message == message
        assert "Traceback" not in err.value.serialize_as_json()
    good = served.predict(None, pd.DataFrame({"image": [_b64(ws.single)]}))  # the model still answers
    assert len(good) > 0 and set(good["image"]) == {0}


# --- the Prefect flow entry point: time for the ephemeral API, one line when it is not enough ----------------

@pytest.fixture
def no_prefect_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No Prefect server: the flow would start the ephemeral API (whose start-up is replaced by a recorder that
    times out like a busy machine does)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    seen: list[int] = []

    def slow_start(self, timeout=None) -> None:
        seen.append(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server. stdout: None")

    monkeypatch.setattr(SubprocessASGIServer, "start", slow_start)
    return seen


def test_flow_entry_gives_the_ephemeral_api_time(no_prefect_api: list[int], capsys: pytest.CaptureFixture) -> None:
    from flows.train_yolox import EPHEMERAL_STARTUP_TIMEOUT_S, main

    assert main(["params/default.yaml"]) == 1
    assert no_prefect_api == [EPHEMERAL_STARTUP_TIMEOUT_S] and EPHEMERAL_STARTUP_TIMEOUT_S >= 180
    err = capsys.readouterr().err
    assert err == ("error: Prefect's temporary API server did not start within 180 s (the machine is busy): set "
                   "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS higher, or start a server (prefect server start) "
                   "and set PREFECT_API_URL to it\n")


def test_flow_entry_keeps_the_users_timeout(no_prefect_api: list[int], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    from prefect.context import refresh_global_settings_context

    from flows.train_yolox import main

    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "33")
    refresh_global_settings_context()  # the environment as a new process would read it
    try:
        assert main(["params/default.yaml"]) == 1
    finally:
        monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
        refresh_global_settings_context()
    assert no_prefect_api == [33]
    assert "did not start within 33 s" in capsys.readouterr().err
