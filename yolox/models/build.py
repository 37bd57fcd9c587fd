"""The one factory that builds a YOLOX model from its row of the model table (:mod:`yolox.models.table`)."""

from __future__ import annotations

from torch import nn

from yolox.errors import ConfigError
from yolox.models.backbones import YOLOFPN, YOLOPAFPN
from yolox.models.head import YOLOXHead
from yolox.models.table import model_spec
from yolox.models.yolox import YOLOX


def build_model(name: str, num_classes: int = 80) -> YOLOX:
    """Build a YOLOX variant with freshly initialised weights (BN eps 1e-3, momentum 0.03; head biases
    from the 0.01 prior).

    Raises:
        ConfigError: unknown name or num_classes < 1.
    """
    v = model_spec(name)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1 (got {num_classes})")
    if name == "yolox-darknet53":
        backbone: nn.Module = YOLOFPN(depth=53)
        head = YOLOXHead(num_classes, 1.0, in_channels=(128, 256, 512))
    else:
        backbone = YOLOPAFPN(v.depth, v.width, depthwise=v.depthwise)
        head = YOLOXHead(num_classes, v.width, depthwise=v.depthwise)
    return YOLOX(backbone, head)
