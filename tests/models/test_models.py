"""The YOLOX model family, loading checkpoints, and parity with the authors' released ONNX model."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yolox.errors import CheckpointError, ConfigError
from yolox.models import checkpoint as checkpoint_module
from yolox.models.build import build_model
from yolox.models.checkpoint import load_weights, read_state_dict
from yolox.models.head import PRIOR_PROB
from yolox.models.table import MODELS, STRIDES, model_spec
from yolox.models.yolox import InferenceModel
from yolox.ops.decode import anchor_points
from yolox.ops.letterbox import letterbox, to_input_tensor

NANO_TENSORS = 642  # entries of the authors' yolox_nano.pth (README of the weights)
PARITY_IMAGES = 32
PARITY_LIMIT = 1e-3


def _num_anchors(size: int) -> int:
    return sum((size // s) ** 2 for s in (8, 16, 32))


@pytest.fixture
def flush_denormals():
    """Randomly initialised networks in eval mode (BN statistics 0/1) produce denormal activations on
    synthetic inputs, which makes CPU convolutions ~100x slower; shapes do not depend on it."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


# ------------------------------------------------------------------------------------ the family


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_count_matches_authors_table(name: str) -> None:
    model = build_model(name)
    count_m = sum(p.numel() for p in model.parameters()) / 1e6
    expected = MODELS[name].params_m
    assert abs(count_m - expected) / expected <= 0.01, f"{name}: {count_m:.3f} M vs authors' {expected} M"


@pytest.mark.parametrize("name", [n for n in MODELS if n != "yolox-nano"])
def test_output_shape_small_input(name: str, flush_denormals: None) -> None:
    model = build_model(name).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 64, 64) * 255)
    assert out.shape == (2, _num_anchors(64), 85) == (2, 84, 85)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize(("size", "anchors"), [(416, 3549), (640, 8400)])
def test_nano_output_shape(size: int, anchors: int, flush_denormals: None) -> None:
    model = build_model("yolox-nano").eval()
    with torch.inference_mode():
        out = model(torch.full((1, 3, size, size), 114.0))
    assert out.shape == (1, anchors, 85)
    assert anchors == _num_anchors(size)
    assert anchor_points((size, size), STRIDES)[0].shape == (anchors, 2)


def test_fresh_head_biases_use_the_prior() -> None:
    model = build_model("yolox-nano", num_classes=7)
    bias = -np.log((1 - PRIOR_PROB) / PRIOR_PROB)
    for conv in [*model.head.cls_preds, *model.head.obj_preds]:
        assert torch.allclose(conv.bias, torch.full_like(conv.bias, bias))
    assert model.num_classes == 7 and model.head.cls_preds[0].out_channels == 7


def test_unknown_model_and_bad_class_count() -> None:
    with pytest.raises(ConfigError, match="yolox-huge"):
        model_spec("yolox-huge")
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("yolox-nano", num_classes=0)


# ------------------------------------------------------------------------------------ checkpoints


def test_nano_weights_load_strict(nano_pth: Path) -> None:
    state = read_state_dict(nano_pth)
    assert len(state) == NANO_TENSORS
    model = build_model("yolox-nano")
    report = load_weights(model, nano_pth)
    assert (report.loaded, report.total, report.reinitialised) == (NANO_TENSORS, NANO_TENSORS, [])
    # the same dict loads into the model under strict=True: every name and shape fits
    model.load_state_dict(state, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_other_class_count_reinitialises_class_predictors(nano_pth: Path) -> None:
    state = read_state_dict(nano_pth)
    model = build_model("yolox-nano", num_classes=3)
    report = load_weights(model, nano_pth)
    expected = sorted(f"head.cls_preds.{i}.{p}" for i in range(3) for p in ("weight", "bias"))
    assert sorted(report.reinitialised) == expected
    assert report.total == NANO_TENSORS and report.loaded == NANO_TENSORS - 6
    assert "re-initialised (6 tensors" in str(report)
    own = model.state_dict()
    for k, v in state.items():
        if k in expected:
            assert own[k].shape[0] == 3  # the model's fresh predictor, not the checkpoint's 80-class one
        else:
            assert torch.equal(own[k], v), k
    bias = -np.log((1 - PRIOR_PROB) / PRIOR_PROB)
    assert torch.allclose(own["head.cls_preds.0.bias"], torch.full((3,), bias))


def test_nano_weights_into_yolox_s_is_a_shape_mismatch(nano_pth: Path) -> None:
    with pytest.raises(CheckpointError, match="shape mismatch") as err:
        load_weights(build_model("yolox-s"), nano_pth)
    assert str(nano_pth) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(build_model("yolox-nano"), tmp_path / "nope.pth")


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a valid checkpoint"):
        read_state_dict(path)


def test_no_state_dict_inside(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="no state dict"):
        read_state_dict(path)


MARKER: list[str] = []


def _side_effect(tag: str) -> str:
    """Called by unpickling a :class:`_Payload` with ``weights_only=False``."""
    MARKER.append(tag)
    return tag


class _Payload:
    """An arbitrary object: unpickled it calls :func:`_side_effect` (weights_only refuses it)."""

    def __reduce__(self) -> tuple:
        return (_side_effect, ("unpickled",))


def test_checkpoint_read_with_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "payload.pth"
    # a valid state dict plus an arbitrary object: a full unpickler would accept it (and run the payload)
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload()}, path)
    MARKER.clear()
    assert torch.load(path, weights_only=False)["model"]["w"].shape == (2,)
    assert MARKER == ["unpickled"]  # the file really is loadable without weights_only

    MARKER.clear()
    with pytest.raises(CheckpointError, match="not a safe checkpoint") as err:
        read_state_dict(path)
    assert "weights_only" not in str(err.value)
    assert MARKER == []  # the payload never ran

    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "load", spy)
    good = tmp_path / "good.pth"
    torch.save({"model": {"w": torch.ones(1)}}, good)
    assert read_state_dict(good)["w"].item() == 1.0
    assert seen.get("weights_only") is True


# ------------------------------------------------------------------------------------ ONNX parity


@pytest.fixture(scope="module")
def letterboxed_32(coco128_dir: Path) -> torch.Tensor:
    """32 real coco128 images letterboxed at 416: (32, 3, 416, 416) float32 BGR 0-255."""
    paths = sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[:PARITY_IMAGES]
    assert len(paths) == PARITY_IMAGES
    return to_input_tensor([letterbox(cv2.imread(str(p)), 416)[0] for p in paths])


def test_raw_output_parity_with_released_onnx(letterboxed_32: torch.Tensor, nano_pth: Path,
                                             nano_onnx: Path) -> None:
    import onnxruntime as ort

    model = build_model("yolox-nano")
    load_weights(model, nano_pth)
    with torch.inference_mode():
        ours = InferenceModel(model).eval()(letterboxed_32).numpy()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(str(nano_onnx), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    theirs = np.concatenate([session.run(None, {name: letterboxed_32[i:i + 1].numpy()})[0]
                             for i in range(PARITY_IMAGES)])
    assert ours.shape == theirs.shape == (PARITY_IMAGES, 3549, 85)
    diff = float(np.abs(ours - theirs).max())
    print(f"\nmax |InferenceModel - released ONNX| over {PARITY_IMAGES} coco128 images at 416: {diff:.3g}")
    assert diff <= PARITY_LIMIT
    # not vacuous: the model is confident somewhere on real images
    assert (theirs[..., 4] * theirs[..., 5:].max(-1)).max() > 0.5
