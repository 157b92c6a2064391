"""Edits: relabel, remove, move, rename, merge and reweight, each batch making a new version.

A batch of operations applies in order to a copy of the latest version, in
one transaction; if any operation is invalid nothing is written. Samples are
named by their ``uid``, which every version keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session

from kai.datasets.versions import finish_version, lock_dataset, write_child_version
from kai.db.tables import DatasetStatus, DatasetVersion, Sample, Split
from kai.errors import Conflict, InvalidInput, NotFound

logger = logging.getLogger(__name__)

MAX_LABEL_LENGTH = 200
_CHUNK = 500


@dataclass(frozen=True)
class Relabel:
    """Give samples a new label."""

    sample_ids: tuple[str, ...]
    label: str


@dataclass(frozen=True)
class Remove:
    """Leave samples out of the new version."""

    sample_ids: tuple[str, ...]


@dataclass(frozen=True)
class Move:
    """Put samples in another split."""

    sample_ids: tuple[str, ...]
    split: Split


@dataclass(frozen=True)
class RenameClass:
    """Rename a class; the new name must not be a class already (merge instead)."""

    old: str
    new: str


@dataclass(frozen=True)
class MergeClasses:
    """Relabel every sample of the source classes with the target class."""

    sources: tuple[str, ...]
    target: str


@dataclass(frozen=True)
class ReweightClasses:
    """Record inverse-frequency class weights of the new version's train split for training."""


EditOperation = Relabel | Remove | Move | RenameClass | MergeClasses | ReweightClasses


def apply_edits(
    session: Session,
    dataset_id: int,
    operations: Sequence[EditOperation],
    *,
    message: str = "",
) -> DatasetVersion:
    """Apply operations to a copy of the latest version and return the new version.

    Raises:
        InvalidInput: No operations, a bad label, or a change that empties the dataset.
        NotFound: The dataset, a sample or a class does not exist.
        Conflict: The dataset is not ready, or a rename targets an existing class.
        InvalidDatasetLayout: Fewer than two classes would remain.
    """
    if not operations:
        raise InvalidInput("An edit needs at least one operation")
    dataset = lock_dataset(session, dataset_id)
    if dataset.status is not DatasetStatus.READY:
        raise Conflict(
            f"Dataset {dataset_id} is {dataset.status.value}; only a ready dataset can be edited"
        )
    version, parent = write_child_version(
        session, dataset=dataset, message=message or describe(operations)
    )
    for operation in operations:
        _apply(session, version.id, operation)
    edits = [describe([operation]) for operation in operations]
    summary = finish_version(
        session,
        version,
        {"provenance": {"kind": "edit", "parentVersion": parent.number}, "edits": edits},
    )
    if any(isinstance(operation, ReweightClasses) for operation in operations):
        weights = class_weights(summary.class_counts)
        version.metadata_ = {**version.metadata_, "classWeights": weights}
    logger.info(
        "Dataset edited",
        extra={"dataset_id": dataset_id, "version": version.number, "operations": len(edits)},
    )
    return version


def describe(operations: Sequence[EditOperation]) -> str:
    """A one-line account of the operations, used as the default message."""
    parts: list[str] = []
    for op in operations:
        match op:
            case Relabel():
                parts.append(f"relabel {len(op.sample_ids)} samples as {op.label!r}")
            case Remove():
                parts.append(f"remove {len(op.sample_ids)} samples")
            case Move():
                parts.append(f"move {len(op.sample_ids)} samples to {op.split.value}")
            case RenameClass():
                parts.append(f"rename class {op.old!r} to {op.new!r}")
            case MergeClasses():
                parts.append(f"merge {', '.join(map(repr, op.sources))} into {op.target!r}")
            case ReweightClasses():
                parts.append("reweight classes")
    return "; ".join(parts)


def class_weights(class_counts: dict[str, dict[str, int]]) -> dict[str, float]:
    """Inverse-frequency weights from train counts, ``total / (classes * count)``.

    Weighted this way every class counts the same in the loss while the mean
    weight over the training images stays 1.
    """
    train = {label: counts.get(Split.TRAIN.value, 0) for label, counts in class_counts.items()}
    present = {label: count for label, count in train.items() if count > 0}
    total = sum(present.values())
    return {label: round(total / (len(present) * count), 6) for label, count in present.items()}


def _apply(session: Session, version_id: int, op: EditOperation) -> None:
    match op:
        case Relabel():
            label = _check_label(op.label)
            for uids in _existing(session, version_id, op.sample_ids):
                _update(session, version_id, Sample.uid.in_(uids), label=label)
        case Remove():
            for uids in _existing(session, version_id, op.sample_ids):
                of_version = Sample.version_id == version_id
                session.execute(delete(Sample).where(of_version, Sample.uid.in_(uids)))
        case Move():
            for uids in _existing(session, version_id, op.sample_ids):
                _update(session, version_id, Sample.uid.in_(uids), split=op.split)
        case RenameClass():
            new = _check_label(op.new)
            _require_classes(session, version_id, [op.old])
            if new != op.old and _class_exists(session, version_id, new):
                raise Conflict(
                    f"Class {new!r} already exists; merge {op.old!r} into it instead of renaming"
                )
            _update(session, version_id, Sample.label == op.old, label=new)
        case MergeClasses():
            target = _check_label(op.target)
            if not op.sources:
                raise InvalidInput("A merge needs at least one class to merge")
            _require_classes(session, version_id, op.sources)
            _update(session, version_id, Sample.label.in_(op.sources), label=target)
        case ReweightClasses():
            return None


def _update(
    session: Session, version_id: int, condition: ColumnElement[bool], **values: object
) -> None:
    statement = update(Sample).where(Sample.version_id == version_id, condition).values(**values)
    session.execute(statement.execution_options(synchronize_session=False))


def _check_label(label: str) -> str:
    cleaned = label.strip()
    if not cleaned:
        raise InvalidInput("A class name must not be empty")
    if len(cleaned) > MAX_LABEL_LENGTH:
        raise InvalidInput(f"Class name {cleaned[:40]!r}... is over {MAX_LABEL_LENGTH} characters")
    return cleaned


def _chunks(items: Sequence[str]) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(items))
    for start in range(0, len(unique), _CHUNK):
        yield unique[start : start + _CHUNK]


def _existing(session: Session, version_id: int, uids: Sequence[str]) -> Iterator[list[str]]:
    """The uids in chunks, after checking that the version holds every one."""
    if not uids:
        raise InvalidInput("The operation names no samples (sampleIds is empty)")
    chunks = list(_chunks(uids))
    missing: list[str] = []
    for chunk in chunks:
        query = select(Sample.uid).where(Sample.version_id == version_id, Sample.uid.in_(chunk))
        found = set(session.scalars(query))
        missing.extend(uid for uid in chunk if uid not in found)
    if missing:
        raise NotFound(
            f"The latest version has no samples {missing[:5]}"
            + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""),
            details={"missing": missing[:100]},
        )
    yield from chunks


def _class_exists(session: Session, version_id: int, label: str) -> bool:
    query = select(Sample.id).where(Sample.version_id == version_id, Sample.label == label)
    return session.scalar(query.limit(1)) is not None


def _require_classes(session: Session, version_id: int, labels: Sequence[str]) -> None:
    missing = [label for label in labels if not _class_exists(session, version_id, label)]
    if missing:
        raise NotFound(
            f"The latest version has no class {missing[0]!r}", details={"missing": missing}
        )
