"""The model table: every YOLOX model this project builds, its architecture multiples, input size and the
authors' release checkpoint (REFERENCE.md, 'Model family'). The one owner of model names: the params schema
(:data:`ModelName`), the factory (:func:`yolox.models.build.build_model`) and the weights resolver
(:data:`yolox.assets.WEIGHTS`) all read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from yolox.errors import ConfigError

STRIDES: tuple[int, ...] = (8, 16, 32)
"""The head's output strides (pixels per cell), one per FPN level, in prediction order."""


@dataclass(frozen=True)
class ModelSpec:
    """One row of the model table. ``depth``/``width`` multiples of the base network; ``input_size`` pixels (the
    authors' test size); ``depthwise`` depthwise-separable convolutions (nano); ``weights`` the authors' release
    checkpoint file; ``params_m`` / ``coco_ap`` the authors' figures (millions of parameters, COCO val AP %)."""

    name: str
    depth: float
    width: float
    input_size: int
    depthwise: bool
    weights: str
    params_m: float
    coco_ap: float


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in [
        ModelSpec("yolox-nano", 0.33, 0.25, 416, True, "yolox_nano.pth", 0.91, 25.8),
        ModelSpec("yolox-tiny", 0.33, 0.375, 416, False, "yolox_tiny.pth", 5.06, 32.8),
        ModelSpec("yolox-s", 0.33, 0.50, 640, False, "yolox_s.pth", 9.0, 40.5),
        ModelSpec("yolox-m", 0.67, 0.75, 640, False, "yolox_m.pth", 25.3, 46.9),
        ModelSpec("yolox-l", 1.0, 1.0, 640, False, "yolox_l.pth", 54.2, 49.7),
        ModelSpec("yolox-x", 1.33, 1.25, 640, False, "yolox_x.pth", 99.1, 51.1),
        ModelSpec("yolox-darknet53", 1.0, 1.0, 640, False, "yolox_darknet.pth", 63.7, 47.7),
    ]
}

MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
ModelName = Literal[MODEL_NAMES]  # type: ignore[valid-type]  # the params schema's choices, from the table
"""The model names a params file may give (``model.name``)."""


def model_spec(name: str) -> ModelSpec:
    """The table row of ``name``. Raises ConfigError listing the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r} (allowed: {', '.join(MODELS)})") from None
