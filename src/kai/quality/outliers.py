"""Outliers: samples far from their nearest neighbours in embedding space.

A sample's distance is one minus its mean cosine similarity to its k
nearest others. Distances far above the dataset's median, by a robust
spread (the median absolute deviation scaled to a standard deviation),
mark an image unlike the rest: a wrong file, a photo of something else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kai.db.tables import IssueSeverity, IssueType
from kai.quality.features import Features
from kai.quality.findings import Finding, Thresholds
from kai.quality.samples import Inspected

# Scales the median absolute deviation to a normal distribution's standard deviation.
_MAD_TO_STD = 1.4826
_LISTED = 3


@dataclass(frozen=True)
class OutlierReport:
    """The outlier findings and the cut they were judged by."""

    findings: list[Finding]
    metrics: dict[str, Any]


def find_outliers(
    inspected: Sequence[Inspected], features: Features, thresholds: Thresholds
) -> OutlierReport | str:
    """Samples whose neighbours are unusually far, or why the check cannot run."""
    count = len(features.positions)
    if count < thresholds.min_images_for_outliers:
        return f"outliers need at least {thresholds.min_images_for_outliers} readable images"
    k = min(thresholds.outlier_neighbours, features.neighbours.similarities.shape[1])
    distances = 1.0 - features.neighbours.similarities[:, :k].mean(axis=1)
    median = float(np.median(distances))
    spread = _MAD_TO_STD * float(np.median(np.abs(distances - median)))
    cut = median + thresholds.outlier_spreads * spread
    flagged = np.nonzero(distances > cut)[0] if spread > 1e-6 else np.array([], dtype=np.int64)
    findings = [
        _finding(inspected, features, int(row), float(distances[row]), cut) for row in flagged
    ]
    metrics = {
        "ran": True,
        "neighbours": k,
        "medianDistance": round(median, 4),
        "cutDistance": round(cut, 4),
        "found": len(findings),
    }
    return OutlierReport(findings, metrics)


def _finding(
    inspected: Sequence[Inspected], features: Features, row: int, distance: float, cut: float
) -> Finding:
    nearest = [
        inspected[features.positions[int(j)]].record.uid
        for j in features.neighbours.indices[row, :_LISTED]
        if j >= 0
    ]
    evidence: dict[str, object] = {
        "neighbourDistance": round(distance, 4),
        "cutDistance": round(cut, 4),
        "nearest": nearest,
    }
    uid = inspected[features.positions[row]].record.uid
    return Finding(uid, IssueType.OUTLIER, IssueSeverity.LOW, evidence)
