"""The numbers a training run reports each epoch (the final evaluation is kai.evaluation's).

Epoch metrics use the wire names of the WebSocket contract (``trainLoss``,
``trainAccuracy``, ``valLoss``, ``valAccuracy`` and more), with two flags
that read the gap between them: ``overfitting`` when training accuracy runs
well ahead of validation accuracy, ``underfitting`` when even training
accuracy stays near chance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kai.training.loop import PassStats

# Training accuracy this far above validation accuracy reads as memorising.
OVERFITTING_GAP = 0.15
UNDERFITTING_ACCURACY = 0.6


@dataclass(frozen=True)
class EpochTiming:
    """Where an epoch sits in the run.

    Attributes:
        epoch: The epoch, counting from 1.
        total_epochs: Epochs planned.
        seconds: Wall time of the epoch, validation included.
        learning_rate: The body's learning rate at the epoch's end.
    """

    epoch: int
    total_epochs: int
    seconds: float
    learning_rate: float


def compute_epoch_metrics(
    train: PassStats, val: PassStats, timing: EpochTiming, num_classes: int
) -> dict[str, Any]:
    """The metrics of one epoch, ready for the ``metrics`` event."""
    metrics: dict[str, Any] = {
        "trainLoss": round(train.loss, 6),
        "trainAccuracy": round(train.accuracy, 6),
        "valLoss": round(val.loss, 6),
        "valAccuracy": round(val.accuracy, 6),
        "learningRate": timing.learning_rate,
        "imagesPerSecond": round(train.images / max(train.seconds, 1e-9), 2),
        "epochSeconds": round(timing.seconds, 3),
        "remainingSeconds": round(timing.seconds * (timing.total_epochs - timing.epoch), 1),
    }
    if val.top5_accuracy is not None:
        metrics["top5Accuracy"] = round(val.top5_accuracy, 6)
    chance = 1.0 / max(num_classes, 1)
    metrics["overfitting"] = train.accuracy - val.accuracy > OVERFITTING_GAP
    metrics["underfitting"] = train.accuracy < min(UNDERFITTING_ACCURACY, 2 * chance)
    return metrics
