"""Recommendations: what to do about each kind of issue, how bad it is, and the fix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kai.db.tables import IssueSeverity, IssueType
from kai.quality.balance import ClassBalance
from kai.quality.findings import Finding, Thresholds

_SEVERITY_ORDER = {severity: rank for rank, severity in enumerate(IssueSeverity)}
MAX_LISTED_IDS = 1000


@dataclass(frozen=True)
class _Advice:
    issue_types: tuple[IssueType, ...]
    severity: IssueSeverity
    title: str
    fix: str | None
    how: str


_ADVICE = (
    _Advice(
        (IssueType.UNREADABLE,),
        IssueSeverity.HIGH,
        "Images that cannot be read",
        "dropUnreadable",
        "Drop them; they would fail training.",
    ),
    _Advice(
        (IssueType.EXACT_LEAKAGE, IssueType.NEAR_LEAKAGE, IssueType.GROUP_LEAKAGE),
        IssueSeverity.HIGH,
        "Copies or groups shared between train, validation and test",
        "resplitLeakage",
        "Move each leaking sample into the split that holds most of its copies or group, "
        "so validation and test scores mean something.",
    ),
    _Advice(
        (IssueType.LABEL_CONFLICT, IssueType.LABEL_ERROR),
        IssueSeverity.HIGH,
        "Likely wrong labels",
        "applyLabels",
        "Review the suggested labels and apply the ones you accept.",
    ),
    _Advice(
        (IssueType.EXACT_DUPLICATE, IssueType.NEAR_DUPLICATE),
        IssueSeverity.MEDIUM,
        "Duplicate images",
        "dropDuplicates",
        "Drop the copies and keep the best one of each.",
    ),
    _Advice(
        (
            IssueType.BLURRY,
            IssueType.TOO_DARK,
            IssueType.TOO_BRIGHT,
            IssueType.LOW_CONTRAST,
            IssueType.LOW_INFORMATION,
        ),
        IssueSeverity.MEDIUM,
        "Blurry, badly exposed or nearly blank images",
        None,
        "Look at them in the gallery; retake or remove the ones that show nothing useful.",
    ),
    _Advice(
        (IssueType.TOO_SMALL, IssueType.ODD_ASPECT_RATIO),
        IssueSeverity.LOW,
        "Images too small or oddly shaped",
        None,
        "Replace them with larger photos or crop them closer to square.",
    ),
    _Advice(
        (IssueType.GRAYSCALE,),
        IssueSeverity.LOW,
        "Grey images in a colour dataset",
        None,
        "Check whether they belong; colour often tells materials apart.",
    ),
    _Advice(
        (IssueType.OUTLIER,),
        IssueSeverity.LOW,
        "Images unlike the rest of the dataset",
        None,
        "Look at them in the gallery; remove the ones that do not belong to any class.",
    ),
    _Advice(
        (IssueType.EXIF_ROTATED,),
        IssueSeverity.INFO,
        "Images rotated by their EXIF orientation",
        None,
        "Kai trains on upright copies; tools that ignore EXIF see these turned.",
    ),
)


def compute_recommendations(
    findings: Sequence[Finding], balance: ClassBalance, thresholds: Thresholds
) -> list[dict[str, object]]:
    """The recommendations, most severe first."""
    by_type: dict[IssueType, set[str]] = {}
    for finding in findings:
        by_type.setdefault(finding.issue_type, set()).add(finding.sample_uid)
    found = [_recommend(advice, by_type, findings) for advice in _ADVICE]
    found.extend(_balance_recommendations(balance, thresholds))
    chosen = [item for item in found if item is not None]
    return sorted(chosen, key=lambda item: _SEVERITY_ORDER[IssueSeverity(str(item["severity"]))])


def _recommend(
    advice: _Advice, by_type: Mapping[IssueType, set[str]], findings: Sequence[Finding]
) -> dict[str, object] | None:
    affected: set[str] = set()
    for issue_type in advice.issue_types:
        affected |= by_type.get(issue_type, set())
    if not affected:
        return None
    action: dict[str, object] = {"fix": advice.fix, "how": advice.how}
    if advice.fix == "applyLabels":
        suggested = sorted({f.sample_uid for f in findings if "suggestedLabel" in f.evidence})
        action["sampleIds"] = suggested[:MAX_LISTED_IDS]
        if not suggested:
            action = {"fix": None, "how": "Review these samples; no label is clearly better."}
    return {
        "type": advice.issue_types[0].value,
        "issueTypes": [issue_type.value for issue_type in advice.issue_types],
        "severity": advice.severity.value,
        "title": advice.title,
        "affectedCount": len(affected),
        "action": action,
    }


def _balance_recommendations(
    balance: ClassBalance, thresholds: Thresholds
) -> list[dict[str, object] | None]:
    found: list[dict[str, object] | None] = []
    if balance.too_few:
        how = (
            f"Add images: {len(balance.too_few)} classes have fewer than "
            f"{thresholds.min_images_per_class}, such as {', '.join(balance.too_few[:5])}."
        )
        found.append(_class_item("tooFewImages", IssueSeverity.HIGH, len(balance.too_few), how))
    if balance.imbalance_ratio > thresholds.imbalance_ratio:
        counts = sorted(balance.counts.values())
        cap = counts[len(counts) // 2]
        how = (
            f"The largest class has {balance.imbalance_ratio:.1f} times the images of the "
            f"smallest; weight the classes in training, or cap them at about {cap} images."
        )
        item = _class_item("classImbalance", IssueSeverity.MEDIUM, len(counts), how)
        item["action"] = {
            "fix": "reweightClasses",
            "how": how,
            "alternative": {"fix": "capClasses", "max": cap},
        }
        found.append(item)
    return found


def _class_item(kind: str, severity: IssueSeverity, classes: int, how: str) -> dict[str, object]:
    return {
        "type": kind,
        "issueTypes": [],
        "severity": severity.value,
        "title": "Classes with too few images" if kind == "tooFewImages" else "Unequal classes",
        "affectedCount": classes,
        "affectedUnit": "classes",
        "action": {"fix": None, "how": how},
    }
