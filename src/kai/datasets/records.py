"""Dataset records: read, list, update and delete datasets, and read their samples."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from kai.datasets.imports import check_dataset_name
from kai.datasets.versions import get_version, latest_version, require_latest_version
from kai.db.tables import Dataset, DatasetStatus, DatasetVersion, Job, Sample, Split, utcnow
from kai.errors import InvalidInput, NotFound
from kai.jobs.records import request_cancel

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500
MAX_TAGS = 50
MAX_TAG_LENGTH = 64


@dataclass(frozen=True)
class DatasetChanges:
    """Fields to change on a dataset; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    tags: Sequence[str] | None = None
    license: str | None = None


def get_dataset(session: Session, dataset_id: int) -> Dataset:
    """The dataset; NotFound when there is none."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"Dataset {dataset_id} does not exist", details={"datasetId": dataset_id})
    return dataset


def list_datasets(
    session: Session, *, page: int = 1, page_size: int = 50, search: str | None = None
) -> tuple[list[tuple[Dataset, DatasetVersion | None]], int]:
    """One page of datasets, newest first, each with its latest version, and the total."""
    _check_page(page, page_size)
    query = select(Dataset)
    if search and search.strip():
        pattern = f"%{search.strip().lower()}%"
        query = query.where(
            or_(
                func.lower(Dataset.name).like(pattern),
                func.lower(Dataset.description).like(pattern),
            )
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page_query = query.order_by(Dataset.id.desc()).offset((page - 1) * page_size).limit(page_size)
    datasets = list(session.scalars(page_query))
    latest = _latest_versions(session, [dataset.id for dataset in datasets])
    return [(dataset, latest.get(dataset.id)) for dataset in datasets], total


def read_dataset(session: Session, dataset_id: int) -> tuple[Dataset, DatasetVersion | None]:
    """The dataset with its latest version (None while it has none)."""
    dataset = get_dataset(session, dataset_id)
    return dataset, latest_version(session, dataset_id)


def update_dataset(session: Session, dataset_id: int, changes: DatasetChanges) -> Dataset:
    """Change a dataset's descriptive fields; its versions are untouched."""
    dataset = get_dataset(session, dataset_id)
    if changes.name is not None:
        dataset.name = check_dataset_name(changes.name)
    if changes.description is not None:
        dataset.description = changes.description.strip()
    if changes.tags is not None:
        dataset.tags = _check_tags(changes.tags)
    if changes.license is not None:
        dataset.license = changes.license.strip()[:200]
    dataset.updated_at = utcnow()
    session.flush()
    return dataset


def delete_dataset(session: Session, dataset_id: int) -> None:
    """Delete a dataset with its versions and samples; blobs go with garbage collection.

    A running import is cancelled first, so it never writes into a deleted dataset.
    """
    dataset = get_dataset(session, dataset_id)
    if dataset.status is DatasetStatus.IMPORTING and dataset.import_job_id:
        job = session.get(Job, dataset.import_job_id)
        if job is not None and job.finished_at is None:
            request_cancel(session, job.id)
    version_ids = select(DatasetVersion.id).where(DatasetVersion.dataset_id == dataset_id)
    session.execute(delete(Sample).where(Sample.version_id.in_(version_ids)))
    # Children point at their parents; clear the links so no delete order matters.
    session.execute(
        update(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset_id)
        .values(parent_id=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id))
    session.delete(dataset)
    logger.info("Dataset deleted", extra={"dataset_id": dataset_id})


def resolve_version(session: Session, dataset_id: int, number: int | None) -> DatasetVersion:
    """Version ``number``, or the latest when None."""
    get_dataset(session, dataset_id)
    if number is None:
        return require_latest_version(session, dataset_id)
    return get_version(session, dataset_id, number)


def list_samples(
    session: Session,
    version: DatasetVersion,
    *,
    label: str | None = None,
    split: Split | None = None,
    page: int = 1,
    page_size: int = 50,
) -> tuple[list[Sample], int]:
    """One page of a version's samples, filtered by label and split, and the total."""
    _check_page(page, page_size)
    query = select(Sample).where(Sample.version_id == version.id)
    if label is not None:
        query = query.where(Sample.label == label)
    if split is not None:
        query = query.where(Sample.split == split)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page_query = query.order_by(Sample.id).offset((page - 1) * page_size).limit(page_size)
    return list(session.scalars(page_query)), total


def get_sample(session: Session, dataset_id: int, uid: str) -> Sample:
    """The newest row of the sample with ``uid`` in any version of the dataset."""
    query = (
        select(Sample)
        .join(DatasetVersion, DatasetVersion.id == Sample.version_id)
        .where(DatasetVersion.dataset_id == dataset_id, Sample.uid == uid)
        .order_by(DatasetVersion.number.desc())
        .limit(1)
    )
    sample = session.scalar(query)
    if sample is None:
        raise NotFound(f"Dataset {dataset_id} has no sample {uid!r}")
    return sample


def _latest_versions(session: Session, dataset_ids: list[int]) -> dict[int, DatasetVersion]:
    if not dataset_ids:
        return {}
    newest = (
        select(DatasetVersion.dataset_id, func.max(DatasetVersion.number).label("number"))
        .where(DatasetVersion.dataset_id.in_(dataset_ids))
        .group_by(DatasetVersion.dataset_id)
        .subquery()
    )
    query = select(DatasetVersion).join(
        newest,
        (DatasetVersion.dataset_id == newest.c.dataset_id)
        & (DatasetVersion.number == newest.c.number),
    )
    return {version.dataset_id: version for version in session.scalars(query)}


def _check_page(page: int, page_size: int) -> None:
    if page < 1:
        raise InvalidInput(f"page must be at least 1, not {page}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")


def _check_tags(tags: Sequence[str]) -> list[str]:
    cleaned = list(dict.fromkeys(tag.strip() for tag in tags if tag.strip()))
    if len(cleaned) > MAX_TAGS:
        raise InvalidInput(f"A dataset may have {MAX_TAGS} tags, not {len(cleaned)}")
    too_long = [tag for tag in cleaned if len(tag) > MAX_TAG_LENGTH]
    if too_long:
        raise InvalidInput(f"Tag {too_long[0][:40]!r} is over {MAX_TAG_LENGTH} characters")
    return cleaned
