"""The table of YOLOX variants and the one factory that builds them (REFERENCE.md, 'Model family')."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from yolox.errors import ConfigError
from yolox.models.backbones import YOLOFPN, YOLOPAFPN
from yolox.models.head import YOLOXHead
from yolox.models.yolox import YOLOX


@dataclass(frozen=True)
class Variant:
    """One row of the model table. ``depth``/``width`` multiples; ``input_size`` pixels; ``weights`` the
    authors' release file; ``params_m`` / ``coco_ap`` the authors' figures (millions, COCO val AP %)."""

    name: str
    depth: float
    width: float
    input_size: int
    depthwise: bool
    weights: str
    params_m: float
    coco_ap: float


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("yolox-nano", 0.33, 0.25, 416, True, "yolox_nano.pth", 0.91, 25.8),
        Variant("yolox-tiny", 0.33, 0.375, 416, False, "yolox_tiny.pth", 5.06, 32.8),
        Variant("yolox-s", 0.33, 0.50, 640, False, "yolox_s.pth", 9.0, 40.5),
        Variant("yolox-m", 0.67, 0.75, 640, False, "yolox_m.pth", 25.3, 46.9),
        Variant("yolox-l", 1.0, 1.0, 640, False, "yolox_l.pth", 54.2, 49.7),
        Variant("yolox-x", 1.33, 1.25, 640, False, "yolox_x.pth", 99.1, 51.1),
        Variant("yolox-darknet53", 1.0, 1.0, 640, False, "yolox_darknet.pth", 63.7, 47.7),
    ]
}


def get_variant(name: str) -> Variant:
    """The table row of ``name``. Raises ConfigError listing the known names."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r} (allowed: {', '.join(VARIANTS)})") from None


def build_model(name: str, num_classes: int = 80) -> YOLOX:
    """Build a YOLOX variant with freshly initialised weights (BN eps 1e-3, momentum 0.03; head biases
    from the 0.01 prior).

    Raises:
        ConfigError: unknown name or num_classes < 1.
    """
    v = get_variant(name)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1 (got {num_classes})")
    if name == "yolox-darknet53":
        backbone: nn.Module = YOLOFPN(depth=53)
        head = YOLOXHead(num_classes, 1.0, in_channels=(128, 256, 512))
    else:
        backbone = YOLOPAFPN(v.depth, v.width, depthwise=v.depthwise)
        head = YOLOXHead(num_classes, v.width, depthwise=v.depthwise)
    return YOLOX(backbone, head)
