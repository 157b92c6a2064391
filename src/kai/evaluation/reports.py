"""One evaluation of a classifier's predictions: metrics, calibration and plots together.

:func:`evaluate` is the entry point that training and the ``model.evaluate``
job call; :meth:`Evaluation.to_json` is the metrics document stored on the
model version's evaluation row.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kai.evaluation.calibration import Calibration, compute_calibration
from kai.evaluation.metrics import EvaluationMetrics, compute_metrics
from kai.evaluation.plots import plot_confusion_matrix, plot_reliability_diagram

logger = logging.getLogger(__name__)


class PlotKind(enum.StrEnum):
    """The plots an evaluation draws; the values appear in plot URLs."""

    CONFUSION_MATRIX = "confusion-matrix"
    RELIABILITY_DIAGRAM = "reliability-diagram"


@dataclass(frozen=True)
class Evaluation:
    """Metrics and calibration of one set of predictions.

    Attributes:
        metrics: Accuracy, per-class scores, confusion matrix, log loss.
        calibration: ECE, reliability bins and temperature scaling.
        details: Extra fields for the stored document, such as the class mapping.
    """

    metrics: EvaluationMetrics
    calibration: Calibration
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored metrics document, keys in camelCase."""
        return {
            **self.metrics.to_json(),
            "ece": self.calibration.ece,
            "calibration": self.calibration.to_json(),
            **self.details,
        }

    def render_plots(self) -> dict[PlotKind, bytes]:
        """Every plot of this evaluation as PNG bytes, by kind."""
        return {
            PlotKind.CONFUSION_MATRIX: plot_confusion_matrix(
                self.metrics.confusion, self.metrics.class_names
            ),
            PlotKind.RELIABILITY_DIAGRAM: plot_reliability_diagram(
                self.calibration.bins, ece=self.calibration.ece
            ),
        }


def evaluate(
    probabilities: np.ndarray,
    targets: np.ndarray,
    *,
    class_names: Sequence[str],
    sample_ids: Sequence[str],
    logits: np.ndarray | None = None,
    temperature: float | None = None,
) -> Evaluation:
    """Score predictions: metrics, calibration and temperature scaling.

    Args:
        probabilities: Class probabilities, shape ``(N, C)``, rows summing to 1.
        targets: True class indices, shape ``(N,)``.
        class_names: The ``C`` class names, in column order.
        sample_ids: The ``N`` samples' ids (dataset sample uids).
        logits: The logits behind ``probabilities``, shape ``(N, C)``, when known;
            temperature scaling then fits them rather than log-probabilities.
        temperature: The model's own temperature, fitted on validation; fitted on
            these predictions when None.

    Raises:
        InvalidInput: The inputs' shapes or values do not fit together.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    metrics = compute_metrics(
        probabilities, targets, class_names=class_names, sample_ids=sample_ids
    )
    if logits is not None:
        logits = np.asarray(logits, dtype=np.float64)
    calibration = compute_calibration(
        probabilities, targets, logits=logits, temperature=temperature
    )
    logger.debug(
        "Evaluated %d samples: accuracy %.4f, ECE %.4f",
        metrics.num_samples,
        metrics.accuracy,
        calibration.ece,
    )
    return Evaluation(metrics, calibration)
