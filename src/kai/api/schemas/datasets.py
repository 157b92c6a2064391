"""Schemas of datasets, their versions, samples, edits and diffs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from kai.api.schemas.base import ApiModel, UtcDatetime
from kai.datasets import (
    EditOperation,
    MergeClasses,
    Move,
    Relabel,
    Remove,
    RenameClass,
    VersionDiff,
)
from kai.db.tables import Dataset, DatasetStatus, DatasetVersion, Sample, Split

MAX_IDS_PER_OPERATION = 100_000
Label = Annotated[str, Field(min_length=1, max_length=200)]


class ImportStarted(ApiModel):
    """A dataset whose import job was queued."""

    id: int
    job_id: int


class JobStarted(ApiModel):
    """A queued job that will write a new version."""

    job_id: int
    dataset_id: int


class FolderImportCreate(ApiModel):
    """Import a folder on the server, under one of the configured import roots."""

    path: str = Field(min_length=1, max_length=4096)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    csv_path: str | None = Field(default=None, max_length=4096)


class DatasetUpdate(ApiModel):
    """Descriptive fields to change; omitted ones stay as they are."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=50)
    license: str | None = Field(default=None, max_length=200)


class DatasetRead(ApiModel):
    """A dataset with its latest version's counts."""

    id: int
    name: str
    description: str
    tags: list[str]
    license: str
    source: str
    status: DatasetStatus
    error: str | None
    import_job_id: int | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    version: int | None
    sample_count: int
    classes: list[str]
    class_counts: dict[str, dict[str, int]]

    @classmethod
    def from_rows(cls, dataset: Dataset, version: DatasetVersion | None) -> DatasetRead:
        """The schema of a dataset and its latest version."""
        return cls(
            id=dataset.id,
            name=dataset.name,
            description=dataset.description,
            tags=[str(tag) for tag in dataset.tags],
            license=dataset.license,
            source=dataset.source,
            status=dataset.status,
            error=dataset.error,
            import_job_id=dataset.import_job_id,
            created_at=dataset.created_at,
            updated_at=dataset.updated_at,
            version=version.number if version else None,
            sample_count=version.sample_count if version else 0,
            classes=[str(name) for name in version.classes] if version else [],
            class_counts=version.metadata_.get("classCounts", {}) if version else {},
        )


class VersionRead(ApiModel):
    """An immutable version with its summary, import report and provenance."""

    id: int
    dataset_id: int
    number: int
    parent_number: int | None
    message: str
    classes: list[str]
    sample_count: int
    metadata: dict[str, Any]
    created_by_job_id: int | None
    created_at: UtcDatetime

    @classmethod
    def from_version(cls, version: DatasetVersion, parent_number: int | None) -> VersionRead:
        """The schema of a version row."""
        return cls(
            id=version.id,
            dataset_id=version.dataset_id,
            number=version.number,
            parent_number=parent_number,
            message=version.message,
            classes=[str(name) for name in version.classes],
            sample_count=version.sample_count,
            metadata=version.metadata_,
            created_by_job_id=version.created_by_job_id,
            created_at=version.created_at,
        )


class SampleRead(ApiModel):
    """One sample; ``id`` is its uid, the same in every version that holds it."""

    id: str
    original_name: str
    label: str
    split: Split
    width: int
    height: int
    format: str
    group: str | None

    @classmethod
    def from_sample(cls, sample: Sample) -> SampleRead:
        """The schema of a sample row."""
        return cls(
            id=sample.uid,
            original_name=sample.original_name,
            label=sample.label,
            split=sample.split,
            width=sample.width,
            height=sample.height,
            format=sample.format,
            group=sample.group,
        )


SampleIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=32)]],
    Field(min_length=1, max_length=MAX_IDS_PER_OPERATION),
]


class RelabelOp(ApiModel):
    """Give samples a new label."""

    op: Literal["relabel"]
    sample_ids: SampleIds
    label: Label

    def to_operation(self) -> EditOperation:
        return Relabel(tuple(self.sample_ids), self.label)


class RemoveOp(ApiModel):
    """Leave samples out of the new version."""

    op: Literal["remove"]
    sample_ids: SampleIds

    def to_operation(self) -> EditOperation:
        return Remove(tuple(self.sample_ids))


class MoveOp(ApiModel):
    """Put samples in another split."""

    op: Literal["move"]
    sample_ids: SampleIds
    split: Split

    def to_operation(self) -> EditOperation:
        return Move(tuple(self.sample_ids), self.split)


class RenameClassOp(ApiModel):
    """Rename a class."""

    op: Literal["renameClass"]
    from_: Label = Field(alias="from")
    to: Label

    def to_operation(self) -> EditOperation:
        return RenameClass(self.from_, self.to)


class MergeClassesOp(ApiModel):
    """Relabel every sample of ``classes`` as ``into``."""

    op: Literal["mergeClasses"]
    classes: Annotated[list[Label], Field(min_length=1, max_length=1000)]
    into: Label

    def to_operation(self) -> EditOperation:
        return MergeClasses(tuple(self.classes), self.into)


EditOp = Annotated[
    RelabelOp | RemoveOp | MoveOp | RenameClassOp | MergeClassesOp, Field(discriminator="op")
]


class VersionCreate(ApiModel):
    """A batch of edits, applied in order to the latest version."""

    operations: Annotated[list[EditOp], Field(min_length=1, max_length=1000)]
    message: str = Field(default="", max_length=2000)


class ChangeSetRead(ApiModel):
    """One kind of change between two versions."""

    count: int
    by_class: dict[str, int]
    changes: list[dict[str, Any]]
    samples: list[dict[str, Any]]


class DiffRead(ApiModel):
    """What changed from one version to another, by sample uid."""

    from_version: int = Field(serialization_alias="from")
    to_version: int = Field(serialization_alias="to")
    added: ChangeSetRead
    removed: ChangeSetRead
    relabelled: ChangeSetRead
    moved: ChangeSetRead

    @classmethod
    def from_diff(cls, diff: VersionDiff) -> DiffRead:
        """The schema of a computed diff."""
        sets = {
            name: ChangeSetRead(
                count=part.count,
                by_class=part.by_class,
                changes=part.changes,
                samples=part.samples,
            )
            for name, part in (
                ("added", diff.added),
                ("removed", diff.removed),
                ("relabelled", diff.relabelled),
                ("moved", diff.moved),
            )
        }
        return cls(from_version=diff.from_version, to_version=diff.to_version, **sets)
