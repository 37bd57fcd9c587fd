"""Exponential moving average of model weights (the authors' ``ModelEMA``)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel, or the model itself."""
    return model.module if hasattr(model, "module") else model


class ModelEMA:
    """EMA of every floating-point tensor of the state dict (weights and BatchNorm statistics).

    decay(updates) = ``decay * (1 - exp(-updates / 2000))`` (REFERENCE.md), so early updates follow the
    model closely. ``ema`` is a separate copy kept in eval mode.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, updates: int = 0) -> None:
        self.ema = copy.deepcopy(unwrap(model)).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay_base = decay
        self.updates = updates

    def decay(self, updates: int) -> float:
        return self.decay_base * (1 - math.exp(-updates / 2000))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``ema = d * ema + (1 - d) * model`` for every floating-point tensor (one fused foreach pass)."""
        self.updates += 1
        d = self.decay(self.updates)
        model_state = unwrap(model).state_dict()
        pairs = [(v, model_state[k].detach()) for k, v in self.ema.state_dict().items() if v.dtype.is_floating_point]
        if not pairs:
            return
        ema_tensors, model_tensors = (list(t) for t in zip(*pairs))
        if any(m.dtype != e.dtype or m.device != e.device for e, m in pairs):
            model_tensors = [m.to(e.device, e.dtype) for e, m in pairs]
        torch._foreach_mul_(ema_tensors, d)
        torch._foreach_add_(ema_tensors, model_tensors, alpha=1.0 - d)
