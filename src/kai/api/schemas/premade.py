"""Schemas of the premade catalog and of premade imports."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from kai.api.schemas.base import ApiModel
from kai.api.schemas.datasets import DatasetRead
from kai.datasets.catalog import CatalogEntry, Category
from kai.datasets.sources import PremadeOptions, parse_source_id

ClassName = Annotated[str, Field(max_length=200)]


class PremadeClassRead(ApiModel):
    """A class of a catalog dataset, with its image count when known."""

    name: str
    count: int | None


class PremadeSourceRead(ApiModel):
    """One repository that carries a catalog dataset."""

    repository: str
    reference: str
    config: str | None
    revision: str | None
    source_dataset_id: str


class PremadeDatasetRead(ApiModel):
    """A catalog dataset; import it by its ``id`` or by one of its sources' ids."""

    id: str
    name: str
    category: Category
    task: str
    description: str
    license: str
    homepage: str
    num_images: int | None
    num_classes: int
    download_size: str
    classes: list[PremadeClassRead]
    repositories: list[str]
    sources: list[PremadeSourceRead]

    @classmethod
    def from_entry(cls, entry: CatalogEntry) -> PremadeDatasetRead:
        """The schema of a catalog entry."""
        sources = [parse_source_id(source) for source in entry.sources]
        return cls(
            id=entry.id,
            name=entry.name,
            category=entry.category,
            task=entry.task,
            description=entry.description,
            license=entry.license,
            homepage=entry.homepage,
            num_images=entry.num_images,
            num_classes=entry.class_count,
            download_size=entry.download_size,
            classes=[PremadeClassRead(name=c.name, count=c.count) for c in entry.classes],
            repositories=entry.repositories,
            sources=[
                PremadeSourceRead(
                    repository=ref.repository.value,
                    reference=ref.reference,
                    config=ref.config,
                    revision=ref.revision,
                    source_dataset_id=ref.source_id,
                )
                for ref in sources
            ],
        )


class PremadeImportCreate(ApiModel):
    """Import a catalog dataset (``dtd``) or a named source (``huggingface:ORG/NAME``)."""

    source_dataset_id: str = Field(default="", max_length=4096)
    include_metadata: bool = False
    selected_classes: list[ClassName] | None = Field(default=None, max_length=10_000)
    name: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", max_length=10_000)
    max_samples_per_class: int | None = None

    def options(self) -> PremadeOptions:
        """The import options, checked later by the service."""
        return PremadeOptions(
            selected_classes=self.selected_classes,
            max_samples_per_class=self.max_samples_per_class,
            include_metadata=self.include_metadata,
        )


class PremadeImportStarted(DatasetRead):
    """The new dataset, importing, and its import job."""

    job_id: int
