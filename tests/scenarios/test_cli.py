"""The CLI contract other tools rely on, run as a user runs it (a subprocess of the `yolox` script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

YOLOX = str(Path(sys.executable).parent / "yolox")
METRIC_KEYS = {"AP50_95", "AP50", "AP75", "APs", "APm", "APl"}
NANO_COCO128_416 = {"AP50_95": 0.3293, "AP50": 0.5053, "AP75": 0.3267, "APs": 0.1190, "APm": 0.2780,
                    "APl": 0.5244}
"""The authors' yolox_nano.pth and yolox_nano.onnx on all 128 coco128 images at 416 px, measured 2026-12-07
with this file's command (``yolox eval --model yolox-nano --weights <mirror>/weights/yolox_nano.pth|.onnx
--data <mirror>/data/coco128/dataset.yaml --split train --img-size 416``): both printed AP50_95 0.329328, AP50
0.505331, AP75 0.326675, APs 0.119004, APm 0.278006, APl 0.524369, 5380 detections. Evaluation is
deterministic; the tolerance (0.003) covers other CPUs' and runtimes' rounding, not a change to decoding, NMS
or the COCO protocol (those move AP50:95 by 0.01 and more)."""


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([YOLOX, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"yolox {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.mark.parametrize("args, message", [
    (["train", "--params", "missing.yaml"], "params file not found: missing.yaml"),
    (["eval", "--model", "yolox-nano", "--weights", "nope.pth", "--data", "coco128", "--split", "train"],
     "weights 'nope.pth': no such file"),
    (["eval", "--model", "yolox-nano", "--weights", "yolox_nano.pth", "--data", "no/such/dataset.yaml"],
     "no/such/dataset.yaml"),
    (["prepare", "--data", "no-such-dataset", "--out", "prep"], "no-such-dataset"),
])
def test_user_errors_print_one_message_without_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run(args, tmp_path, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_bad_param_value_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("train:\n  epochs: 0\n  lr: 1\nmodel:\n  name: yolox-q\n")
    proc = run(["train", "--params", "p.yaml"], tmp_path, check=False)
    assert proc.returncode == 1
    assert "train.epochs" in proc.stderr and "train.lr: unknown key" in proc.stderr
    assert "model.name: must be one of" in proc.stderr and "yolox-darknet53" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_eval_pth_and_onnx_give_the_same_ap(tmp_path: Path, coco128_dir: Path, assets_dir: Path) -> None:
    """`yolox eval` on the authors' nano weights, as .pth and as their released .onnx, on coco128 train."""
    results = {}
    for weights in ("yolox_nano.pth", "yolox_nano.onnx"):
        out = tmp_path / f"{weights}.json"
        run(["eval", "--model", "yolox-nano", "--weights", str(assets_dir / "weights" / weights),
             "--data", str(coco128_dir / "dataset.yaml"), "--split", "train", "--img-size", "416",
             "--out", str(out)], tmp_path)
        metrics = json.loads(out.read_text())
        assert METRIC_KEYS <= set(metrics) and "per_class" not in metrics
        per_class = json.loads(out.with_name(f"{out.stem}_per_class.json").read_text())
        assert {"class", "AP50_95"} == set(per_class[0]) and len(per_class) > 60
        assert {k: metrics[k] for k in METRIC_KEYS} == pytest.approx(NANO_COCO128_416, abs=0.003), metrics
        assert metrics["num_images"] == 128 and abs(metrics["num_detections"] - 5380) <= 54   # 1 %
        results[weights] = metrics
    print({k: v["AP50_95"] for k, v in results.items()})
    assert abs(results["yolox_nano.pth"]["AP50_95"] - results["yolox_nano.onnx"]["AP50_95"]) <= 0.001


def test_prepare_export_predict(tmp_path: Path, coco128_dir: Path, assets_dir: Path) -> None:
    run(["prepare", "--data", str(coco128_dir), "--out", "prep"], tmp_path)
    assert (tmp_path / "prep" / "annotations" / "val.json").is_file()
    onnx_path = tmp_path / "nano.onnx"
    proc = run(["export", "--model", "yolox-nano", "--weights", str(assets_dir / "weights" / "yolox_nano.pth"),
                "--img-size", "416", "--out", str(onnx_path), "--check-images", "prep/images"], tmp_path)
    assert onnx_path.is_file() and "max |onnx - torch|" in proc.stdout + proc.stderr
    image = min((coco128_dir / "images" / "train2017").glob("*.jpg"))
    for weights in (str(onnx_path), str(assets_dir / "weights" / "yolox_nano.pth")):
        out = tmp_path / Path(weights).suffix[1:]
        run(["predict", "--weights", weights, "--model", "yolox-nano", "--source", str(image), "--out", str(out)],
            tmp_path)
        preds = json.loads((out / "predictions.json").read_text())
        assert (out / image.name).is_file() and preds["images"][0]["detections"] and preds["skipped"] == []
    onnx_dets = json.loads((tmp_path / "onnx" / "predictions.json").read_text())["images"][0]["detections"]
    pth_dets = json.loads((tmp_path / "pth" / "predictions.json").read_text())["images"][0]["detections"]
    assert [d["class_name"] for d in onnx_dets] == [d["class_name"] for d in pth_dets]


def test_eval_a_val_only_dataset_yaml(tmp_path: Path, coco128_dir: Path, assets_dir: Path) -> None:
    """A test set handed over as `val:` + `names:` (no `train:`), whose val folder may even be a train folder."""
    names = yaml.safe_load((coco128_dir / "dataset.yaml").read_text())["names"]
    (tmp_path / "test_set").mkdir()
    (tmp_path / "test_set" / "dataset.yaml").write_text(yaml.safe_dump(
        {"path": str(coco128_dir), "val": "images/train2017", "names": names}))
    out = tmp_path / "m.json"
    run(["eval", "--weights", str(assets_dir / "weights" / "yolox_nano.onnx"), "--data", "test_set/dataset.yaml",
         "--split", "val", "--out", str(out)], tmp_path)
    metrics = json.loads(out.read_text())
    # the same 128 images as above, through the test set's yaml: the same AP (measured: 0.329328)
    assert metrics["num_images"] == 128
    assert metrics["AP50_95"] == pytest.approx(NANO_COCO128_416["AP50_95"], abs=0.003), metrics
    proc = run(["eval", "--weights", str(assets_dir / "weights" / "yolox_nano.onnx"), "--data",
                "test_set/dataset.yaml", "--split", "train"], tmp_path, check=False)
    assert proc.returncode == 1 and "missing key 'train'" in proc.stderr and "Traceback" not in proc.stderr


def test_export_outside_a_project_and_set_without_params(tmp_path: Path, assets_dir: Path) -> None:
    """No prepared dataset here: the ONNX check is skipped with a notice (or asked to be, --skip-check); --set
    works on the defaults without --params; the model's own input size is used (one rule)."""
    weights = str(assets_dir / "weights" / "yolox_nano.pth")
    proc = run(["export", "--model", "yolox-nano", "--weights", weights, "--out", "a.onnx",
                "--set", "export.simplify=false"], tmp_path)
    assert (tmp_path / "a.onnx").is_file() and "check skipped" in proc.stderr + proc.stdout
    assert "no images at data/prepared/images" in " ".join((proc.stderr + proc.stdout).split())
    from yolox.export.onnx_export import read_metadata
    from yolox.models.meta import meta_of_onnx

    props = read_metadata(tmp_path / "a.onnx")
    meta = meta_of_onnx({k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()})
    assert meta is not None and meta.input_size == 416 and meta.name == "yolox-nano" and len(meta.names) == 80
    run(["export", "--model", "yolox-nano", "--weights", weights, "--out", "b.onnx", "--skip-check",
         "--img-size", "320"], tmp_path)
    bad = run(["export", "--model", "yolox-nano", "--weights", weights, "--img-size", "333"], tmp_path, check=False)
    assert bad.returncode == 1 and "multiple of 32" in bad.stderr and "Traceback" not in bad.stderr
