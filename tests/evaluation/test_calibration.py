"""Calibration error, reliability bins and temperature scaling on toy sets."""

from __future__ import annotations

import numpy as np
import pytest

from kai.evaluation import (
    compute_calibration,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from kai.evaluation.calibration import negative_log_likelihood, softmax
from kai.models.formats.preprocessing import apply_temperature


def calibrated_set(num_samples: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes whose labels are drawn from the stated probabilities: calibrated by design."""
    rng = np.random.default_rng(seed)
    first = rng.uniform(0.0, 1.0, num_samples)
    probabilities = np.stack([first, 1 - first], axis=1)
    targets = (rng.uniform(0.0, 1.0, num_samples) >= first).astype(int)
    return probabilities, targets


def overconfident_logits(num_samples: int = 2000, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Logits of three classes about 99 % sure, while only about 60 % are right."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 3, num_samples)
    right = rng.uniform(0, 1, num_samples) < 0.6
    guessed = np.where(right, targets, (targets + rng.integers(1, 3, num_samples)) % 3)
    logits = np.zeros((num_samples, 3))
    logits[np.arange(num_samples), guessed] = 6.0
    return logits, targets


def test_exactly_calibrated_bins_give_zero_error() -> None:
    # Ten samples at 0.8 with eight right, ten at 0.6 with six right.
    probabilities = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 10)
    targets = np.array([0] * 8 + [1] * 2 + [0] * 6 + [1] * 4)
    assert expected_calibration_error(probabilities, targets) == pytest.approx(0.0, abs=1e-12)


def test_a_calibrated_toy_set_has_an_error_near_zero() -> None:
    probabilities, targets = calibrated_set()
    assert expected_calibration_error(probabilities, targets) < 0.03


def test_an_overconfident_set_has_a_large_error() -> None:
    logits, targets = overconfident_logits()
    ece = expected_calibration_error(softmax(logits), targets)
    assert ece > 0.3


def test_reliability_bins_hold_confidence_accuracy_and_count() -> None:
    probabilities = np.array([[0.95, 0.05], [0.97, 0.03], [0.55, 0.45]])
    targets = np.array([0, 1, 0])

    bins = reliability_bins(probabilities, targets)

    assert len(bins) == 15 and sum(b.count for b in bins) == 3
    top = bins[-1]
    assert (top.count, top.accuracy) == (2, 0.5)
    assert top.confidence == pytest.approx(0.96)
    middle = next(b for b in bins if b.lower < 0.55 <= b.upper)
    assert (middle.count, middle.accuracy) == (1, 1.0)


def test_temperature_scaling_softens_an_overconfident_model() -> None:
    logits, targets = overconfident_logits()

    temperature = fit_temperature(logits, targets)

    assert temperature > 1.0
    before = negative_log_likelihood(logits, targets, 1.0)
    after = negative_log_likelihood(logits, targets, temperature)
    assert after < before
    # No other temperature does better: the search found the minimum.
    for nearby in (temperature * 0.9, temperature * 1.1):
        assert after <= negative_log_likelihood(logits, targets, nearby)


def test_calibration_after_temperature_is_better_for_an_overconfident_model() -> None:
    logits, targets = overconfident_logits()
    calibration = compute_calibration(softmax(logits), targets)  # log-probabilities stand in
    assert calibration.temperature > 1.0
    assert calibration.ece_after_temperature < calibration.ece / 3
    assert calibration.nll_after_temperature < calibration.nll


def test_a_temperature_fitted_on_validation_calibrates_held_out_predictions() -> None:
    validation_logits, validation_targets = overconfident_logits(seed=1)
    test_logits, test_targets = overconfident_logits(seed=2)
    temperature = fit_temperature(validation_logits, validation_targets)

    held_out = compute_calibration(
        softmax(test_logits), test_targets, logits=test_logits, temperature=temperature
    )
    assert held_out.temperature == temperature
    assert held_out.temperature_fitted_on == "validation"
    assert held_out.to_json()["temperatureFittedOn"] == "validation"
    assert held_out.ece_after_temperature < held_out.ece / 4
    refitted = compute_calibration(softmax(test_logits), test_targets, logits=test_logits)
    assert refitted.temperature_fitted_on == "evaluated"
    assert refitted.temperature != temperature


def test_probabilities_take_a_stored_temperature_as_the_logits_would() -> None:
    logits, _ = overconfident_logits(num_samples=50)
    probabilities = softmax(logits)
    softened = apply_temperature(probabilities, 3.0)
    np.testing.assert_allclose(softened, softmax(logits, 3.0), rtol=1e-4, atol=1e-6)
    assert (softened.argmax(axis=1) == probabilities.argmax(axis=1)).all()
    assert softened.max(axis=1).mean() < probabilities.max(axis=1).mean()
    np.testing.assert_allclose(apply_temperature(probabilities, None), probabilities, rtol=1e-6)
