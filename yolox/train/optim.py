"""SGD with the authors' parameter groups."""

from __future__ import annotations

import torch
from torch import nn


def build_optimizer(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4
                    ) -> torch.optim.SGD:
    """Nesterov SGD (multi-tensor ``foreach`` updates); weight decay on conv/linear weights only, none on
    BatchNorm weights or biases.

    Groups (as the authors'): 0 = BatchNorm weights, 1 = conv/linear weights (decayed), 2 = biases.
    Frozen parameters (``requires_grad=False``) are left out.
    """
    bn_weights, weights, biases = [], [], []
    for name, module in model.named_modules():
        bias, weight = getattr(module, "bias", None), getattr(module, "weight", None)
        if isinstance(bias, nn.Parameter) and bias.requires_grad:
            biases.append(bias)
        if not (isinstance(weight, nn.Parameter) and weight.requires_grad):
            continue
        if isinstance(module, nn.BatchNorm2d) or "bn" in name.split(".")[-1:]:
            bn_weights.append(weight)
        else:
            weights.append(weight)
    # foreach: one multi-tensor kernel per update term instead of a Python loop over ~200 tensors
    # (the same element-wise operations in the same order: bit-identical updates)
    opt = torch.optim.SGD(bn_weights, lr=lr, momentum=momentum, nesterov=True, foreach=True)
    opt.add_param_group({"params": weights, "weight_decay": weight_decay})
    opt.add_param_group({"params": biases})
    return opt
