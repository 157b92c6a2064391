"""Starting model imports: the source, the options, and the job that does the work.

An import always makes a new version. Without ``model_id`` it makes a new
model (in ``importing`` state until its first version lands); with one, it
adds a version to that model. The caller commits, then dispatches the job.
"""

from __future__ import annotations

import logging
import shutil
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from kai.config import Settings
from kai.db.tables import Job, Model, ModelStatus, utcnow
from kai.errors import InvalidInput, NotFound
from kai.jobs.records import submit_job
from kai.models.formats import ImportOptions
from kai.security import downloads

logger = logging.getLogger(__name__)

IMPORT_JOB = "model.import"
MAX_NAME_LENGTH = 200


class SourceKind(StrEnum):
    """Where an import's file comes from."""

    UPLOAD = "upload"
    URL = "url"
    REPOSITORY = "repository"


class ModelSource(BaseModel):
    """The file of one import, as stored in its job's configuration.

    Attributes:
        kind: An upload on the server's disk, a URL to download, or a repository's model.
        path: The uploaded file.
        url: The URL to download.
        original_name: The file's own name, for provenance.
        repository: The repository's name (:class:`kai.models.repositories.Repository`).
        reference: The model's id in the repository.
        revision: The revision asked for; the job records the one it resolved.
        trust_repository_code: An admin allowed running the repository's own code.
    """

    kind: SourceKind
    path: str | None = None
    url: str | None = None
    original_name: str = ""
    repository: str | None = None
    reference: str | None = None
    revision: str | None = None
    trust_repository_code: bool = False

    def provenance(self) -> dict[str, str]:
        """Where the file came from, for the version's record."""
        if self.kind is SourceKind.URL:
            return {"kind": "url", "url": self.url or "", "originalName": self.original_name}
        if self.kind is SourceKind.REPOSITORY:
            return {
                "kind": "repository",
                "repository": self.repository or "",
                "reference": self.reference or "",
                "revision": self.revision or "",
            }
        return {"kind": "uploaded", "originalName": self.original_name}


class ModelImportConfig(BaseModel):
    """The configuration of a ``model.import`` job.

    Attributes:
        model_id: The model the job adds a version to.
        source: The file to import.
        options: What the person said about the model.
        upload_dir: Uploaded files to delete when the job ends, if any.
    """

    model_id: int
    source: ModelSource
    options: ImportOptions = Field(default_factory=ImportOptions)
    upload_dir: str | None = None


def check_model_name(name: str) -> str:
    """The name, stripped; InvalidInput when empty or too long."""
    cleaned = name.strip()
    if not cleaned:
        raise InvalidInput("A model needs a name", details={"field": "name"})
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"A model name may have {MAX_NAME_LENGTH} characters, not {len(cleaned)}",
            details={"field": "name"},
        )
    return cleaned


def start_model_import(
    session: Session,
    *,
    name: str,
    description: str,
    source: ModelSource,
    options: ImportOptions,
    model_id: int | None = None,
    upload_dir: Path | None = None,
    created_by: int | None = None,
    idempotency_key: str | None = None,
    max_attempts: int = 3,
) -> tuple[Model, Job]:
    """Create the model (or take ``model_id``'s) and queue the import job.

    With an idempotency key used before, the earlier model and job are returned
    and nothing new is created.

    Raises:
        NotFound: ``model_id`` names no model.
        InvalidInput: The name is empty or too long.
    """
    model = _target_model(session, name, description, model_id, created_by)
    config = ModelImportConfig(
        model_id=model.id,
        source=source,
        options=options,
        upload_dir=str(upload_dir) if upload_dir else None,
    )
    job = submit_job(
        session,
        job_type=IMPORT_JOB,
        config=config.model_dump(mode="json"),
        idempotency_key=idempotency_key,
        created_by=created_by,
        max_attempts=max_attempts,
    )
    earlier = ModelImportConfig.model_validate(job.config).model_id
    if earlier != model.id:
        if model_id is None:
            session.delete(model)
        return _require_model(session, earlier), job
    model.import_job_id = job.id
    model.updated_at = utcnow()
    logger.info("Model import queued", extra={"model_id": model.id, "job_id": job.id})
    return model, job


def find_by_idempotency_key(session: Session, idempotency_key: str) -> tuple[Model, Job] | None:
    """The model and job an earlier import with this key started, if any."""
    job = session.scalar(select(Job).where(Job.idempotency_key == idempotency_key))
    if job is None or job.type != IMPORT_JOB:
        return None
    model = session.get(Model, ModelImportConfig.model_validate(job.config).model_id)
    return (model, job) if model is not None else None


def download_policy() -> downloads.AddressPolicy:
    """Which hosts a URL import may reach besides public addresses: none."""
    return downloads.PUBLIC_ONLY


def check_source_url(url: str, settings: Settings) -> None:
    """Judge a URL as the import's download will, before any job runs.

    Raises:
        UnsafeDownload: The URL breaks a download rule (scheme, address, credentials).
        DownloadFailed: Its host does not resolve.
    """
    downloads.check_url(
        url, allow_http=settings.allow_http_downloads, address_policy=download_policy()
    )


def remove_upload(upload_dir: str | Path | None) -> None:
    """Delete an upload's folder once nothing needs it."""
    if upload_dir:
        shutil.rmtree(upload_dir, ignore_errors=True)


def _target_model(
    session: Session,
    name: str,
    description: str,
    model_id: int | None,
    created_by: int | None,
) -> Model:
    if model_id is not None:
        model = _require_model(session, model_id)
        if model.status is ModelStatus.FAILED:
            model.status, model.error = ModelStatus.IMPORTING, None
        return model
    model = Model(
        name=check_model_name(name),
        description=description.strip(),
        status=ModelStatus.IMPORTING,
        created_by=created_by,
    )
    session.add(model)
    session.flush()
    return model


def _require_model(session: Session, model_id: int) -> Model:
    model = session.get(Model, model_id)
    if model is None:
        raise NotFound(f"Model {model_id} does not exist", details={"modelId": model_id})
    return model
