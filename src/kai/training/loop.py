"""One epoch of training, one pass of evaluation, and early stopping.

Batches go to the device in the layout and precision its
:class:`~kai.training.devices.DevicePlan` chose. A callback after each batch lets the job check
for cancellation and report progress, so a cancel takes effect within one
batch. A loss that stops being finite ends the run with advice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kai.errors import TrainingDiverged
from kai.training.devices import CPU_PLAN, DevicePlan

logger = logging.getLogger(__name__)

BatchCallback = Callable[[int], None]
TOP_K = 5


@dataclass(frozen=True)
class PassStats:
    """What one pass over a split measured.

    Attributes:
        loss: Mean loss per image.
        accuracy: Share of images whose top class is right.
        top5_accuracy: Share whose right class is among the top five; None under 5 classes.
        images: Images seen.
        seconds: Wall time of the pass.
    """

    loss: float
    accuracy: float
    top5_accuracy: float | None
    images: int
    seconds: float


@dataclass
class _Tally:
    loss_sum: float = 0.0
    correct: int = 0
    correct_top5: int = 0
    images: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> None:
        count = int(target.shape[0])
        self.loss_sum += float(loss.detach()) * count
        self.correct += int((logits.argmax(dim=1) == target).sum())
        if logits.shape[1] >= TOP_K:
            top = logits.topk(TOP_K, dim=1).indices
            self.correct_top5 += int((top == target.unsqueeze(1)).any(dim=1).sum())
        self.images += count

    def stats(self, num_classes: int) -> PassStats:
        images = max(self.images, 1)
        top5 = self.correct_top5 / images if num_classes >= TOP_K else None
        elapsed = time.monotonic() - self.started
        return PassStats(self.loss_sum / images, self.correct / images, top5, self.images, elapsed)


Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def train_epoch(
    network: nn.Module,
    batches: Batches,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    epoch: int,
    after_batch: BatchCallback,
    device: DevicePlan = CPU_PLAN,
) -> PassStats:
    """One optimisation pass over ``batches``; the caller sets the network's mode.

    Raises:
        TrainingDiverged: The loss became NaN or infinite (the run diverged).
    """
    tally = _Tally()
    num_classes = 0
    for index, (images, labels) in enumerate(batches):
        target = labels.to(device.device, non_blocking=True)
        with device.autocast():
            logits = network(device.images(images)).float()
        loss = loss_fn(logits, target)
        if not torch.isfinite(loss):
            raise diverged(epoch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        tally.add(logits, target, loss)
        num_classes = int(logits.shape[1])
        after_batch(index + 1)
    return tally.stats(num_classes)


def evaluate(
    network: nn.Module,
    batches: Batches,
    *,
    loss_fn: nn.Module,
    after_batch: BatchCallback,
    device: DevicePlan = CPU_PLAN,
) -> tuple[PassStats, torch.Tensor, torch.Tensor]:
    """Loss and accuracy over ``batches`` without gradients; also every logit and target.

    Returns:
        The pass's stats, logits ``(N, num_classes)`` and targets ``(N,)``, on the CPU.
    """
    network.eval()
    tally = _Tally()
    all_logits, all_targets = [], []
    with torch.inference_mode():
        for index, (images, labels) in enumerate(batches):
            target = labels.to(device.device, non_blocking=True)
            with device.autocast():
                logits = network(device.images(images)).float()
            tally.add(logits, target, loss_fn(logits, target))
            all_logits.append(logits.cpu())
            all_targets.append(target.cpu())
            after_batch(index + 1)
    logits_all = torch.cat(all_logits) if all_logits else torch.empty(0, 0)
    targets_all = torch.cat(all_targets) if all_targets else torch.empty(0, dtype=torch.long)
    num_classes = int(logits_all.shape[1]) if logits_all.ndim == 2 else 0
    return tally.stats(num_classes), logits_all, targets_all


def diverged(epoch: int) -> TrainingDiverged:
    """The error of a run whose loss stopped being finite."""
    return TrainingDiverged(
        f"training diverged at epoch {epoch}: the loss became NaN or infinite; "
        "lower the learning rate (a tenth is a good next try) or turn on warm-up",
        details={"epoch": epoch},
    )


@dataclass
class EarlyStopper:
    """Stops a run whose validation loss has not improved for ``patience`` epochs.

    Attributes:
        patience: Epochs without improvement before stopping.
        min_delta: The smallest drop in loss that counts as improvement.
        best_loss: The lowest validation loss seen.
        bad_epochs: Epochs since it was seen.
    """

    patience: int
    min_delta: float = 0.0
    best_loss: float = float("inf")
    bad_epochs: int = 0

    def update(self, val_loss: float) -> bool:
        """Record an epoch's validation loss; True when it is the best so far."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.bad_epochs = val_loss, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """Whether the patience has run out."""
        return self.bad_epochs >= self.patience

    def state(self) -> dict[str, Any]:
        """The state to keep in a checkpoint."""
        return {"best_loss": self.best_loss, "bad_epochs": self.bad_epochs}

    def restore(self, state: dict[str, Any]) -> None:
        """Take the state a checkpoint kept."""
        self.best_loss = float(state.get("best_loss", float("inf")))
        self.bad_epochs = int(state.get("bad_epochs", 0))
