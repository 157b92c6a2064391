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
from enum import StrEnum
from typing import Any

from kai.training.config import TrainingConfig
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


class Freezing(StrEnum):
    """What a run can change about which layers train, for the advice it gives."""

    # Pretrained weights: more or fewer layer groups can train.
    LAYERS = "layers"
    # From scratch: every layer trains, and none has anything to keep.
    NONE = "none"
    # A head over frozen features: full fine-tuning is the step up.
    HEAD_ONLY = "headOnly"


def overfitting_advice(freezing: Freezing = Freezing.LAYERS) -> str:
    """What to try when the model memorises its training images."""
    freeze = "freeze more of the base model, " if freezing is Freezing.LAYERS else ""
    return (
        "the model is memorising the training images: turn on or strengthen augmentation, "
        f"raise weight decay or label smoothing, {freeze}keep early stopping on, or add images"
    )


def underfitting_advice(freezing: Freezing = Freezing.LAYERS) -> str:
    """What to try when the model does not learn its training images."""
    more = {
        Freezing.LAYERS: "train more layers (a higher trainableLayersCount or no frozen base), ",
        Freezing.NONE: "start from pretrained weights, ",
        Freezing.HEAD_ONLY: "fine-tune the whole network instead of a head over its features, ",
    }[freezing]
    return (
        f"the model is not learning the training images: raise the learning rate, {more}"
        "train longer, or check the labels"
    )


def freezing_of(config: TrainingConfig) -> Freezing:
    """What the run's config lets it change about which layers train."""
    if config.feature_extraction:
        return Freezing.HEAD_ONLY
    return Freezing.LAYERS if config.use_transfer_learning else Freezing.NONE


def diagnose(
    history: list[dict[str, Any]], freezing: Freezing = Freezing.LAYERS
) -> list[dict[str, Any]]:
    """Findings about a run's epochs: what was flagged, from which epoch, and what to try.

    Overfitting counts when the last epoch carries the flag; underfitting when the
    last epoch still does, so an early flag that training outgrew is not reported.
    """
    if not history:
        return []
    findings = []
    last = history[-1]["metrics"]
    flags = (
        ("overfitting", overfitting_advice(freezing)),
        ("underfitting", underfitting_advice(freezing)),
    )
    for flag, advice in flags:
        if last.get(flag):
            first = next(e["epoch"] for e in history if e["metrics"].get(flag))
            findings.append({"issue": flag, "sinceEpoch": first, "advice": advice})
    return findings


def advice_for(metrics: dict[str, Any], freezing: Freezing = Freezing.LAYERS) -> list[str]:
    """What to try for the flags one epoch's metrics carry, for the live log."""
    found = []
    if metrics.get("overfitting"):
        found.append(f"Overfitting: {overfitting_advice(freezing)}")
    if metrics.get("underfitting"):
        found.append(f"Underfitting: {underfitting_advice(freezing)}")
    return found
