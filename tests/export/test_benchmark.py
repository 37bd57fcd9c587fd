"""``yolox benchmark``'s model arguments (issue 24): ``--reference NAME`` resolves as ``--weights`` does (a
released checkpoint's name, from the asset mirror); a missing or unloadable model argument fails in seconds,
before anything is read, exported or measured."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers.cli_runner import BIN, run_timed, yolox_env

from yolox.config import PipelineParams
from yolox.errors import AssetError, CheckpointError, ConfigError

BENCH = {"export": {"benchmark_warmup": 0, "benchmark_repeats": 2, "benchmark_batch": 1}}


def test_benchmark_reference_by_name_resolves_as_weights_do(nano_onnx: Path, coco128_dir: Path,
                                                            assets_dir: Path) -> None:
    from yolox.export.benchmark import run_benchmark

    params = PipelineParams.model_validate(BENCH)
    result = run_benchmark(params, str(nano_onnx), str(coco128_dir), "train", "yolox-nano",
                           reference="yolox_nano.pth", max_images=2)
    mirror = assets_dir / "weights" / "yolox_nano.pth"
    assert [(r.format, r.status, r.path) for r in result.rows] == [
        ("onnx-raw", "ok", str(nano_onnx)), ("reference", "ok", str(mirror))]
    raw, ref = result.rows
    assert abs(raw.AP50_95 - ref.AP50_95) <= 0.002 and ref.p50_ratio == 1.0   # one network, two runtimes


def test_benchmark_reference_onnx_by_name(nano_onnx: Path, coco128_dir: Path, assets_dir: Path) -> None:
    """The README's ``--reference yolox_nano.onnx``, resolved by name as ``--weights`` is."""
    from yolox.export.benchmark import run_benchmark

    result = run_benchmark(PipelineParams.model_validate(BENCH), str(nano_onnx), str(coco128_dir), "train",
                           "yolox-nano", reference="yolox_nano.onnx", max_images=2)
    assert result.rows[-1].path == str(assets_dir / "weights" / "yolox_nano.onnx")


@pytest.fixture()
def nothing_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if the benchmark reads the dataset, exports or measures anything."""
    import yolox.export.benchmark as bench

    def forbidden(what: str):
        def call(*args, **kwargs):
            raise AssertionError(f"{what} ran before the model arguments were checked")
        return call

    monkeypatch.setattr(bench, "load_dataset", forbidden("load_dataset"))
    monkeypatch.setattr(bench, "_candidates", forbidden("the export of the candidates"))
    monkeypatch.setattr(bench, "_accuracy", forbidden("an AP measurement"))
    monkeypatch.setattr(bench, "_timings", forbidden("a latency measurement"))


def _unknown(option: str, name: str) -> str:
    from yolox.assets import WEIGHTS

    return (f"{option} {name}: weights '{name}': no such file, and not a released checkpoint name (known: "
            f"{', '.join(sorted(WEIGHTS))})")


def test_benchmark_model_arguments_checked_first(tmp_path: Path, nano_pth: Path, nothing_measured: None
                                                 ) -> None:
    from yolox.export.benchmark import run_benchmark

    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("not a model")
    labels = tmp_path / "labels.txt"
    labels.write_text("person\n")
    cases = [
        (str(nano_pth), "missing.onnx", AssetError, _unknown("--reference", "missing.onnx")),
        (str(nano_pth), str(garbage), CheckpointError, f"--reference: {garbage}: not a loadable ONNX model"),
        (str(nano_pth), str(labels), ConfigError,
         (f"--reference {labels}: not a .pth checkpoint or an .onnx model (a registered version is "
          "models:/NAME/VERSION or models:/NAME@ALIAS)")),
        ("missing.pth", None, AssetError, _unknown("--weights", "missing.pth")),
    ]
    params = PipelineParams.model_validate(BENCH)
    for weights, reference, kind, message in cases:
        t0 = time.monotonic()
        with pytest.raises(kind) as err:
            run_benchmark(params, weights, "coco128", "val", "yolox-nano", reference=reference)
        assert str(err.value).startswith(message), str(err.value)
        assert time.monotonic() - t0 < 5


def test_benchmark_cli_fails_in_seconds_on_a_missing_reference(tmp_path: Path) -> None:
    cmd = [str(BIN / "yolox"), "benchmark", "--weights", "yolox_nano.pth", "--model", "yolox-nano", "--data",
           "coco128", "--reference", "missing.onnx"]
    proc, seconds = run_timed(cmd, tmp_path, yolox_env(tmp_path))
    assert (proc.returncode, proc.stdout, proc.stderr.splitlines()) == \
        (1, "", [f"error: {_unknown('--reference', 'missing.onnx')}"])
    assert seconds < 5, f"took {seconds:.1f} s"
