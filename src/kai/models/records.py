"""Reading and changing models, their versions, artifacts, evaluations and lineage.

These functions work in the caller's session, in domain words; the API and
the CLI call them, and so do the training and evaluation services.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from kai.db.tables import (
    Job,
    JobState,
    Model,
    ModelArtifact,
    ModelEvaluation,
    ModelVersion,
    utcnow,
)
from kai.errors import Conflict, InvalidInput, NotFound
from kai.models.imports import check_model_name

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500
MAX_LINEAGE_DEPTH = 1000


def get_model(session: Session, model_id: int) -> Model:
    """The model with ``model_id``; raises NotFound if there is none."""
    model = session.get(Model, model_id)
    if model is None:
        raise NotFound(f"Model {model_id} does not exist", details={"modelId": model_id})
    return model


def list_models(
    session: Session, *, page: int = 1, page_size: int = 50, search: str | None = None
) -> tuple[list[tuple[Model, ModelVersion | None]], int]:
    """One page of models, newest first, each with its latest version, and the total count."""
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page must be at least 1 and pageSize 1 to {MAX_PAGE_SIZE}")
    query = select(Model)
    if search:
        pattern = f"%{search.strip()}%"
        query = query.where(or_(Model.name.ilike(pattern), Model.description.ilike(pattern)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    models = session.scalars(
        query.order_by(Model.id.desc()).offset((page - 1) * page_size).limit(page_size)
    ).all()
    latest = _latest_versions(session, [model.id for model in models])
    return [(model, latest.get(model.id)) for model in models], total


def read_model(session: Session, model_id: int) -> tuple[Model, ModelVersion | None]:
    """The model and its latest version, if it has one."""
    model = get_model(session, model_id)
    return model, _latest_versions(session, [model_id]).get(model_id)


def list_versions(session: Session, model_id: int) -> list[ModelVersion]:
    """The model's versions, oldest first."""
    get_model(session, model_id)
    query = select(ModelVersion).where(ModelVersion.model_id == model_id)
    return list(session.scalars(query.order_by(ModelVersion.number)))


def resolve_version(session: Session, model_id: int, number: int | None = None) -> ModelVersion:
    """Version ``number`` of the model, or its latest when None.

    Raises:
        NotFound: No such model, or no such version.
        Conflict: The model has no version yet (its import is running or failed).
    """
    model = get_model(session, model_id)
    query = select(ModelVersion).where(ModelVersion.model_id == model_id)
    if number is None:
        version = session.scalar(query.order_by(ModelVersion.number.desc()).limit(1))
        if version is None:
            raise Conflict(
                f"Model {model_id} has no version yet; it is {model.status.value}",
                details={"modelId": model_id, "status": model.status.value},
            )
        return version
    version = session.scalar(query.where(ModelVersion.number == number))
    if version is None:
        raise NotFound(
            f"Model {model_id} has no version {number}",
            details={"modelId": model_id, "version": number},
        )
    return version


def get_version(session: Session, version_id: int) -> ModelVersion:
    """The model version with ``version_id``; raises NotFound if there is none."""
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise NotFound(f"Model version {version_id} does not exist")
    return version


def list_artifacts(session: Session, version_id: int) -> list[ModelArtifact]:
    """The version's stored files, the loadable ones first."""
    query = select(ModelArtifact).where(ModelArtifact.version_id == version_id)
    return list(session.scalars(query.order_by(ModelArtifact.id)))


def list_lineage(session: Session, version: ModelVersion) -> list[ModelVersion]:
    """The version and its ancestors through ``parent_id``, newest first."""
    chain = [version]
    seen = {version.id}
    while chain[-1].parent_id is not None and len(chain) < MAX_LINEAGE_DEPTH:
        parent = session.get(ModelVersion, chain[-1].parent_id)
        if parent is None or parent.id in seen:
            break
        seen.add(parent.id)
        chain.append(parent)
    return chain


def record_evaluation(
    session: Session,
    version_id: int,
    *,
    metrics: Mapping[str, Any],
    dataset_version_id: int | None = None,
    job_id: int | None = None,
) -> ModelEvaluation:
    """Record metrics of a model version measured on a dataset version."""
    get_version(session, version_id)
    evaluation = ModelEvaluation(
        model_version_id=version_id,
        dataset_version_id=dataset_version_id,
        metrics=dict(metrics),
        created_by_job_id=job_id,
    )
    session.add(evaluation)
    session.flush()
    logger.info("Evaluation recorded", extra={"model_version_id": version_id})
    return evaluation


def list_evaluations(session: Session, version_id: int) -> list[ModelEvaluation]:
    """The version's evaluations, oldest first."""
    query = select(ModelEvaluation).where(ModelEvaluation.model_version_id == version_id)
    return list(session.scalars(query.order_by(ModelEvaluation.id)))


def update_model(
    session: Session, model_id: int, *, name: str | None = None, description: str | None = None
) -> Model:
    """Change the model's name or description; its versions are untouched."""
    model = get_model(session, model_id)
    if name is not None:
        model.name = check_model_name(name)
    if description is not None:
        model.description = description.strip()
    model.updated_at = utcnow()
    return model


def import_running(session: Session, model: Model) -> bool:
    """Whether the model's latest import job is still queued or running."""
    if model.import_job_id is None:
        return False
    state = session.scalar(select(Job.state).where(Job.id == model.import_job_id))
    return state in (JobState.QUEUED, JobState.RUNNING)


def _latest_versions(session: Session, model_ids: list[int]) -> dict[int, ModelVersion]:
    if not model_ids:
        return {}
    newest = (
        select(ModelVersion.model_id, func.max(ModelVersion.number).label("number"))
        .where(ModelVersion.model_id.in_(model_ids))
        .group_by(ModelVersion.model_id)
        .subquery()
    )
    query = select(ModelVersion).join(
        newest,
        (ModelVersion.model_id == newest.c.model_id) & (ModelVersion.number == newest.c.number),
    )
    return {version.model_id: version for version in session.scalars(query)}
