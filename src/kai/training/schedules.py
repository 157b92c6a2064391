"""Learning-rate schedules, stepped once per batch.

``cosine`` warms up linearly over the first epochs, then decays along half a
cosine to a hundredth of the peak; ``step`` divides the rate by ten at each
third of the run; ``plateau`` halves it when the validation loss has not
improved for two epochs; ``none`` keeps it. Under progressive unfreezing a
layer group that starts training warms up again over one epoch, so fresh
gradients do not tear its pretrained weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from kai.training.config import ScheduleName, TrainingConfig

FINAL_FRACTION = 0.01
STEP_FACTOR = 0.1
STEP_COUNT = 3
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 2
# The key an optimizer's parameter group carries: the epoch its layer group starts training.
UNFREEZE_EPOCH = "unfreeze_epoch"


@dataclass
class PlateauScale:
    """The ``plateau`` schedule's memory: the current scale and the epochs without progress."""

    scale: float = 1.0
    best_loss: float = float("inf")
    stalled_epochs: int = 0

    def update(self, val_loss: float) -> None:
        """Record an epoch's validation loss; halve the scale after a stall."""
        if val_loss < self.best_loss:
            self.best_loss, self.stalled_epochs = val_loss, 0
            return
        self.stalled_epochs += 1
        if self.stalled_epochs >= PLATEAU_PATIENCE:
            self.scale *= PLATEAU_FACTOR
            self.stalled_epochs = 0

    def state(self) -> dict[str, Any]:
        """The state to keep in a checkpoint."""
        return dict(self.__dict__)

    def restore(self, state: dict[str, Any]) -> None:
        """Take the state a checkpoint kept."""
        self.scale = float(state.get("scale", 1.0))
        self.best_loss = float(state.get("best_loss", float("inf")))
        self.stalled_epochs = int(state.get("stalled_epochs", 0))


def create_schedule(
    optimizer: torch.optim.Optimizer,
    config: TrainingConfig,
    steps_per_epoch: int,
    plateau: PlateauScale | None = None,
) -> LambdaLR:
    """The scheduler for ``optimizer`` over the whole run, one factor per parameter group."""
    base = _base_factor(config, steps_per_epoch, plateau or PlateauScale())
    lambdas = [
        _with_rewarm(base, int(group.get(UNFREEZE_EPOCH, 1)), steps_per_epoch)
        for group in optimizer.param_groups
    ]
    return LambdaLR(optimizer, lambdas)


def _base_factor(
    config: TrainingConfig, steps_per_epoch: int, plateau: PlateauScale
) -> Callable[[int], float]:
    total = max(1, config.epochs * steps_per_epoch)
    # A warm-up never takes more than half the run.
    warmup = min(config.warmup_epochs * steps_per_epoch, total // 2)
    step_every = max(1, total // STEP_COUNT)

    def factor(step: int) -> float:
        if config.schedule is ScheduleName.NONE:
            return 1.0
        if config.schedule is ScheduleName.PLATEAU:
            return plateau.scale
        if config.schedule is ScheduleName.STEP:
            return float(STEP_FACTOR ** (step // step_every))
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return FINAL_FRACTION + (1 - FINAL_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _with_rewarm(
    base: Callable[[int], float], unfreeze_epoch: int, steps_per_epoch: int
) -> Callable[[int], float]:
    if unfreeze_epoch <= 1:
        return base
    start = (unfreeze_epoch - 1) * steps_per_epoch

    def factor(step: int) -> float:
        ramp = min(1.0, max(0.0, (step - start + 1) / max(1, steps_per_epoch)))
        return base(step) * ramp

    return factor
