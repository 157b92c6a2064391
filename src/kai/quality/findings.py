"""Findings: the issues the checks raise, and the thresholds they use.

An issue names one sample, its type and severity, and the evidence behind
it (the measured value and the threshold, the duplicate's id, the suggested
label), so that a person can check every verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kai.db.tables import IssueSeverity, IssueType


@dataclass(frozen=True)
class Finding:
    """One issue of one sample."""

    sample_uid: str
    issue_type: IssueType
    severity: IssueSeverity
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Thresholds:
    """Where each check draws its line; the defaults suit photos of materials.

    Attributes:
        min_side_px: Images whose shorter side is below this are too small.
        max_aspect_ratio: Longer over shorter side above this is odd.
        blur_laplacian_var: Variance of the Laplacian below this is blurry.
        blur_class_fraction: Also blurry below this share of the class's median.
        blur_reblur_min: ...but only when a re-blur leaves at least this share of the
            edge variation (an image already blurred has little left to lose).
        dark_brightness: Mean grey level below this is too dark.
        bright_brightness: Mean grey level above this is too bright.
        low_contrast_std: Grey standard deviation below this is low contrast.
        low_information_bits: Grey histogram entropy below this is low information.
        grayscale_max_share: Grey images are flagged while they are at most this share.
        near_duplicate_bits: pHash distance up to this is a near duplicate.
        near_duplicate_colour: And mean colours must be this close (per channel).
        min_images_per_class: A class with fewer images has too few.
        imbalance_ratio: Largest over smallest class above this is imbalanced.
        embedding_duplicate_similarity: Embeddings must be at least this cosine-similar to be
            copies...
        embedding_duplicate_share: ...and their distance at most this share of the median
            distance between a sample and its nearest neighbour...
        embedding_duplicate_gap_share: ...or at most this share of that median distance...
        embedding_duplicate_gap: ...and at most this share of the distance to the sample's
            next neighbour that is not a copy (a ratio test).
        label_folds: Folds of the out-of-sample label model.
        max_linear_classes: Past this many classes, label errors use nearest class means.
        min_images_for_outliers: Fewer readable images than this and no outliers are judged.
        outlier_neighbours: Neighbours whose mean distance judges an outlier.
        outlier_spreads: Robust standard deviations above the median distance that flag one.
    """

    min_side_px: int = 32
    max_aspect_ratio: float = 4.0
    blur_laplacian_var: float = 0.01
    blur_class_fraction: float = 0.1
    blur_reblur_min: float = 0.55
    dark_brightness: float = 0.12
    bright_brightness: float = 0.92
    low_contrast_std: float = 0.04
    low_information_bits: float = 2.5
    grayscale_max_share: float = 0.2
    near_duplicate_bits: int = 6
    near_duplicate_colour: float = 0.06
    min_images_per_class: int = 10
    imbalance_ratio: float = 3.0
    embedding_duplicate_similarity: float = 0.75
    embedding_duplicate_share: float = 0.3
    embedding_duplicate_gap_share: float = 0.7
    embedding_duplicate_gap: float = 0.5
    label_folds: int = 5
    max_linear_classes: int = 100
    min_images_for_outliers: int = 20
    outlier_neighbours: int = 5
    outlier_spreads: float = 5.0
