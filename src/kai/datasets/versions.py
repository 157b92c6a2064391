"""Dataset versions: written whole in one transaction, never changed afterwards.

An import writes its version, every sample row and the blob records in the
transaction that marks the dataset ready, so a version is visible only when
complete; an import killed at any point leaves no version behind, only
blobs that garbage collection removes later. A child version copies its
parent's rows inside the database (``INSERT ... SELECT``) before the change
is applied to the copy, so no sample travels through Python.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Integer, Table, func, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kai.datasets.ingest import IngestResult
from kai.datasets.layouts import MIN_CLASSES
from kai.db.tables import Blob, Dataset, DatasetStatus, DatasetVersion, Sample, Split, utcnow
from kai.errors import Conflict, InvalidDatasetLayout, InvalidInput, NotFound

logger = logging.getLogger(__name__)

MAX_LISTED_SKIPS = 1000
_SAMPLES = cast(Table, Sample.__table__)
_COPIED_COLUMNS = (
    "uid",
    "blob_sha256",
    "reduced_sha256",
    "label",
    "split",
    "original_name",
    "width",
    "height",
    "format",
    "group",
    "metadata",
)


@dataclass(frozen=True)
class VersionSummary:
    """Counts and image statistics of one version, computed in the database."""

    sample_count: int
    classes: list[str]
    class_counts: dict[str, dict[str, int]]
    split_counts: dict[str, int]
    image_stats: dict[str, Any]

    def metadata(self) -> dict[str, Any]:
        """The summary's part of the version's metadata."""
        return {
            "classCounts": self.class_counts,
            "splitCounts": self.split_counts,
            "imageStats": self.image_stats,
        }


def lock_dataset(session: Session, dataset_id: int) -> Dataset:
    """The dataset, locked against concurrent version writes (on PostgreSQL)."""
    dataset = session.get(Dataset, dataset_id, with_for_update=True, populate_existing=True)
    if dataset is None:
        raise NotFound(f"Dataset {dataset_id} does not exist")
    return dataset


def latest_version(session: Session, dataset_id: int) -> DatasetVersion | None:
    """The dataset's newest version, or None while it has none."""
    query = (
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset_id)
        .order_by(DatasetVersion.number.desc())
        .limit(1)
    )
    return session.scalar(query)


def require_latest_version(session: Session, dataset_id: int) -> DatasetVersion:
    """The newest version; Conflict when the dataset has none yet."""
    version = latest_version(session, dataset_id)
    if version is None:
        raise Conflict(
            f"Dataset {dataset_id} has no version yet; wait for its import to finish",
            details={"datasetId": dataset_id},
        )
    return version


def get_version(session: Session, dataset_id: int, number: int) -> DatasetVersion:
    """Version ``number`` of the dataset; NotFound when it does not exist."""
    version = session.scalar(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.number == number
        )
    )
    if version is None:
        raise NotFound(f"Dataset {dataset_id} has no version {number}")
    return version


def list_versions(session: Session, dataset_id: int) -> list[DatasetVersion]:
    """Every version of the dataset, oldest first."""
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id)
    return list(session.scalars(query.order_by(DatasetVersion.number)))


def write_import_version(
    session: Session,
    *,
    dataset: Dataset,
    result: IngestResult,
    provenance: Mapping[str, Any],
    job_id: int | None,
) -> DatasetVersion:
    """Write the first version of an imported dataset and mark the dataset ready."""
    version = _new_version(session, dataset, parent=None, message="Imported", job_id=job_id)
    rows = [s.row(version.id, result.splits[s.original_name]) for s in result.samples]
    record_blobs(session, result.blob_sizes)
    if rows:
        session.execute(insert(Sample), rows)
    extra = {"importReport": import_report(result), "provenance": dict(provenance)}
    finish_version(session, version, extra)
    dataset.status = DatasetStatus.READY
    dataset.error = None
    return version


def write_child_version(
    session: Session,
    *,
    dataset: Dataset,
    message: str,
    job_id: int | None = None,
) -> tuple[DatasetVersion, DatasetVersion]:
    """Start a new version as a copy of the latest; returns (new, parent).

    The caller applies its change to the copy's rows, then calls :func:`finish_version`.
    """
    parent = require_latest_version(session, dataset.id)
    version = _new_version(session, dataset, parent=parent, message=message, job_id=job_id)
    columns = [_SAMPLES.c[name] for name in _COPIED_COLUMNS]
    copied = select(literal(version.id, Integer), *columns).where(
        _SAMPLES.c.version_id == parent.id
    )
    session.execute(insert(_SAMPLES).from_select([_SAMPLES.c.version_id, *columns], copied))
    return version, parent


def finish_version(
    session: Session, version: DatasetVersion, extra: Mapping[str, Any]
) -> VersionSummary:
    """Compute the version's summary and store it with ``extra`` in its metadata.

    Raises:
        InvalidInput: The version would hold no samples.
        InvalidDatasetLayout: The version would hold fewer than two classes.
    """
    summary = summarize(session, version.id)
    if summary.sample_count == 0:
        raise InvalidInput("The change would leave the dataset without any samples")
    if len(summary.classes) < MIN_CLASSES:
        raise InvalidDatasetLayout(
            "A classification dataset needs at least two classes; this version would hold "
            f"only {summary.classes}",
            details={"classes": summary.classes},
        )
    version.classes = summary.classes
    version.sample_count = summary.sample_count
    version.metadata_ = {**summary.metadata(), **extra}
    session.flush()
    return summary


def summarize(session: Session, version_id: int) -> VersionSummary:
    """Class and split counts and image statistics of a version's rows."""
    of_version = Sample.version_id == version_id
    class_counts: dict[str, dict[str, int]] = {}
    split_counts = {split.value: 0 for split in Split}
    grouped = select(Sample.label, Sample.split, func.count()).where(of_version)
    for label, split, count in session.execute(grouped.group_by(Sample.label, Sample.split)):
        counts = class_counts.setdefault(label, {s.value: 0 for s in Split} | {"total": 0})
        counts[Split(split).value] += count
        counts["total"] += count
        split_counts[Split(split).value] += count
    return VersionSummary(
        sample_count=sum(split_counts.values()),
        classes=sorted(class_counts),
        class_counts=dict(sorted(class_counts.items())),
        split_counts=split_counts,
        image_stats=_image_stats(session, version_id),
    )


def _image_stats(session: Session, version_id: int) -> dict[str, Any]:
    of_version = Sample.version_id == version_id
    sizes = session.execute(
        select(
            func.min(Sample.width),
            func.max(Sample.width),
            func.avg(Sample.width),
            func.min(Sample.height),
            func.max(Sample.height),
            func.avg(Sample.height),
        ).where(of_version)
    ).one()
    formats = session.execute(
        select(Sample.format, func.count()).where(of_version).group_by(Sample.format)
    )
    return {
        "width": _range(sizes[0], sizes[1], sizes[2]),
        "height": _range(sizes[3], sizes[4], sizes[5]),
        "formats": {str(name): int(n) for name, n in sorted((r[0], r[1]) for r in formats)},
    }


def _range(low: Any, high: Any, mean: Any) -> dict[str, float | int | None]:
    return {
        "min": low,
        "max": high,
        "mean": None if mean is None else round(float(mean), 1),
    }


def import_report(result: IngestResult) -> dict[str, Any]:
    """The import report kept in the version's metadata."""
    by_reason: dict[str, int] = {}
    for skipped in result.skipped:
        by_reason[skipped.reason] = by_reason.get(skipped.reason, 0) + 1
    return {
        "importedCount": len(result.samples),
        "skippedCount": len(result.skipped),
        "badCount": result.bad_count,
        "skippedByReason": by_reason,
        "skipped": [
            {"name": item.name, "reason": item.reason} for item in result.skipped[:MAX_LISTED_SKIPS]
        ],
        "splitSource": result.split_source,
    }


def record_blobs(session: Session, sizes: Mapping[str, int]) -> None:
    """Record blobs in the ``blobs`` table, leaving ones already recorded alone."""
    if not sizes:
        return
    rows = [{"sha256": sha256, "size_bytes": size} for sha256, size in sizes.items()]
    upsert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(upsert(Blob).on_conflict_do_nothing(index_elements=["sha256"]), rows)


def _new_version(
    session: Session,
    dataset: Dataset,
    *,
    parent: DatasetVersion | None,
    message: str,
    job_id: int | None,
) -> DatasetVersion:
    number = session.scalar(
        select(func.coalesce(func.max(DatasetVersion.number), 0)).where(
            DatasetVersion.dataset_id == dataset.id
        )
    )
    version = DatasetVersion(
        dataset_id=dataset.id,
        number=int(number or 0) + 1,
        parent_id=parent.id if parent else None,
        message=message,
        created_by_job_id=job_id,
    )
    session.add(version)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"Another change created version {version.number} of dataset {dataset.id} at the "
            "same time; try again",
        ) from exc
    dataset.updated_at = utcnow()
    return version
