"""Learning-rate schedules, stepped once per batch.

``cosine`` warms up linearly over the first epochs, then decays along half a
cosine to a hundredth of the peak; ``step`` divides the rate by ten at each
third of the run; ``none`` keeps it.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from kai.training.config import ScheduleName, TrainingConfig

FINAL_FRACTION = 0.01
STEP_FACTOR = 0.1
STEP_COUNT = 3


def create_schedule(
    optimizer: torch.optim.Optimizer, config: TrainingConfig, steps_per_epoch: int
) -> LambdaLR:
    """The scheduler for ``optimizer`` over the whole run."""
    total = max(1, config.epochs * steps_per_epoch)
    # A warm-up never takes more than half the run.
    warmup = min(config.warmup_epochs * steps_per_epoch, total // 2)
    step_every = max(1, total // STEP_COUNT)

    def factor(step: int) -> float:
        if config.schedule is ScheduleName.NONE:
            return 1.0
        if config.schedule is ScheduleName.STEP:
            return float(STEP_FACTOR ** (step // step_every))
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return FINAL_FRACTION + (1 - FINAL_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
