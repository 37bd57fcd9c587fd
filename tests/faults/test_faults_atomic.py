"""Every artifact is written atomically (issue 22, item 2): each writer is killed mid-write (its underlying writer
is replaced by one that writes some bytes to its target and then raises KeyboardInterrupt or
:class:`yolox.errors.Interrupted`, as Ctrl-C or SIGTERM do), and the previous file must be byte-identical and no
temp file left in its folder. One real process: ``yolox export`` over an existing model, sent SIGTERM while it
writes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
import torch
from helpers.trt_standin import FACTS, MAGIC, standin_tensorrt

from yolox.errors import AssetError, DataError, ExportError, Interrupted

SIDE = 128
PARTIAL = b"half-written: this must never be found at the final path"


@pytest.fixture(scope="module")
def nano() -> torch.nn.Module:
    from yolox.models.build import build_model

    torch.manual_seed(0)
    return build_model("yolox-nano", num_classes=2).eval()


@pytest.fixture(scope="module")
def previous_model(nano: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 2-class raw export: the model an interrupted export must leave in place."""
    from yolox.export.onnx_export import export_onnx

    return export_onnx(nano, tmp_path_factory.mktemp("prev") / "model.onnx", SIDE, ["cat", "dog"], "yolox-nano",
                       simplify=False)


def _existing(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _interrupting(exc: BaseException):
    """A writer ``(obj, target, ...)`` that writes :data:`PARTIAL` to its target, then raises ``exc``."""

    def write(_obj: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        Path(target).write_bytes(PARTIAL)
        raise exc

    return write


def _kill_path_writes(monkeypatch: pytest.MonkeyPatch, exc: BaseException, after: int = 0) -> None:
    """``Path.write_bytes`` writes half its data and raises ``exc`` (after ``after`` normal calls)."""
    real = Path.write_bytes
    calls = {"n": 0}

    def write_bytes(self: Path, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] <= after:
            return real(self, data)
        real(self, bytes(data)[: max(1, len(data) // 2)])
        raise exc

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def _assert_intact(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before, f"{path} was changed by an interrupted write"
    left = sorted(p.name for p in path.parent.iterdir() if p.name != path.name and ".tmp" in p.name)
    assert not left, f"temp files left in {path.parent}: {left}"


# --- ONNX export ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["torch.onnx.export", "onnx.save"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt(), Interrupted(signal.SIGTERM)], ids=["ctrl-c", "sigterm"])
def test_export_killed_mid_write_keeps_the_previous_model(writer: str, exc: BaseException, nano: torch.nn.Module,
                                                          previous_model: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from yolox.export.onnx_export import export_onnx, read_metadata

    before = previous_model.read_bytes()
    out = _existing(tmp_path, "model.onnx", before)
    if writer == "onnx.save":
        monkeypatch.setattr(onnx, "save", _interrupting(exc))
    else:
        monkeypatch.setattr(torch.onnx, "export", lambda model, args, f, **kw: _interrupting(exc)(model, f))
    with pytest.raises(type(exc)):
        export_onnx(nano, out, SIDE, ["a", "b"], "yolox-nano", simplify=False, variant="decoded")
    _assert_intact(out, before)
    assert read_metadata(out)["names"] == ["cat", "dog"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_export_failure_keeps_the_previous_model(nano: torch.nn.Module, previous_model: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from yolox.export.onnx_export import export_onnx

    before = previous_model.read_bytes()
    out = _existing(tmp_path, "model.onnx", before)

    def broken(model: Any, args: Any, f: str, **kw: Any) -> None:
        Path(f).write_bytes(PARTIAL)
        raise RuntimeError("exporter crashed half way")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ExportError, match="exporter crashed half way"):
        export_onnx(nano, out, SIDE, ["a", "b"], "yolox-nano", simplify=False)
    _assert_intact(out, before)


def test_export_final_file_appears_only_complete(nano: torch.nn.Module, previous_model: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """While the exporter and the final save run, the path still holds the previous model; afterwards it holds
    the new one, with its metadata, and nothing else is left in the folder."""
    from yolox.export.onnx_export import export_onnx, read_metadata

    before = previous_model.read_bytes()
    out = _existing(tmp_path, "model.onnx", before)
    seen: list[tuple[str, str, bool]] = []
    real_export, real_save = torch.onnx.export, onnx.save

    def export(model: Any, args: Any, f: str, **kw: Any) -> None:
        real_export(model, args, f, **kw)
        seen.append(("export", Path(f).name, out.read_bytes() == before))

    def save(graph: Any, f: str, *a: Any, **kw: Any) -> None:
        real_save(graph, f, *a, **kw)
        seen.append(("save", Path(f).name, out.read_bytes() == before))

    monkeypatch.setattr(torch.onnx, "export", export)
    monkeypatch.setattr(onnx, "save", save)
    export_onnx(nano, out, SIDE, ["a", "b"], "yolox-nano", simplify=False, variant="decoded")
    assert [s[0] for s in seen] == ["export", "save"]
    for step, name, unchanged in seen:
        assert name != "model.onnx" and name.startswith(".model.") and name.endswith(".tmp.onnx"), (step, name)
        assert unchanged, f"model.onnx changed during {step}"
    meta = read_metadata(out)
    assert meta["names"] == ["a", "b"] and meta["input_size"] == SIDE and meta["model_name"] == "yolox-nano"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def _cli_export(out: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [str(Path(sys.executable).with_name("yolox")), "export", "--weights", "yolox_nano.pth", "--model",
           "yolox-nano", "--img-size", "160", "--out", str(out), "--skip-check"]
    return subprocess.Popen(cmd, env=env, cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_sigterm_during_cli_export_keeps_the_previous_model(previous_model: Path, assets_dir: Path,
                                                            tmp_path: Path) -> None:
    """The reported failure: SIGTERM while ``yolox export`` writes over an existing model.onnx. The signal is
    sent once the exporter has written its graph (a non-empty temp file, or the target itself changed), before
    the metadata is added: the old model must still be there, byte-identical and loadable with its metadata."""
    from yolox.inference import OnnxBackend

    before = previous_model.read_bytes()
    out = _existing(tmp_path, "model.onnx", before)
    env = {**os.environ, "YOLOX_ASSETS_DIR": str(assets_dir), "COLUMNS": "200"}
    proc = _cli_export(out, env)
    deadline, writing = time.monotonic() + 240, None
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            temps = [p for p in tmp_path.glob(".model.*.tmp.onnx") if p.is_file() and p.stat().st_size > 0]
            if temps or out.read_bytes() != before:
                writing = temps
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.005)
        output = proc.communicate(timeout=120)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert writing is not None, f"the export ended (exit {proc.returncode}) before writing was seen:\n{output}"
    assert proc.returncode == 143, output
    assert "interrupted by SIGTERM" in output
    _assert_intact(out, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    backend = OnnxBackend(out)
    assert backend.meta is not None and backend.meta.names == ("cat", "dog")


# --- INT8 ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["quantize_static", "onnx.save"])
def test_int8_killed_mid_write_keeps_the_previous_model(writer: str, previous_model: Path, coco128_dir: Path,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime.quantization as ortq

    from yolox.export.quantize import quantize_int8

    images = sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[:2]
    before = b"the previous INT8 model"
    out = _existing(tmp_path, "model.int8.onnx", before)
    exc = Interrupted(signal.SIGTERM)
    if writer == "quantize_static":
        monkeypatch.setattr(ortq, "quantize_static", lambda src, dst, *a, **kw: _interrupting(exc)(src, dst))
    else:
        real = onnx.save

        def save(model: Any, f: Any, *a: Any, **kw: Any) -> None:
            if isinstance(f, (str, os.PathLike)) and Path(f).parent == tmp_path:  # not the quantizer's temps
                _interrupting(exc)(model, f)
            real(model, f, *a, **kw)

        monkeypatch.setattr(onnx, "save", save)
    with pytest.raises(Interrupted):
        quantize_int8(previous_model, out, images, SIDE)
    _assert_intact(out, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.onnx"]


# --- TensorRT (helpers/trt_standin.py, a stand-in for the tensorrt package: only the writing path is under test) --


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    import yolox.export.tensorrt as trt_module

    trt = standin_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_module, "tensorrt_unavailable_reason", lambda: None)
    monkeypatch.setattr(trt_module, "gpu_facts", lambda: dict(FACTS))
    return trt


def test_tensorrt_engine_and_timing_cache_are_written(fake_trt: types.ModuleType, previous_model: Path,
                                                      tmp_path: Path) -> None:
    from yolox.export.tensorrt import build_engine

    engine = _existing(tmp_path, "model.engine", b"old engine")
    cache = tmp_path / "cache" / "timing.cache"
    assert build_engine(previous_model, engine, SIDE, timing_cache=cache) == engine
    assert engine.read_bytes().startswith(MAGIC) and cache.read_bytes() == b"+stand-in timings"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "model.engine", "model.engine.json"]
    assert sorted(p.name for p in cache.parent.iterdir()) == ["timing.cache"]


@pytest.mark.parametrize("killed", ["engine", "timing cache"])
def test_tensorrt_killed_mid_write_keeps_the_previous_files(killed: str, fake_trt: types.ModuleType,
                                                            previous_model: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from yolox.export.tensorrt import build_engine

    engine = _existing(tmp_path, "model.engine", b"the previous engine")
    cache = _existing(tmp_path, "timing.cache", b"the previous timing cache")
    _kill_path_writes(monkeypatch, KeyboardInterrupt(), after=0 if killed == "engine" else 1)
    with pytest.raises(KeyboardInterrupt):
        build_engine(previous_model, engine, SIDE, timing_cache=cache)
    _assert_intact(cache, b"the previous timing cache")
    if killed == "engine":
        _assert_intact(engine, b"the previous engine")
    else:
        assert engine.read_bytes().startswith(MAGIC)  # written whole before the cache
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.engine", "timing.cache"]


# --- evaluation: metrics JSON and figures --------------------------------------------------------------------


def _eval_result():
    from yolox.evaluate.coco_eval import EvalResult

    return EvalResult({"AP50_95": 0.5, "AP50": 0.7}, {"cat": 0.6, "dog": 0.4}, 3, 10, 0.01)


@pytest.mark.parametrize("after", [0, 1], ids=["metrics", "per-class"])
def test_metrics_json_killed_mid_write_keeps_the_previous_files(after: int, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = _existing(tmp_path, "metrics.json", b'{"AP50_95": 0.25}\n')
    per_class = _existing(tmp_path, "metrics_per_class.json", b"[]\n")
    _kill_path_writes(monkeypatch, Interrupted(signal.SIGTERM), after=after)
    with pytest.raises(Interrupted):
        _eval_result().write(metrics)
    _assert_intact(per_class, b"[]\n")
    if after == 0:
        _assert_intact(metrics, b'{"AP50_95": 0.25}\n')
    else:
        assert json.loads(metrics.read_text())["AP50_95"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "metrics_per_class.json"]


def test_metrics_json_written_whole(tmp_path: Path) -> None:
    path, per_class = _eval_result().write(tmp_path / "sub" / "metrics.json")
    assert json.loads(path.read_text()) == {"AP50": 0.7, "AP50_95": 0.5, "num_images": 3, "num_detections": 10}
    assert json.loads(per_class.read_text())[0] == {"class": "cat", "AP50_95": 0.6}
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json", "metrics_per_class.json"]


def _figure():
    from yolox.evaluate.plots import per_class_ap

    return per_class_ap({"cat": 0.6, "dog": 0.4})


def test_figure_killed_mid_save_keeps_the_previous_png(tmp_path: Path) -> None:
    from yolox.evaluate.plots import save_figures

    before = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    png = _existing(tmp_path, "per_class_ap.png", before)
    fig = _figure()
    fig.savefig = lambda target, **kw: _interrupting(KeyboardInterrupt())(fig, target)
    with pytest.raises(KeyboardInterrupt):
        save_figures({"plots/per_class_ap.png": fig}, tmp_path)
    _assert_intact(png, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["per_class_ap.png"]


def test_figures_saved_in_the_format_of_their_name(tmp_path: Path) -> None:
    from yolox.evaluate.plots import save_figures

    paths = save_figures({"plots/a.png": _figure(), "plots/b": _figure(), "plots/c.pdf": _figure()}, tmp_path)
    assert [p.name for p in paths] == ["a.png", "b", "c.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[2].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b", "c.pdf"]


# --- augmentation preview, training history, launch params ---------------------------------------------------


def test_augment_preview_killed_mid_write_keeps_the_previous_png(coco128_dataset: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from yolox.config import AugmentParams
    from yolox.data.dataset import augment_preview

    before = cv2.imencode(".png", np.full((8, 8, 3), 7, np.uint8))[1].tobytes()
    out = _existing(tmp_path, "preview.png", before)
    _kill_path_writes(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        augment_preview(coco128_dataset, AugmentParams(), "yolox-nano", 128, n=2, out_path=out)
    _assert_intact(out, before)
    monkeypatch.undo()
    assert augment_preview(coco128_dataset, AugmentParams(), "yolox-nano", 128, n=2, out_path=out) == out
    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape == (128, 2 * 128 + 4, 3)
    with pytest.raises(DataError, match="preview.unknown: check the folder and the suffix"):
        augment_preview(coco128_dataset, AugmentParams(), "yolox-nano", 128, n=1, out_path=tmp_path / "preview.unknown")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preview.png"]


def test_history_csv_killed_mid_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    from yolox.train.trainer import write_history_csv

    history = [{"epoch": 1.0, "loss": 3.5}, {"epoch": 2.0, "loss": 3.0, "AP50_95": 0.1}]
    csv_path = tmp_path / "history.csv"
    write_history_csv(history[:1], csv_path)
    before = csv_path.read_bytes()
    assert before == b"epoch,loss\r\n1.0,3.5\r\n"
    _kill_path_writes(monkeypatch, Interrupted(signal.SIGTERM))
    with pytest.raises(Interrupted):
        write_history_csv(history, csv_path)
    _assert_intact(csv_path, before)
    monkeypatch.undo()
    write_history_csv(history, csv_path)
    assert csv_path.read_bytes() == b"epoch,loss,AP50_95\r\n1.0,3.5,\r\n2.0,3.0,0.1\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]


def test_launch_params_killed_mid_write_keep_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    import yaml

    from yolox.config import PipelineParams
    from yolox.train.launch import write_launch_params

    params = PipelineParams()
    path = write_launch_params(params, tmp_path)
    before = path.read_bytes()
    assert yaml.safe_load(before) == params.model_dump(mode="json")
    _kill_path_writes(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        write_launch_params(params, tmp_path)
    _assert_intact(path, before)
    assert sorted(p.name for p in path.parent.iterdir()) == ["params.yaml"]


# --- assets: downloads, the coco128 dataset.yaml, fetch_dataset ----------------------------------------------


class _Response(io.RawIOBase):
    """A download body: ``chunks`` then ``end`` raised (a dropped connection, or Ctrl-C)."""

    def __init__(self, chunks: list[bytes], end: BaseException | None) -> None:
        self.chunks, self.end = list(chunks), end

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if not self.chunks:
            if self.end is not None:
                raise self.end
            return 0
        data = self.chunks.pop(0)
        buf[: len(data)] = data
        return len(data)


@pytest.mark.parametrize("end", [KeyboardInterrupt(), urllib.error.URLError("connection reset")],
                         ids=["ctrl-c", "dropped"])
def test_download_cut_short_leaves_no_partial_file(end: BaseException, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from yolox import assets

    dest = tmp_path / "weights" / "yolox_nano.pth"
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _Response([b"x" * 1000] * 3, end))
    with pytest.raises(AssetError if isinstance(end, Exception) else KeyboardInterrupt):
        assets._download("https://example.invalid/yolox_nano.pth", dest, "weights yolox_nano.pth")
    assert list(dest.parent.iterdir()) == []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _Response([b"x" * 1000] * 3, None))
    assets._download("https://example.invalid/yolox_nano.pth", dest, "weights yolox_nano.pth")
    assert dest.read_bytes() == b"x" * 3000 and list(dest.parent.iterdir()) == [dest]


def test_coco128_cache_appears_only_with_its_dataset_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The released coco128 zip has no dataset.yaml: the cached folder must not appear without one."""
    from yolox import assets

    def fake_download(url: str, dest: Path, what: str) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest, "w") as zf:
            zf.writestr("coco128/images/train2017/a.jpg", b"jpeg")

    monkeypatch.setenv("YOLOX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("YOLOX_ASSETS_DIR")
    monkeypatch.setattr(assets, "_download", fake_download)
    monkeypatch.setattr(assets, "write_text", lambda path, text: _interrupting(KeyboardInterrupt())(text, path))
    with pytest.raises(KeyboardInterrupt):
        assets.resolve_dataset("coco128")
    data = tmp_path / "cache" / "data"
    assert not (data / "coco128").exists()
    assert sorted(p.name for p in data.iterdir()) == ["coco128.zip"]
    monkeypatch.undo()
    monkeypatch.setenv("YOLOX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("YOLOX_ASSETS_DIR")
    monkeypatch.setattr(assets, "_download", fake_download)
    root = assets.resolve_dataset("coco128")
    assert root == data / "coco128" and "names:\n  0: person" in (root / "dataset.yaml").read_text()
    assert sorted(p.name for p in data.iterdir()) == ["coco128"]


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fetch_dataset_interrupted_keeps_the_previous_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    import shutil

    from yolox.assets import fetch_dataset

    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    for k in range(3):
        (src / "images" / f"{k}.jpg").write_bytes(bytes([k]) * 100)
    out = tmp_path / "data"
    (out / "images").mkdir(parents=True)
    (out / "images" / "old.jpg").write_bytes(b"old")
    before = _tree(out)
    real = shutil.copyfile
    copied = {"n": 0}

    def copyfile(a: Any, b: Any, **kw: Any) -> Any:
        copied["n"] += 1
        if copied["n"] == 2:
            Path(b).write_bytes(PARTIAL)
            raise Interrupted(signal.SIGTERM)
        return real(a, b, **kw)

    monkeypatch.setattr(shutil, "copyfile", copyfile)
    with pytest.raises(Interrupted):
        fetch_dataset(str(src), out)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]
    monkeypatch.undo()
    assert fetch_dataset(str(src), out) == out
    assert _tree(out) == _tree(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]
