"""How far a classifier's confidence is from its accuracy, and temperature scaling to close it.

The expected calibration error (ECE) bins samples by their top probability
into equal-width bins over (0, 1] and averages ``|accuracy - confidence|``
over the bins, weighted by how many samples each holds. Temperature scaling
divides the logits by one number ``T`` chosen to minimise the negative
log-likelihood; ``T > 1`` softens an overconfident model. Log-probabilities
serve as logits when the logits are not at hand: they differ by a constant
per row, which the softmax cancels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

NUM_BINS = 15
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
_GOLDEN = (math.sqrt(5) - 1) / 2
_SEARCH_STEPS = 60


@dataclass(frozen=True)
class ReliabilityBin:
    """Samples whose top probability falls in ``(lower, upper]``.

    Attributes:
        lower: The bin's lower edge.
        upper: The bin's upper edge.
        confidence: Mean top probability of its samples; 0 when empty.
        accuracy: Share of its samples predicted right; 0 when empty.
        count: How many samples it holds.
    """

    lower: float
    upper: float
    confidence: float
    accuracy: float
    count: int

    def to_json(self) -> dict[str, Any]:
        """The bin's entry in the stored metrics document."""
        return {
            "lower": self.lower,
            "upper": self.upper,
            "confidence": self.confidence,
            "accuracy": self.accuracy,
            "count": self.count,
        }


@dataclass(frozen=True)
class Calibration:
    """A classifier's calibration, before and after temperature scaling.

    Attributes:
        ece: Expected calibration error of the probabilities as given.
        bins: The reliability diagram's bins.
        temperature: The temperature: the model version's own, fitted on validation
            by its training job, or else fitted on these predictions.
        ece_after_temperature: ECE once the logits are divided by ``temperature``.
        nll: Mean negative log-likelihood before scaling.
        nll_after_temperature: Mean negative log-likelihood after scaling.
        temperature_fitted_on: ``validation`` (the version's own temperature) or
            ``evaluated`` (fitted on these predictions, so the after-scaling figures
            are optimistic).
    """

    ece: float
    bins: list[ReliabilityBin]
    temperature: float
    ece_after_temperature: float
    nll: float
    nll_after_temperature: float
    temperature_fitted_on: str = "evaluated"

    def to_json(self) -> dict[str, Any]:
        """The calibration as part of the stored metrics document."""
        return {
            "ece": self.ece,
            "numBins": len(self.bins),
            "bins": [item.to_json() for item in self.bins],
            "temperature": self.temperature,
            "eceAfterTemperature": self.ece_after_temperature,
            "nll": self.nll,
            "nllAfterTemperature": self.nll_after_temperature,
            "temperatureFittedOn": self.temperature_fitted_on,
        }


def reliability_bins(
    probabilities: np.ndarray, targets: np.ndarray, *, num_bins: int = NUM_BINS
) -> list[ReliabilityBin]:
    """The reliability diagram's data: per bin of top probability, confidence, accuracy, count.

    Args:
        probabilities: Class probabilities, shape ``(N, C)``.
        targets: True class indices, shape ``(N,)``.
        num_bins: Equal-width bins over (0, 1].
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # Bin b holds (edges[b], edges[b + 1]]; a confidence of exactly 0 joins the first bin.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
    bins = []
    for b in range(num_bins):
        members = index == b
        count = int(members.sum())
        bins.append(
            ReliabilityBin(
                lower=float(edges[b]),
                upper=float(edges[b + 1]),
                confidence=float(confidence[members].mean()) if count else 0.0,
                accuracy=float(correct[members].mean()) if count else 0.0,
                count=count,
            )
        )
    return bins


def expected_calibration_error(
    probabilities: np.ndarray, targets: np.ndarray, *, num_bins: int = NUM_BINS
) -> float:
    """Mean ``|accuracy - confidence|`` over the bins, weighted by their share of samples."""
    bins = reliability_bins(probabilities, targets, num_bins=num_bins)
    total = sum(item.count for item in bins)
    return float(sum(item.count * abs(item.accuracy - item.confidence) for item in bins) / total)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, shape kept."""
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    out: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return out


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean NLL of the true classes under ``softmax(logits / temperature)``."""
    scaled = logits / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_norm - shifted[np.arange(len(targets)), targets]))


def fit_temperature(logits_or_log_probs: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that minimises the NLL, found by golden-section search on ``log T``.

    The NLL is convex in ``1 / T``, so it has one minimum along the searched
    range, ``MIN_TEMPERATURE`` to ``MAX_TEMPERATURE``.

    Args:
        logits_or_log_probs: Logits or log-probabilities, shape ``(N, C)``.
        targets: True class indices, shape ``(N,)``.
    """
    logits = np.asarray(logits_or_log_probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)

    def loss(log_t: float) -> float:
        return negative_log_likelihood(logits, targets, math.exp(log_t))

    a, b = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(_SEARCH_STEPS):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - _GOLDEN * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + _GOLDEN * (high - low)
            loss_b = loss(b)
    return math.exp((low + high) / 2)


def compute_calibration(
    probabilities: np.ndarray,
    targets: np.ndarray,
    *,
    logits: np.ndarray | None = None,
    temperature: float | None = None,
) -> Calibration:
    """ECE, reliability bins and temperature scaling of one set of predictions.

    Args:
        probabilities: Class probabilities, shape ``(N, C)``.
        targets: True class indices, shape ``(N,)``.
        logits: The logits behind ``probabilities``, shape ``(N, C)``; their
            log-probabilities stand in when None.
        temperature: The model's temperature, fitted on its validation split; fitted
            on these predictions when None.
    """
    if logits is None:
        logits = np.log(np.clip(probabilities, 1e-12, 1.0))
    fitted_on = "evaluated" if temperature is None else "validation"
    if temperature is None:
        temperature = fit_temperature(logits, targets)
    scaled = softmax(logits, temperature)
    return Calibration(
        ece=expected_calibration_error(probabilities, targets),
        bins=reliability_bins(probabilities, targets),
        temperature=temperature,
        ece_after_temperature=expected_calibration_error(scaled, targets),
        nll=negative_log_likelihood(logits, targets, 1.0),
        nll_after_temperature=negative_log_likelihood(logits, targets, temperature),
        temperature_fitted_on=fitted_on,
    )
