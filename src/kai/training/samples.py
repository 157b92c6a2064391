"""Which images training reads, with which class index, in which split.

Training reads each sample's reduced copy (longest side 512 px), never the
original. A version with a validation split keeps it; a version without one
gets a stratified, grouped hold-out made with a fixed seed, so a retried
attempt and a later run on the same version see the same split.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from kai.datasets.splits import SplitItem, assign_splits
from kai.db.tables import DatasetVersion, Sample, Split
from kai.errors import InvalidInput

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSample:
    """One image as training reads it.

    Attributes:
        uid: The sample's stable id.
        sha256: The blob address of its reduced copy.
        target: Its class index in the version's class list.
    """

    uid: str
    sha256: str
    target: int


@dataclass(frozen=True)
class SplitSamples:
    """The samples of one training run, by role.

    Attributes:
        classes: Class names; a sample's target indexes this list.
        train: What the model learns from.
        val: What early stopping and the epoch metrics are measured on.
        test: The version's own test split, never seen during training.
        val_made: Whether the validation split was made here (the version had none).
    """

    classes: list[str]
    train: list[TrainingSample]
    val: list[TrainingSample]
    test: list[TrainingSample]
    val_made: bool


def load_split_samples(
    session: Session, version: DatasetVersion, *, validation_split: float, seed: int
) -> SplitSamples:
    """The version's samples split for training.

    Raises:
        InvalidInput: The training or validation split is empty.
    """
    classes = [str(name) for name in version.classes]
    index = {name: position for position, name in enumerate(classes)}
    rows = session.execute(
        select(Sample.uid, Sample.reduced_sha256, Sample.label, Sample.split, Sample.group)
        .where(Sample.version_id == version.id)
        .order_by(Sample.id)
    ).all()
    by_split: dict[Split, list[TrainingSample]] = {split: [] for split in Split}
    for row in rows:
        by_split[row.split].append(TrainingSample(row.uid, row.reduced_sha256, index[row.label]))
    val_made = not by_split[Split.VAL]
    if val_made:
        groups = {row.uid: row.group for row in rows}
        labels = {row.uid: row.label for row in rows}
        train, val = hold_out(by_split[Split.TRAIN], groups, labels, validation_split, seed)
        by_split[Split.TRAIN], by_split[Split.VAL] = train, val
    _require_samples(version, by_split)
    return SplitSamples(
        classes, by_split[Split.TRAIN], by_split[Split.VAL], by_split[Split.TEST], val_made
    )


def hold_out(
    samples: list[TrainingSample],
    groups: dict[str, str | None],
    labels: dict[str, str],
    share: float,
    seed: int,
) -> tuple[list[TrainingSample], list[TrainingSample]]:
    """Split ``samples`` into train and validation, stratified by label and grouped by group."""
    items = [SplitItem(s.uid, labels[s.uid], groups.get(s.uid)) for s in samples]
    assigned = assign_splits(items, seed=seed, fractions=(1.0 - share, share, 0.0))
    train = [s for s in samples if assigned[s.uid] is Split.TRAIN]
    val = [s for s in samples if assigned[s.uid] is Split.VAL]
    logger.info("Validation split made", extra={"train": len(train), "val": len(val)})
    return train, val


def stratified_subset(
    samples: list[TrainingSample], per_class: int, seed: int
) -> list[TrainingSample]:
    """At most ``per_class`` samples of each class, drawn with ``seed``, in their first order."""
    rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
    by_class: dict[int, list[TrainingSample]] = {}
    for sample in samples:
        by_class.setdefault(sample.target, []).append(sample)
    kept: set[str] = set()
    for members in by_class.values():
        kept.update(s.uid for s in rng.sample(members, min(per_class, len(members))))
    return [sample for sample in samples if sample.uid in kept]


def _require_samples(version: DatasetVersion, by_split: dict[Split, list[TrainingSample]]) -> None:
    for split in (Split.TRAIN, Split.VAL):
        if not by_split[split]:
            raise InvalidInput(
                f"Dataset version {version.number} has no {split.value} images to train with; "
                "add images or lower the validation split",
                details={"split": split.value},
            )
