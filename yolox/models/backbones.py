"""Backbones and necks: CSPDarknet + PAFPN (nano..x) and Darknet-53 + FPN (yolox-darknet53).

Each neck returns three feature maps at strides 8, 16, 32: ``(P3, P4, P5)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolox.models.blocks import BaseConv, CSPLayer, Focus, ResLayer, SPPBottleneck, conv_type


class CSPDarknet(nn.Module):
    """CSPDarknet (REFERENCE.md): Focus stem, dark2..dark5; returns dark3, dark4, dark5.

    Channels 256, 512, 1024 times ``wid_mul``; bottlenecks n = max(round(3 * dep_mul), 1) in dark2 and
    dark5, 3n in dark3 and dark4; dark5 has SPP before a CSP layer without shortcut.
    """

    def __init__(self, dep_mul: float, wid_mul: float, depthwise: bool = False, act: str = "silu") -> None:
        super().__init__()
        Conv = conv_type(depthwise)
        base = int(wid_mul * 64)
        n = max(round(dep_mul * 3), 1)
        self.stem = Focus(3, base, ksize=3, act=act)
        self.dark2 = nn.Sequential(Conv(base, base * 2, 3, 2, act=act),
                                   CSPLayer(base * 2, base * 2, n, depthwise=depthwise, act=act))
        self.dark3 = nn.Sequential(Conv(base * 2, base * 4, 3, 2, act=act),
                                   CSPLayer(base * 4, base * 4, n * 3, depthwise=depthwise, act=act))
        self.dark4 = nn.Sequential(Conv(base * 4, base * 8, 3, 2, act=act),
                                   CSPLayer(base * 8, base * 8, n * 3, depthwise=depthwise, act=act))
        self.dark5 = nn.Sequential(Conv(base * 8, base * 16, 3, 2, act=act),
                                   SPPBottleneck(base * 16, base * 16, activation=act),
                                   CSPLayer(base * 16, base * 16, n, shortcut=False, depthwise=depthwise, act=act))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.dark2(self.stem(x))
        c3 = self.dark3(x)
        c4 = self.dark4(c3)
        c5 = self.dark5(c4)
        return c3, c4, c5


class YOLOPAFPN(nn.Module):
    """CSPDarknet + PAFPN neck (top-down then bottom-up). Input (B, 3, H, W); outputs (P3, P4, P5) with
    256, 512, 1024 channels times ``width`` at strides 8, 16, 32.
    """

    def __init__(self, depth: float, width: float, in_channels: tuple[int, int, int] = (256, 512, 1024),
                 depthwise: bool = False, act: str = "silu") -> None:
        super().__init__()
        self.backbone = CSPDarknet(depth, width, depthwise=depthwise, act=act)
        Conv = conv_type(depthwise)
        c3, c4, c5 = (int(c * width) for c in in_channels)
        n = round(3 * depth)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = BaseConv(c5, c4, 1, 1, act=act)
        self.C3_p4 = CSPLayer(2 * c4, c4, n, False, depthwise=depthwise, act=act)
        self.reduce_conv1 = BaseConv(c4, c3, 1, 1, act=act)
        self.C3_p3 = CSPLayer(2 * c3, c3, n, False, depthwise=depthwise, act=act)
        self.bu_conv2 = Conv(c3, c3, 3, 2, act=act)
        self.C3_n3 = CSPLayer(2 * c3, c4, n, False, depthwise=depthwise, act=act)
        self.bu_conv1 = Conv(c4, c4, 3, 2, act=act)
        self.C3_n4 = CSPLayer(2 * c4, c5, n, False, depthwise=depthwise, act=act)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x2, x1, x0 = self.backbone(x)
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.C3_p4(torch.cat([self.upsample(fpn_out0), x1], 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([self.upsample(fpn_out1), x2], 1))
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        return pan_out2, pan_out1, pan_out0


class Darknet(nn.Module):
    """Darknet-53 (YOLOv3) with an SPP block in dark5; returns dark3, dark4, dark5 (256, 512, 512 channels)."""

    depth2blocks: ClassVar[dict[int, list[int]]] = {21: [1, 2, 2, 1], 53: [2, 8, 8, 4]}

    def __init__(self, depth: int = 53, stem_out_channels: int = 32) -> None:
        super().__init__()
        blocks = self.depth2blocks[depth]
        self.stem = nn.Sequential(BaseConv(3, stem_out_channels, 3, 1, act="lrelu"),
                                  *self._group(stem_out_channels, 1, stride=2))
        c = stem_out_channels * 2
        self.dark2 = nn.Sequential(*self._group(c, blocks[0], stride=2))
        self.dark3 = nn.Sequential(*self._group(c * 2, blocks[1], stride=2))
        self.dark4 = nn.Sequential(*self._group(c * 4, blocks[2], stride=2))
        c5 = c * 8
        self.dark5 = nn.Sequential(
            *self._group(c5, blocks[3], stride=2),
            BaseConv(c5 * 2, c5, 1, 1, act="lrelu"),
            BaseConv(c5, c5 * 2, 3, 1, act="lrelu"),
            SPPBottleneck(c5 * 2, c5, activation="lrelu"),
            BaseConv(c5, c5 * 2, 3, 1, act="lrelu"),
            BaseConv(c5 * 2, c5, 1, 1, act="lrelu"),
        )

    @staticmethod
    def _group(in_channels: int, num_blocks: int, stride: int) -> list[nn.Module]:
        return [BaseConv(in_channels, in_channels * 2, 3, stride, act="lrelu"),
                *[ResLayer(in_channels * 2) for _ in range(num_blocks)]]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.dark2(self.stem(x))
        c3 = self.dark3(x)
        c4 = self.dark4(c3)
        return c3, c4, self.dark5(c4)


class YOLOFPN(nn.Module):
    """Darknet-53 + YOLOv3 FPN neck; outputs (P3, P4, P5) with 128, 256, 512 channels."""

    def __init__(self, depth: int = 53) -> None:
        super().__init__()
        self.backbone = Darknet(depth)
        self.out1_cbl = BaseConv(512, 256, 1, 1, act="lrelu")
        self.out1 = self._embedding((256, 512), 512 + 256)
        self.out2_cbl = BaseConv(256, 128, 1, 1, act="lrelu")
        self.out2 = self._embedding((128, 256), 256 + 128)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    @staticmethod
    def _embedding(filters: tuple[int, int], in_filters: int) -> nn.Sequential:
        a, b = filters
        return nn.Sequential(BaseConv(in_filters, a, 1, act="lrelu"), BaseConv(a, b, 3, act="lrelu"),
                             BaseConv(b, a, 1, act="lrelu"), BaseConv(a, b, 3, act="lrelu"),
                             BaseConv(b, a, 1, act="lrelu"))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x2, x1, x0 = self.backbone(x)
        out_dark4 = self.out1(torch.cat([self.upsample(self.out1_cbl(x0)), x1], 1))
        out_dark3 = self.out2(torch.cat([self.upsample(self.out2_cbl(out_dark4)), x2], 1))
        return out_dark3, out_dark4, x0
