"""Warm-up cosine learning-rate schedule with a constant tail (the authors' ``yoloxwarmcos``)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosineSchedule:
    """lr as a function of the iteration: the number of optimizer steps already taken in the whole run.

    The trainer sets ``schedule(k)`` before step k (from 0), the authors' order (their trainer updates
    the lr after each step, and their first step runs at ``warmup_lr``).

    - warm-up: ``(lr - warmup_lr) * (it / warmup_iters)^2 + warmup_lr`` for ``it <= warmup_iters``;
    - no-aug tail: ``lr * min_lr_ratio`` for the last ``no_aug_iters``;
    - between: cosine from ``lr`` to ``lr * min_lr_ratio``.
    """

    lr: float
    total_iters: int
    warmup_iters: int
    no_aug_iters: int
    min_lr_ratio: float = 0.05
    warmup_lr: float = 0.0

    def __call__(self, it: int) -> float:
        min_lr = self.lr * self.min_lr_ratio
        if self.warmup_iters > 0 and it <= self.warmup_iters:
            return (self.lr - self.warmup_lr) * (it / self.warmup_iters) ** 2 + self.warmup_lr
        if it >= self.total_iters - self.no_aug_iters:
            return min_lr
        span = max(self.total_iters - self.warmup_iters - self.no_aug_iters, 1)
        return min_lr + 0.5 * (self.lr - min_lr) * (1.0 + math.cos(math.pi * (it - self.warmup_iters) / span))
