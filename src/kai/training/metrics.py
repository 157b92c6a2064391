"""The numbers a training run reports each epoch (the final evaluation is kai.evaluation's).

Epoch metrics use the wire names of the WebSocket contract (``trainLoss``,
``trainAccuracy``, ``valLoss``, ``valAccuracy`` and more), with two flags
that read the gap between them: ``overfitting`` when the validation loss
rises while the training loss falls (or training accuracy runs well ahead
of validation accuracy), ``underfitting`` when even training accuracy stays
near chance. :func:`diagnose` turns the flags of a whole run into findings
with what to try, for the live log and the final report.
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
    train: PassStats,
    val: PassStats,
    timing: EpochTiming,
    num_classes: int,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metrics of one epoch, ready for the ``metrics`` event.

    Args:
        train: The training pass.
        val: The validation pass.
        timing: Where the epoch sits in the run.
        num_classes: The network's outputs.
        previous: The metrics of the epoch before, to read the trend of the losses.
    """
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
    diverging = previous is not None and (
        val.loss > float(previous["valLoss"]) and train.loss < float(previous["trainLoss"])
    )
    metrics["overfitting"] = diverging or train.accuracy - val.accuracy > OVERFITTING_GAP
    metrics["underfitting"] = train.accuracy < min(UNDERFITTING_ACCURACY, 2 * chance)
    return metrics


OVERFITTING_ADVICE = (
    "the model is memorising the training images: turn on or strengthen augmentation, "
    "raise weight decay or label smoothing, freeze more of the base model, keep early "
    "stopping on, or add images"
)
UNDERFITTING_ADVICE = (
    "the model is not learning the training images: raise the learning rate, train more "
    "layers (a higher trainableLayersCount or no frozen base), train longer, or check "
    "the labels"
)


def diagnose(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Findings about a run's epochs: what was flagged, from which epoch, and what to try.

    Overfitting counts when the last epoch carries the flag; underfitting when the
    last epoch still does, so an early flag that training outgrew is not reported.
    """
    if not history:
        return []
    findings = []
    last = history[-1]["metrics"]
    flags = (("overfitting", OVERFITTING_ADVICE), ("underfitting", UNDERFITTING_ADVICE))
    for flag, advice in flags:
        if last.get(flag):
            first = next(e["epoch"] for e in history if e["metrics"].get(flag))
            findings.append({"issue": flag, "sinceEpoch": first, "advice": advice})
    return findings


def advice_for(metrics: dict[str, Any]) -> list[str]:
    """What to try for the flags one epoch's metrics carry, for the live log."""
    found = []
    if metrics.get("overfitting"):
        found.append(f"Overfitting: {OVERFITTING_ADVICE}")
    if metrics.get("underfitting"):
        found.append(f"Underfitting: {UNDERFITTING_ADVICE}")
    return found
