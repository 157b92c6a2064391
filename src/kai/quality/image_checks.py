"""Checks of single images: unreadable, small, odd shape, blurry, dark, bright, flat, grey, rotated.

Each check compares one statistic with its threshold and, for blur, with
the sample's class as well, since a class of smooth porcelain is far less
textured than one of gravel. Blur is confirmed by re-blurring: an image
that is sharp but plainer than its class (often one with the wrong label)
loses most of its edges to a re-blur, a blurred one keeps them.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence

from kai.db.tables import IssueSeverity, IssueType
from kai.quality.findings import Finding, Thresholds
from kai.quality.images import ImageStats
from kai.quality.samples import Inspected

# Class medians need a few images to mean anything.
_MIN_CLASS_FOR_MEDIAN = 5


def find_image_issues(samples: Sequence[Inspected], thresholds: Thresholds) -> list[Finding]:
    """Every single-image issue of the samples."""
    blur_medians = _class_blur_medians(samples)
    colour_share = _grayscale_share(samples)
    findings: list[Finding] = []
    for sample in samples:
        findings.extend(_shape_issues(sample, thresholds))
        if sample.stats is None:
            evidence: dict[str, object] = {"reason": sample.error or "unreadable"}
            findings.append(_finding(sample, IssueType.UNREADABLE, IssueSeverity.HIGH, evidence))
            continue
        median = blur_medians.get(sample.record.label)
        findings.extend(_pixel_issues(sample, sample.stats, thresholds, median))
        if sample.stats.is_grayscale and colour_share <= thresholds.grayscale_max_share:
            evidence = {"grayscaleShare": round(colour_share, 4)}
            findings.append(_finding(sample, IssueType.GRAYSCALE, IssueSeverity.LOW, evidence))
        if sample.orientation != 1:
            evidence = {"orientation": sample.orientation}
            findings.append(_finding(sample, IssueType.EXIF_ROTATED, IssueSeverity.INFO, evidence))
    return findings


def _shape_issues(sample: Inspected, thresholds: Thresholds) -> Iterator[Finding]:
    width, height = sample.record.width, sample.record.height
    shorter, longer = min(width, height), max(width, height)
    size: dict[str, object] = {"width": width, "height": height}
    if shorter < thresholds.min_side_px:
        evidence = size | {"minSidePx": thresholds.min_side_px}
        yield _finding(sample, IssueType.TOO_SMALL, IssueSeverity.MEDIUM, evidence)
    ratio = longer / max(shorter, 1)
    if ratio > thresholds.max_aspect_ratio:
        evidence = size | {"aspectRatio": round(ratio, 2), "max": thresholds.max_aspect_ratio}
        yield _finding(sample, IssueType.ODD_ASPECT_RATIO, IssueSeverity.LOW, evidence)


def _pixel_issues(
    sample: Inspected, stats: ImageStats, thresholds: Thresholds, class_median: float | None
) -> Iterator[Finding]:
    blur_limit = thresholds.blur_laplacian_var
    if class_median is not None:
        blur_limit = max(blur_limit, thresholds.blur_class_fraction * class_median)
    if stats.laplacian_var < blur_limit and stats.reblur_retained >= thresholds.blur_reblur_min:
        evidence = {
            "laplacianVariance": _round(stats.laplacian_var),
            "threshold": _round(blur_limit),
            "classMedian": None if class_median is None else _round(class_median),
            "reblurRetained": _round(stats.reblur_retained),
            "reblurMin": thresholds.blur_reblur_min,
        }
        yield _finding(sample, IssueType.BLURRY, IssueSeverity.MEDIUM, evidence)
    if stats.brightness < thresholds.dark_brightness:
        evidence = {"brightness": _round(stats.brightness), "min": thresholds.dark_brightness}
        yield _finding(sample, IssueType.TOO_DARK, IssueSeverity.MEDIUM, evidence)
    if stats.brightness > thresholds.bright_brightness:
        evidence = {"brightness": _round(stats.brightness), "max": thresholds.bright_brightness}
        yield _finding(sample, IssueType.TOO_BRIGHT, IssueSeverity.MEDIUM, evidence)
    if stats.contrast < thresholds.low_contrast_std:
        evidence = {"contrast": _round(stats.contrast), "min": thresholds.low_contrast_std}
        yield _finding(sample, IssueType.LOW_CONTRAST, IssueSeverity.MEDIUM, evidence)
    if stats.entropy_bits < thresholds.low_information_bits:
        evidence = {
            "entropyBits": _round(stats.entropy_bits),
            "min": thresholds.low_information_bits,
        }
        yield _finding(sample, IssueType.LOW_INFORMATION, IssueSeverity.MEDIUM, evidence)


def _class_blur_medians(samples: Sequence[Inspected]) -> dict[str, float]:
    values: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        if sample.stats is not None:
            values[sample.record.label].append(sample.stats.laplacian_var)
    return {
        label: statistics.median(found)
        for label, found in values.items()
        if len(found) >= _MIN_CLASS_FOR_MEDIAN
    }


def _grayscale_share(samples: Sequence[Inspected]) -> float:
    readable = [sample.stats for sample in samples if sample.stats is not None]
    if not readable:
        return 0.0
    return sum(stats.is_grayscale for stats in readable) / len(readable)


def _finding(
    sample: Inspected,
    issue_type: IssueType,
    severity: IssueSeverity,
    evidence: Mapping[str, object],
) -> Finding:
    return Finding(sample.record.uid, issue_type, severity, dict(evidence))


def _round(value: float) -> float:
    return float(f"{value:.4g}")
