"""Training: the loop, EMA, the warm-up cosine schedule, checkpoints and distributed setup."""
