"""Classification metrics from predicted probabilities, in plain NumPy.

Every ratio with an empty denominator is 0, never NaN: a class the model
never predicts has precision 0, a class with no samples has recall 0 and
takes no weight in the weighted F1. The confusion matrix keeps the ids of
the samples behind each non-empty cell, up to a cap, so a reader can open
the images a model confuses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kai.errors import InvalidInput

logger = logging.getLogger(__name__)

TOP_K = (1, 3, 5)
MAX_CELL_SAMPLE_IDS = 50
PROBABILITY_FLOOR = 1e-12


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall and F1 of one class, and how often it is true and predicted."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int

    def to_json(self) -> dict[str, Any]:
        """The class's entry in the stored metrics document."""
        return {
            "className": self.name,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
            "predicted": self.predicted,
        }


@dataclass(frozen=True)
class ConfusionCell:
    """Samples of class ``actual`` predicted as ``predicted``; ids capped, count exact."""

    actual: int
    predicted: int
    count: int
    sample_ids: list[str]

    def to_json(self) -> dict[str, Any]:
        """The cell's entry in the stored metrics document."""
        return {
            "actual": self.actual,
            "predicted": self.predicted,
            "count": self.count,
            "sampleIds": self.sample_ids,
            "truncated": self.count > len(self.sample_ids),
        }


@dataclass(frozen=True)
class EvaluationMetrics:
    """What a classifier scored on a labelled set.

    Attributes:
        class_names: Names of the classes, in column order.
        num_samples: Samples evaluated.
        accuracy: Share of samples whose most probable class is right.
        balanced_accuracy: Mean recall over the classes that have samples.
        top_k_accuracy: Share with the true class among the k most probable, by k.
        per_class: Precision, recall, F1 and support of each class.
        macro_f1: Unweighted mean F1 over all classes.
        weighted_f1: Mean F1 weighted by support.
        log_loss: Mean negative log-probability of the true class (natural log).
        confusion: Counts, rows the true class and columns the predicted one.
        cells: The non-empty cells with the ids of their samples.
    """

    class_names: list[str]
    num_samples: int
    accuracy: float
    balanced_accuracy: float
    top_k_accuracy: dict[int, float]
    per_class: list[ClassMetrics]
    macro_f1: float
    weighted_f1: float
    log_loss: float
    confusion: np.ndarray
    cells: list[ConfusionCell]

    def to_json(self) -> dict[str, Any]:
        """The metrics as the stored JSON document, keys in camelCase."""
        return {
            "numSamples": self.num_samples,
            "numClasses": len(self.class_names),
            "classNames": self.class_names,
            "accuracy": self.accuracy,
            "balancedAccuracy": self.balanced_accuracy,
            **{f"top{k}Accuracy": value for k, value in self.top_k_accuracy.items()},
            "macroF1": self.macro_f1,
            "weightedF1": self.weighted_f1,
            "logLoss": self.log_loss,
            "perClass": [item.to_json() for item in self.per_class],
            "confusionMatrix": {
                "counts": self.confusion.astype(int).tolist(),
                "cells": [cell.to_json() for cell in self.cells],
                "maxSampleIdsPerCell": MAX_CELL_SAMPLE_IDS,
            },
        }


def check_inputs(
    probabilities: np.ndarray, targets: np.ndarray, class_names: Sequence[str]
) -> None:
    """Refuse shapes and values the metrics cannot be computed from.

    Raises:
        InvalidInput: Shapes disagree, there are no samples, or a target is out of range.
    """
    if probabilities.ndim != 2 or targets.ndim != 1:
        raise InvalidInput(
            f"Probabilities must be (N, C) and targets (N,), not {probabilities.shape} "
            f"and {targets.shape}"
        )
    num_samples, num_classes = probabilities.shape
    if num_samples == 0 or num_samples != len(targets):
        raise InvalidInput(f"Got {num_samples} rows of probabilities for {len(targets)} targets")
    if num_classes != len(class_names):
        raise InvalidInput(f"Got {num_classes} columns for {len(class_names)} class names")
    if targets.min() < 0 or targets.max() >= num_classes:
        raise InvalidInput(f"Targets must be class indices from 0 to {num_classes - 1}")


def compute_metrics(
    probabilities: np.ndarray,
    targets: np.ndarray,
    *,
    class_names: Sequence[str],
    sample_ids: Sequence[str],
) -> EvaluationMetrics:
    """Score predicted class probabilities against true classes.

    Args:
        probabilities: Class probabilities, shape ``(N, C)``, rows summing to 1.
        targets: True class indices, shape ``(N,)``.
        class_names: The ``C`` class names, in column order.
        sample_ids: The ``N`` samples' ids, kept in the confusion matrix's cells.

    Returns:
        The metrics.

    Raises:
        InvalidInput: The inputs' shapes or values do not fit together.
    """
    targets = np.asarray(targets, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    check_inputs(probabilities, targets, class_names)
    if len(sample_ids) != len(targets):
        raise InvalidInput(f"Got {len(sample_ids)} sample ids for {len(targets)} targets")

    num_classes = len(class_names)
    predicted = np.argmax(probabilities, axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (targets, predicted), 1)
    per_class = _per_class(confusion, class_names)
    support = confusion.sum(axis=1)
    f1 = np.array([item.f1 for item in per_class])
    recall = np.array([item.recall for item in per_class])

    return EvaluationMetrics(
        class_names=list(class_names),
        num_samples=len(targets),
        accuracy=float(np.mean(predicted == targets)),
        balanced_accuracy=float(recall[support > 0].mean()),
        top_k_accuracy=top_k_accuracy(probabilities, targets),
        per_class=per_class,
        macro_f1=float(f1.mean()),
        weighted_f1=float(np.sum(f1 * support) / support.sum()),
        log_loss=log_loss(probabilities, targets),
        confusion=confusion,
        cells=_cells(targets, predicted, sample_ids),
    )


def top_k_accuracy(probabilities: np.ndarray, targets: np.ndarray) -> dict[int, float]:
    """Share of rows whose true class is among the k most probable, for each k the classes allow.

    Ties are broken by column order, so a uniform row counts the first k classes.
    """
    num_classes = probabilities.shape[1]
    # The rank of the true class: how many classes come strictly before it.
    true_scores = probabilities[np.arange(len(targets)), targets][:, None]
    columns = np.arange(num_classes)[None, :]
    ahead = (probabilities > true_scores) | (
        (probabilities == true_scores) & (columns < targets[:, None])
    )
    rank = ahead.sum(axis=1)
    return {k: float(np.mean(rank < k)) for k in TOP_K if k <= num_classes}


def log_loss(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative natural log of the true class's probability, floored to stay finite."""
    true = probabilities[np.arange(len(targets)), targets]
    return float(-np.mean(np.log(np.clip(true, PROBABILITY_FLOOR, 1.0))))


def _per_class(confusion: np.ndarray, class_names: Sequence[str]) -> list[ClassMetrics]:
    true_positives = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = _ratio(true_positives, predicted)
    recall = _ratio(true_positives, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return [
        ClassMetrics(
            name=str(name),
            precision=float(precision[i]),
            recall=float(recall[i]),
            f1=float(f1[i]),
            support=int(support[i]),
            predicted=int(predicted[i]),
        )
        for i, name in enumerate(class_names)
    ]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with 0 where the denominator is 0."""
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _cells(
    targets: np.ndarray, predicted: np.ndarray, sample_ids: Sequence[str]
) -> list[ConfusionCell]:
    members: dict[tuple[int, int], list[str]] = {}
    counts: dict[tuple[int, int], int] = {}
    for actual, guess, sample_id in zip(
        targets.tolist(), predicted.tolist(), sample_ids, strict=True
    ):
        key = (int(actual), int(guess))
        counts[key] = counts.get(key, 0) + 1
        ids = members.setdefault(key, [])
        if len(ids) < MAX_CELL_SAMPLE_IDS:
            ids.append(str(sample_id))
    return [
        ConfusionCell(actual, guess, counts[(actual, guess)], members[(actual, guess)])
        for actual, guess in sorted(counts)
    ]
