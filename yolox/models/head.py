"""The decoupled YOLOX head and the anchor points (grid cells) its predictions sit on."""

from __future__ import annotations

import math

import torch
from torch import nn

from yolox.models.blocks import BaseConv, conv_type
from yolox.models.table import STRIDES

PRIOR_PROB = 0.01  # class and objectness biases start at -log((1 - p) / p) (REFERENCE.md)


class YOLOXHead(nn.Module):
    """Decoupled head, one branch per level: 1x1 stem; cls: two 3x3 convs + 1x1 to C;
    reg: two 3x3 convs + 1x1 to 4 (box) and 1x1 to 1 (objectness).

    ``forward`` takes (P3, P4, P5) and returns raw predictions (B, A, 5 + C), float32, levels in stride
    order and row-major within a level: ``[x, y, log w, log h]`` offsets in grid cells (not decoded),
    objectness logit, class logits. A = sum over levels of (H/s * W/s), e.g. 3549 at 416.
    """

    def __init__(self, num_classes: int, width: float = 1.0, strides: tuple[int, ...] = STRIDES,
                 in_channels: tuple[int, ...] = (256, 512, 1024), depthwise: bool = False,
                 act: str = "silu") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = tuple(strides)
        Conv = conv_type(depthwise)
        hidden = int(256 * width)
        self.stems = nn.ModuleList()
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.cls_preds = nn.ModuleList()
        self.reg_preds = nn.ModuleList()
        self.obj_preds = nn.ModuleList()
        for c in in_channels:
            self.stems.append(BaseConv(int(c * width), hidden, 1, 1, act=act))
            self.cls_convs.append(nn.Sequential(Conv(hidden, hidden, 3, 1, act=act), Conv(hidden, hidden, 3, 1, act=act)))
            self.reg_convs.append(nn.Sequential(Conv(hidden, hidden, 3, 1, act=act), Conv(hidden, hidden, 3, 1, act=act)))
            self.cls_preds.append(nn.Conv2d(hidden, num_classes, 1, 1, 0))
            self.reg_preds.append(nn.Conv2d(hidden, 4, 1, 1, 0))
            self.obj_preds.append(nn.Conv2d(hidden, 1, 1, 1, 0))
        self.initialize_biases()

    def initialize_biases(self, prior_prob: float = PRIOR_PROB) -> None:
        """Set class and objectness biases to -log((1 - p) / p)."""
        bias = -math.log((1 - prior_prob) / prior_prob)
        for conv in [*self.cls_preds, *self.obj_preds]:
            nn.init.constant_(conv.bias, bias)

    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        outputs = []
        for k, x in enumerate(features):
            x = self.stems[k](x)
            cls_out = self.cls_preds[k](self.cls_convs[k](x))
            reg_feat = self.reg_convs[k](x)
            out = torch.cat([self.reg_preds[k](reg_feat), self.obj_preds[k](reg_feat), cls_out], 1)
            outputs.append(out.flatten(start_dim=2))
        return torch.cat(outputs, dim=2).permute(0, 2, 1)

