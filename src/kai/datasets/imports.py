"""Starting imports: what an import reads, checked up front, and its job record.

An import source is a ZIP archive, a CSV mapping with its images (a second
ZIP or a server folder), or a server folder alone. :func:`check_source`
plans the import from names only (the archive's central directory, the CSV,
the folder listing), so an unusable upload is refused before any job runs;
the job plans again from the same files and then reads the images.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from kai.config import Settings
from kai.datasets.csvmap import CsvColumns, match_files, read_mapping
from kai.datasets.filesets import FileSet, ZipFileSet, open_folder, resolve_import_path
from kai.datasets.layouts import MIN_CLASSES, Layout, detect_layout
from kai.datasets.sources import PremadeRequest, open_premade
from kai.db.tables import Dataset, DatasetStatus, Job
from kai.errors import InvalidInput
from kai.jobs.records import submit_job

logger = logging.getLogger(__name__)

IMPORT_JOB = "dataset.import"
ADD_FILES_JOB = "dataset.add_files"
MAX_NAME_LENGTH = 200


class SourceKind(StrEnum):
    """Where an import's files come from."""

    ZIP = "zip"
    CSV = "csv"
    FOLDER = "folder"
    PREMADE = "premade"


class ImportSource(BaseModel):
    """The files of one import, as stored in its job's configuration.

    Attributes:
        kind: ZIP, CSV mapping or server folder.
        archive_path: The uploaded ZIP (the images, for a CSV with a ZIP).
        csv_path: The uploaded CSV mapping.
        folder_path: A server folder under an import root (the images, for a CSV).
        original_name: The uploaded file's or folder's own name, for provenance.
        images_name: The images archive's own name, for a CSV upload.
        columns: Column names chosen for a CSV mapping; unset ones are detected.
        premade: The checked request of a premade import.
    """

    kind: SourceKind
    archive_path: str | None = None
    csv_path: str | None = None
    folder_path: str | None = None
    original_name: str = ""
    images_name: str = ""
    columns: dict[str, str] = Field(default_factory=dict)
    premade: PremadeRequest | None = None

    def provenance(self) -> dict[str, str]:
        """Where the files came from, for the version's metadata."""
        record = {"kind": self.kind.value, "originalName": self.original_name}
        if self.images_name:
            record["imagesName"] = self.images_name
        if self.folder_path and self.kind is SourceKind.FOLDER:
            record["folder"] = self.folder_path
        return record


class IngestJobConfig(BaseModel):
    """The configuration of an import or add-files job.

    Attributes:
        dataset_id: The dataset the job writes a version of.
        source: The files to read.
        upload_dir: Uploaded files to delete when the job ends, if any.
        message: The new version's message.
    """

    dataset_id: int
    source: ImportSource
    upload_dir: str | None = None
    message: str = ""


@contextmanager
def open_source(
    source: ImportSource, settings: Settings, *, min_classes: int = MIN_CLASSES
) -> Iterator[tuple[FileSet, Layout]]:
    """Open the source's images and plan the import from names only."""
    with ExitStack() as stack:
        if source.kind is SourceKind.PREMADE:
            if source.premade is None:
                raise InvalidInput("The import source lacks its premade request")
            opened, layout = stack.enter_context(open_premade(source.premade, settings))
            yield opened.files, layout
            return
        files = stack.enter_context(_open_images(source, settings))
        if source.kind is SourceKind.CSV:
            mapping = read_mapping(
                Path(_required(source.csv_path, "csv_path")),
                columns=CsvColumns(**source.columns),
                max_rows=settings.max_archive_entries,
            )
            layout = match_files(mapping, files.names(), min_classes=min_classes)
        else:
            layout = detect_layout(files.names(), min_classes=min_classes)
        layout.skipped[:0] = files.skipped
        yield files, layout


def check_source(
    source: ImportSource, settings: Settings, *, min_classes: int = MIN_CLASSES
) -> Layout:
    """Plan the import without reading any image; raises what the job would raise first."""
    with open_source(source, settings, min_classes=min_classes) as (_, layout):
        return layout


def _open_images(source: ImportSource, settings: Settings) -> FileSet:
    if source.kind is SourceKind.FOLDER or (source.kind is SourceKind.CSV and source.folder_path):
        folder = resolve_import_path(_required(source.folder_path, "folder_path"), settings)
        return open_folder(folder, settings)
    return ZipFileSet(Path(_required(source.archive_path, "archive_path")), settings)


def _required(value: str | None, field: str) -> str:
    if not value:
        raise InvalidInput(f"The import source lacks its {field}")
    return value


def check_dataset_name(name: str) -> str:
    """The name, stripped; InvalidInput when empty or too long."""
    cleaned = name.strip()
    if not cleaned:
        raise InvalidInput("A dataset needs a name", details={"field": "name"})
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"A dataset name may have {MAX_NAME_LENGTH} characters, not {len(cleaned)}",
            details={"field": "name"},
        )
    return cleaned


def start_import(
    session: Session,
    *,
    name: str,
    description: str,
    source: ImportSource,
    upload_dir: Path | None = None,
    created_by: int | None = None,
    idempotency_key: str | None = None,
    max_attempts: int = 3,
    job_type: str = IMPORT_JOB,
) -> tuple[Dataset, Job]:
    """Create the dataset in ``importing`` state and queue its import job.

    With an idempotency key used before, the earlier dataset and job are
    returned and nothing new is created. The caller commits, then dispatches.
    """
    dataset = Dataset(
        name=check_dataset_name(name),
        description=description.strip(),
        source=source.kind.value + (f":{source.original_name}" if source.original_name else ""),
        status=DatasetStatus.IMPORTING,
        created_by=created_by,
    )
    session.add(dataset)
    session.flush()
    config = IngestJobConfig(
        dataset_id=dataset.id,
        source=source,
        upload_dir=str(upload_dir) if upload_dir else None,
    )
    job = submit_job(
        session,
        job_type=job_type,
        config=config.model_dump(mode="json"),
        idempotency_key=idempotency_key,
        created_by=created_by,
        max_attempts=max_attempts,
    )
    earlier = session.scalar(
        select(Dataset).where(Dataset.import_job_id == job.id, Dataset.id != dataset.id)
    )
    if earlier is not None:
        session.delete(dataset)
        return earlier, job
    dataset.import_job_id = job.id
    logger.info("Dataset import queued", extra={"dataset_id": dataset.id, "job_id": job.id})
    return dataset, job


def find_by_idempotency_key(session: Session, idempotency_key: str) -> tuple[Dataset, Job] | None:
    """The dataset and job an earlier request with this key started, if any."""
    job = session.scalar(select(Job).where(Job.idempotency_key == idempotency_key))
    if job is None:
        return None
    dataset = session.scalar(select(Dataset).where(Dataset.import_job_id == job.id))
    if dataset is None:
        config = IngestJobConfig.model_validate(job.config) if job.type == ADD_FILES_JOB else None
        dataset = session.get(Dataset, config.dataset_id) if config else None
    return (dataset, job) if dataset is not None else None


def start_add_files(
    session: Session,
    *,
    dataset_id: int,
    source: ImportSource,
    upload_dir: Path | None = None,
    message: str = "",
    created_by: int | None = None,
    idempotency_key: str | None = None,
) -> Job:
    """Queue a job adding the source's images to the dataset as a new version."""
    config = IngestJobConfig(
        dataset_id=dataset_id,
        source=source,
        upload_dir=str(upload_dir) if upload_dir else None,
        message=message,
    )
    job = submit_job(
        session,
        job_type=ADD_FILES_JOB,
        config=config.model_dump(mode="json"),
        idempotency_key=idempotency_key,
        created_by=created_by,
    )
    logger.info("Adding files queued", extra={"dataset_id": dataset_id, "job_id": job.id})
    return job


def remove_upload(upload_dir: str | Path | None) -> None:
    """Delete an upload's folder once nothing needs it."""
    if upload_dir:
        shutil.rmtree(upload_dir, ignore_errors=True)
