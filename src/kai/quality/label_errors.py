"""Likely label errors: out-of-sample probabilities of k-fold linear models, ranked by cleanlab.

Each readable sample's embedding is projected on the dataset's main
components, then k models, each trained without one fold, give every
sample probabilities it was not trained on. Confident learning
(``cleanlab.filter.find_label_issues``) ranks the samples whose given label
those probabilities contradict; the suggested label is the most probable
one. Up to ``max_linear_classes`` classes the model is a multinomial
logistic regression; past that, a nearest-class-mean model on the same
features (also linear, and cheap with thousands of classes) takes its place.
Classes with fewer readable images than two are left out of the model.
scikit-learn and cleanlab are imported when the check runs: together they
take seconds to import, which the API and the CLI should not pay at start.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kai.db.tables import IssueSeverity, IssueType
from kai.quality.features import Features
from kai.quality.findings import Finding, Thresholds
from kai.quality.samples import Inspected

logger = logging.getLogger(__name__)

MAX_COMPONENTS = 64
_MEAN_TEMPERATURE = 0.05
_SEED = 0


@dataclass(frozen=True)
class LabelErrorReport:
    """The label-error findings and how the model behind them did."""

    findings: list[Finding]
    metrics: dict[str, Any]


def find_label_errors(
    inspected: Sequence[Inspected], features: Features, thresholds: Thresholds
) -> LabelErrorReport | str:
    """Label errors among the embedded samples, or why the check cannot run."""
    labels = [inspected[p].record.label for p in features.positions]
    counts = Counter(labels)
    classes = sorted(name for name, count in counts.items() if count >= 2)
    if len(classes) < 2:
        return "label errors need at least two classes with two readable images each"
    rows = [i for i, label in enumerate(labels) if label in set(classes)]
    target = np.array([classes.index(labels[i]) for i in rows], dtype=np.int64)
    projected = project(features.vectors[rows])
    if projected is None:
        return "every image looks the same to the backbone, so labels cannot be judged"
    folds = min(thresholds.label_folds, min(counts[name] for name in classes))
    linear = len(classes) <= thresholds.max_linear_classes
    probabilities = out_of_sample_probabilities(projected, target, len(classes), folds, linear)
    ranked = rank_label_issues(target, probabilities)
    findings = [
        _finding(inspected, features.positions[rows[i]], classes, target[i], probabilities[i], rank)
        for rank, i in enumerate(ranked, start=1)
    ]
    accuracy = float((probabilities.argmax(axis=1) == target).mean())
    metrics = {
        "ran": True,
        "model": "logisticRegression" if linear else "nearestClassMean",
        "folds": folds,
        "classesModelled": len(classes),
        "samplesModelled": len(rows),
        "samplesLeftOut": len(labels) - len(rows),
        "outOfSampleAccuracy": round(accuracy, 4),
        "found": len(findings),
    }
    return LabelErrorReport(findings, metrics)


def project(vectors: NDArray[np.float32]) -> NDArray[np.float64] | None:
    """Rows on the main components (at most ``MAX_COMPONENTS``), unit variance on average.

    None when the rows do not vary at all.
    """
    centred = vectors.astype(np.float64) - vectors.mean(axis=0, dtype=np.float64)
    covariance = centred.T @ centred / max(len(centred) - 1, 1)
    values, vectors_ = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][: min(MAX_COMPONENTS, len(centred))]
    kept = values[order]
    if kept.size == 0 or kept[0] <= 1e-12:
        return None
    kept_vectors = vectors_[:, order[kept > kept[0] * 1e-9]]
    scaled: NDArray[np.float64] = (
        centred @ kept_vectors / np.sqrt(kept[kept > kept[0] * 1e-9].mean())
    )
    return scaled


def out_of_sample_probabilities(
    features: NDArray[np.float64],
    target: NDArray[np.int64],
    num_classes: int,
    folds: int,
    linear: bool,
) -> NDArray[np.float64]:
    """``(n, num_classes)`` probabilities, each row from the model that never saw it."""
    from sklearn.model_selection import StratifiedKFold

    probabilities = np.zeros((len(target), num_classes), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=_SEED)
    for train, held in splitter.split(features, target):
        fit = _logistic if linear else _class_means
        probabilities[held] = fit(features[train], target[train], features[held], num_classes)
    return probabilities


def rank_label_issues(target: NDArray[np.int64], probabilities: NDArray[np.float64]) -> list[int]:
    """Row numbers cleanlab flags as mislabelled, most certain first."""
    from cleanlab.filter import find_label_issues

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ranked = find_label_issues(
            labels=target,
            pred_probs=probabilities,
            return_indices_ranked_by="self_confidence",
            n_jobs=1,
        )
    for warning in caught:
        logger.debug("cleanlab: %s", warning.message)
    return [int(i) for i in ranked]


def _logistic(
    train: NDArray[np.float64],
    target: NDArray[np.int64],
    held: NDArray[np.float64],
    num_classes: int,
) -> NDArray[np.float64]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=300, random_state=_SEED)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(train, target)
    if caught:
        logger.debug("Label model: %s", caught[0].message)
    out = np.zeros((len(held), num_classes), dtype=np.float64)
    out[:, model.classes_] = model.predict_proba(held)
    return out


def _class_means(
    train: NDArray[np.float64],
    target: NDArray[np.int64],
    held: NDArray[np.float64],
    num_classes: int,
) -> NDArray[np.float64]:
    sums = np.zeros((num_classes, train.shape[1]))
    np.add.at(sums, target, train)
    means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    unit = held / np.maximum(np.linalg.norm(held, axis=1, keepdims=True), 1e-12)
    logits = unit @ means.T / _MEAN_TEMPERATURE
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    result: NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return result


def _finding(
    inspected: Sequence[Inspected],
    position: int,
    classes: list[str],
    given: np.int64,
    probabilities: NDArray[np.float64],
    rank: int,
) -> Finding:
    best = int(probabilities.argmax())
    evidence: dict[str, object] = {
        "givenLabel": classes[int(given)],
        "givenLabelProbability": round(float(probabilities[int(given)]), 4),
        "rank": rank,
    }
    if best != int(given):
        evidence["suggestedLabel"] = classes[best]
        evidence["probability"] = round(float(probabilities[best]), 4)
    uid = inspected[position].record.uid
    return Finding(uid, IssueType.LABEL_ERROR, IssueSeverity.MEDIUM, evidence)
