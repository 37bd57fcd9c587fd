"""The YOLOX detector: a neck (backbone + FPN) and a decoupled head."""

from __future__ import annotations

import torch
from torch import nn


class YOLOX(nn.Module):
    """``forward(images)`` -> raw predictions (B, A, 5 + C), float32 (see :class:`YOLOXHead`).

    Args:
        backbone: returns (P3, P4, P5). Named ``backbone`` as in the authors' checkpoints.
        head: :class:`~yolox.models.head.YOLOXHead`.
    Input: (B, 3, H, W) float32, BGR 0-255 (no normalisation), H and W multiples of 32.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def strides(self) -> tuple[int, ...]:
        return self.head.strides

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


class InferenceModel(nn.Module):
    """Wraps YOLOX for inference/export: outputs (B, A, 5 + C) = ``[x, y, log w, log h]`` raw offsets,
    sigmoid(objectness), sigmoid(class logits) - the layout of the authors' released ONNX model.
    Decoding to pixels is done by :func:`yolox.ops.decode.decode_outputs`, shared by every backend.
    """

    def __init__(self, model: YOLOX) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raw = self.model(images)
        return torch.cat([raw[..., :4], raw[..., 4:].sigmoid()], dim=-1)
