"""Writing model versions: the row, its artifact files as blobs, and the model's state.

A version is written in one transaction after its files are in the blob
store, so an attempt that dies leaves no version; the blobs it stored are
collected later if nothing names them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from kai.db.tables import Blob, Model, ModelArtifact, ModelStatus, ModelVersion, utcnow
from kai.errors import NotFound
from kai.models.formats import Inspection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredFile:
    """A file of the new version, already in the blob store.

    Attributes:
        role: ``weights``, ``external_data`` or ``original``.
        name: The name its format loads it under.
        sha256: Its blob address.
        size_bytes: Its size.
    """

    role: str
    name: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class NewVersion:
    """Everything a new model version records.

    Attributes:
        framework: The framework of its format, such as ``pytorch``.
        inspection: What the import learned.
        files: The stored files, the original upload among them.
        sha256: The original file's SHA-256.
        size_bytes: The original file's size.
        provenance: Where it came from.
        safety: The safety verdict and the checks behind it.
        parent_id: The version it was made from, if any.
        job_id: The job that made it.
    """

    framework: str
    inspection: Inspection
    files: Sequence[StoredFile]
    sha256: str
    size_bytes: int
    provenance: Mapping[str, Any]
    safety: Mapping[str, Any]
    parent_id: int | None = None
    job_id: int | None = None


def lock_model(session: Session, model_id: int) -> Model:
    """The model, locked for the rest of the transaction where the database can lock rows."""
    model = session.scalar(select(Model).where(Model.id == model_id).with_for_update())
    if model is None:
        raise NotFound(f"Model {model_id} does not exist; it was deleted during the import")
    return model


def write_version(session: Session, model: Model, new: NewVersion) -> ModelVersion:
    """Add the next version of ``model`` with its artifacts, and mark the model ready."""
    number = session.scalar(
        select(func.coalesce(func.max(ModelVersion.number), 0)).where(
            ModelVersion.model_id == model.id
        )
    )
    spec = new.inspection.spec
    version = ModelVersion(
        model_id=model.id,
        number=int(number or 0) + 1,
        parent_id=new.parent_id,
        framework=new.framework,
        format=spec.format,
        architecture=spec.architecture,
        input_spec=spec.input.model_dump(mode="json", by_alias=True),
        class_names=list(spec.class_names),
        num_classes=spec.num_classes,
        parameter_count=new.inspection.parameter_count,
        layer_groups=[group.model_dump(mode="json") for group in new.inspection.layer_groups],
        provenance=dict(new.provenance),
        safety=dict(new.safety),
        inspection=_inspection_record(new.inspection),
        sha256=new.sha256,
        size_bytes=new.size_bytes,
        created_by_job_id=new.job_id,
    )
    session.add(version)
    session.flush()
    _record_files(session, version, new.files)
    model.status, model.error, model.updated_at = ModelStatus.READY, None, utcnow()
    logger.info(
        "Model version written",
        extra={"model_id": model.id, "version": version.number, "format": spec.format},
    )
    return version


def _inspection_record(inspection: Inspection) -> dict[str, Any]:
    return {
        "spec": inspection.spec.model_dump(mode="json"),
        "notes": list(inspection.notes),
        "details": dict(inspection.details),
    }


def _record_files(session: Session, version: ModelVersion, files: Sequence[StoredFile]) -> None:
    for stored in files:
        session.add(
            ModelArtifact(
                version_id=version.id,
                role=stored.role,
                name=stored.name,
                blob_sha256=stored.sha256,
                size_bytes=stored.size_bytes,
            )
        )
    rows = [{"sha256": f.sha256, "size_bytes": f.size_bytes} for f in files]
    dialect = session.get_bind().dialect.name
    upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    session.execute(upsert(Blob).on_conflict_do_nothing(index_elements=["sha256"]), rows)
    session.flush()
