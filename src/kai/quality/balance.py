"""Class balance: how unequal the classes are and which have too few images."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from kai.db.tables import Split
from kai.quality.findings import Thresholds
from kai.quality.samples import SampleRecord

MAX_LISTED_CLASSES = 50


@dataclass(frozen=True)
class ClassBalance:
    """Images per class and what is wrong with the distribution.

    Attributes:
        counts: Images per class, largest first.
        train_counts: Training images per class.
        imbalance_ratio: Largest class over smallest; 1.0 with one class.
        too_few: Classes with fewer images than the threshold, smallest first.
    """

    counts: dict[str, int]
    train_counts: dict[str, int]
    imbalance_ratio: float
    too_few: list[str]

    @property
    def too_few_share(self) -> float:
        """The share of classes that have too few images."""
        return len(self.too_few) / max(len(self.counts), 1)

    def metrics(self) -> dict[str, object]:
        """The balance's part of the report's metrics; long class lists are cut short."""
        return {
            "classCount": len(self.counts),
            "imbalanceRatio": round(self.imbalance_ratio, 3),
            "largestClass": _first(self.counts),
            "smallestClass": _first(dict(reversed(self.counts.items()))),
            "tooFewImages": self.too_few[:MAX_LISTED_CLASSES],
            "tooFewImagesCount": len(self.too_few),
            "counts": dict(list(self.counts.items())[:MAX_LISTED_CLASSES]),
        }


def compute_class_balance(records: Sequence[SampleRecord], thresholds: Thresholds) -> ClassBalance:
    """The class counts of the samples and the balance findings."""
    counts = Counter(record.label for record in records)
    train = Counter(record.label for record in records if record.split is Split.TRAIN)
    ordered = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    ratio = max(counts.values()) / min(counts.values()) if counts else 1.0
    too_few = sorted(
        (label for label, count in counts.items() if count < thresholds.min_images_per_class),
        key=lambda label: (counts[label], label),
    )
    return ClassBalance(ordered, dict(sorted(train.items())), ratio, too_few)


def _first(counts: dict[str, int]) -> dict[str, object] | None:
    for label, count in counts.items():
        return {"label": label, "count": count}
    return None
