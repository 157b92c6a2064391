"""The overall quality score, 0 to 100, and how each family of issues shaped it.

    score = 100 - sum over families of  weight * min(1, share / saturation)

A family's share is the fraction of samples with at least one of its issues
(for class balance, the larger of the imbalance share,
``(largest / smallest - 1) / 9``, and the share of classes with too few
images). Saturation is the share at which the family loses its whole
weight: five per cent of leaking or mislabelled samples already costs all
their points, while a third of the images must be flawed for image quality
to cost all of its. Families that did not run are left out and the weights
of the others are scaled to sum to 100. A dataset needs improvement below 70.

| family | weight | saturation | issues |
| --- | --- | --- | --- |
| integrity | 10 | 0.05 | unreadable |
| imageQuality | 15 | 0.33 | too small, odd aspect, blurry, dark, bright, low contrast, ... |
| duplicates | 15 | 0.2 | exact and near duplicates (hashes and embeddings) |
| labelConflicts | 15 | 0.05 | copies carrying different labels |
| labelErrors | 10 | 0.05 | likely wrong labels from out-of-sample predictions |
| leakage | 20 | 0.05 | exact, near and group leakage across splits |
| classBalance | 10 | 1.0 | imbalance and classes with too few images |
| outliers | 5 | 0.1 | images far from their nearest neighbours |

The label-error and outlier families need embeddings; when the backbone
cannot run they are left out, with the reason shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kai.db.tables import IssueType

NEEDS_IMPROVEMENT_BELOW = 70.0
FORMULA = "score = 100 - sum(weight * min(1, share / saturation)) over the families that ran"


@dataclass(frozen=True)
class Family:
    """A family of issues: its weight in the score and where it saturates."""

    name: str
    weight: float
    saturation: float
    issue_types: frozenset[IssueType]


FAMILIES = (
    Family("integrity", 10, 0.05, frozenset({IssueType.UNREADABLE})),
    Family(
        "imageQuality",
        15,
        0.33,
        frozenset(
            {
                IssueType.TOO_SMALL,
                IssueType.ODD_ASPECT_RATIO,
                IssueType.BLURRY,
                IssueType.TOO_DARK,
                IssueType.TOO_BRIGHT,
                IssueType.LOW_CONTRAST,
                IssueType.LOW_INFORMATION,
                IssueType.GRAYSCALE,
            }
        ),
    ),
    Family("duplicates", 15, 0.2, frozenset({IssueType.EXACT_DUPLICATE, IssueType.NEAR_DUPLICATE})),
    Family("labelConflicts", 15, 0.05, frozenset({IssueType.LABEL_CONFLICT})),
    Family("labelErrors", 10, 0.05, frozenset({IssueType.LABEL_ERROR})),
    Family(
        "leakage",
        20,
        0.05,
        frozenset({IssueType.EXACT_LEAKAGE, IssueType.NEAR_LEAKAGE, IssueType.GROUP_LEAKAGE}),
    ),
    Family("classBalance", 10, 1.0, frozenset()),
    Family("outliers", 5, 0.1, frozenset({IssueType.OUTLIER})),
)


@dataclass(frozen=True)
class Score:
    """The score with its breakdown."""

    value: float
    needs_improvement: bool
    breakdown: dict[str, object]


def compute_score(
    *,
    sample_count: int,
    affected: Mapping[IssueType, Iterable[str]],
    balance_share: float,
    skipped: Mapping[str, str],
) -> Score:
    """The score from the samples each issue type affects.

    Args:
        sample_count: How many samples the version holds.
        affected: The sample uids with each issue type.
        balance_share: The class-balance share, 0 to 1.
        skipped: Families that did not run, with the reason.
    """
    ran = [family for family in FAMILIES if family.name not in skipped]
    scale = 100.0 / sum(family.weight for family in ran)
    rows: list[dict[str, object]] = []
    penalty_total = 0.0
    for family in FAMILIES:
        if family.name in skipped:
            rows.append({"family": family.name, "ran": False, "reason": skipped[family.name]})
            continue
        share = _share(family, affected, sample_count, balance_share)
        weight = family.weight * scale
        penalty = weight * min(1.0, share / family.saturation)
        penalty_total += penalty
        rows.append(_row(family, weight, share, penalty))
    value = round(max(0.0, 100.0 - penalty_total), 1)
    breakdown = {
        "formula": FORMULA,
        "needsImprovementBelow": NEEDS_IMPROVEMENT_BELOW,
        "families": rows,
    }
    return Score(value, value < NEEDS_IMPROVEMENT_BELOW, breakdown)


def _share(
    family: Family,
    affected: Mapping[IssueType, Iterable[str]],
    sample_count: int,
    balance_share: float,
) -> float:
    if not family.issue_types:
        return min(1.0, max(0.0, balance_share))
    uids: set[str] = set()
    for issue_type in family.issue_types:
        uids.update(affected.get(issue_type, ()))
    return len(uids) / max(sample_count, 1)


def _row(family: Family, weight: float, share: float, penalty: float) -> dict[str, object]:
    return {
        "family": family.name,
        "ran": True,
        "weight": round(weight, 2),
        "saturation": family.saturation,
        "share": round(share, 4),
        "penalty": round(penalty, 2),
        "points": round(weight - penalty, 2),
    }
