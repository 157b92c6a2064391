"""Overfitting and underfitting read from the epochs, live and for the final report."""

from __future__ import annotations

from typing import Any

from kai.training.config import TrainingConfig
from kai.training.loop import PassStats
from kai.training.metrics import (
    EpochTiming,
    Freezing,
    advice_for,
    compute_epoch_metrics,
    diagnose,
    freezing_of,
)

TIMING = EpochTiming(epoch=2, total_epochs=4, seconds=1.0, learning_rate=0.01)


def stats(loss: float, accuracy: float) -> PassStats:
    return PassStats(loss, accuracy, None, 10, 1.0)


def test_validation_loss_rising_while_training_loss_falls_is_flagged_overfitting() -> None:
    previous = {"trainLoss": 0.8, "valLoss": 0.9}
    metrics = compute_epoch_metrics(stats(0.5, 0.8), stats(1.1, 0.75), TIMING, 3, previous)
    assert metrics["overfitting"] is True
    steady = compute_epoch_metrics(stats(0.5, 0.8), stats(0.7, 0.75), TIMING, 3, previous)
    assert steady["overfitting"] is False
    assert "augmentation" in advice_for(metrics)[0]


def test_accuracy_near_chance_on_the_training_images_is_flagged_underfitting() -> None:
    metrics = compute_epoch_metrics(stats(1.1, 0.34), stats(1.1, 0.33), TIMING, 3)
    assert metrics["underfitting"] is True
    assert metrics["overfitting"] is False


def entry(epoch: int, **flags: bool) -> dict[str, Any]:
    return {"epoch": epoch, "metrics": {"overfitting": False, "underfitting": False, **flags}}


def test_the_final_report_names_what_the_last_epoch_still_shows_and_what_to_try() -> None:
    history = [entry(1, underfitting=True), entry(2, overfitting=True), entry(3, overfitting=True)]
    [finding] = diagnose(history)
    assert finding["issue"] == "overfitting"
    assert finding["sinceEpoch"] == 2
    assert "weight decay" in finding["advice"]
    assert diagnose([entry(1, underfitting=True), entry(2)]) == []


def test_advice_fits_what_the_run_can_change_about_its_layers() -> None:
    flagged = {"overfitting": True, "underfitting": True}
    pretrained, from_scratch, head_only = (
        advice_for(flagged, freezing_of(TrainingConfig(**changes)))
        for changes in (
            {},
            {"use_transfer_learning": False},
            {"feature_extraction": True},
        )
    )
    assert "freeze more of the base model" in pretrained[0]
    assert "trainableLayersCount" in pretrained[1]
    assert "freeze" not in from_scratch[0] and "freeze" not in head_only[0]
    assert "start from pretrained weights" in from_scratch[1]
    assert "fine-tune the whole network" in head_only[1]
    history = [entry(1, overfitting=True)]
    assert "freeze" not in diagnose(history, Freezing.NONE)[0]["advice"]
