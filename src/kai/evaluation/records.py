"""Storing evaluations with their plots, and reading them back side by side.

An evaluation is a ``ModelEvaluation`` row whose ``metrics`` is the
document of :meth:`Evaluation.to_json`; its plots are PNG blobs, each named
by an ``EvaluationPlot`` row so garbage collection keeps them, and listed by
kind under ``plots`` in the document as well.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kai.datasets.versions import record_blobs
from kai.db.engine import Database
from kai.db.tables import (
    Dataset,
    DatasetVersion,
    EvaluationPlot,
    ModelEvaluation,
    ModelVersion,
)
from kai.errors import InvalidInput, NotFound
from kai.evaluation.reports import Evaluation, PlotKind
from kai.models.records import get_model, record_evaluation
from kai.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class StoredPlot:
    """A rendered plot in the blob store."""

    kind: PlotKind
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class EvaluationView:
    """An evaluation with the model version and dataset version it measured."""

    evaluation: ModelEvaluation
    version: ModelVersion
    dataset_version: DatasetVersion | None
    dataset: Dataset | None


def store_plots(blobs: BlobStore, evaluation: Evaluation) -> list[StoredPlot]:
    """Render the evaluation's plots and put them in the blob store; no database work."""
    stored = []
    for kind, png in evaluation.render_plots().items():
        stored.append(StoredPlot(kind, blobs.put_bytes(png), len(png)))
    return stored


def save_evaluation(
    session: Session,
    version_id: int,
    evaluation: Evaluation,
    *,
    plots: list[StoredPlot],
    dataset_version_id: int | None = None,
    job_id: int | None = None,
) -> ModelEvaluation:
    """Record the evaluation of a model version with its stored plots, in the caller's session."""
    metrics = evaluation.to_json() | {"plots": {plot.kind.value: plot.sha256 for plot in plots}}
    row = record_evaluation(
        session,
        version_id,
        metrics=metrics,
        dataset_version_id=dataset_version_id,
        job_id=job_id,
    )
    record_blobs(session, {plot.sha256: plot.size_bytes for plot in plots})
    session.add_all(
        EvaluationPlot(evaluation_id=row.id, kind=plot.kind.value, blob_sha256=plot.sha256)
        for plot in plots
    )
    session.flush()
    return row


def record_model_evaluation(
    db: Database,
    blobs: BlobStore,
    version_id: int,
    evaluation: Evaluation,
    *,
    dataset_version_id: int | None = None,
    job_id: int | None = None,
) -> int:
    """Render and store the plots, then record the evaluation in its own transaction.

    This is what a training run calls once it has its final predictions.

    Returns:
        The new evaluation's id.
    """
    plots = store_plots(blobs, evaluation)
    with db.session() as session:
        row = save_evaluation(
            session,
            version_id,
            evaluation,
            plots=plots,
            dataset_version_id=dataset_version_id,
            job_id=job_id,
        )
        return row.id


def list_model_evaluations(
    session: Session, model_id: int, *, page: int = 1, page_size: int = 50
) -> tuple[list[EvaluationView], int]:
    """One page of the evaluations of every version of a model, newest first, and the total."""
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page must be at least 1 and pageSize 1 to {MAX_PAGE_SIZE}")
    get_model(session, model_id)
    query = _views().where(ModelVersion.model_id == model_id)
    total = session.scalar(
        select(func.count())
        .select_from(ModelEvaluation)
        .join(ModelVersion, ModelVersion.id == ModelEvaluation.model_version_id)
        .where(ModelVersion.model_id == model_id)
    )
    rows = session.execute(
        query.order_by(ModelEvaluation.id.desc()).offset((page - 1) * page_size).limit(page_size)
    )
    return [EvaluationView(*row) for row in rows], total or 0


def get_evaluation(session: Session, evaluation_id: int) -> EvaluationView:
    """The evaluation with ``evaluation_id``; raises NotFound if there is none."""
    row = session.execute(_views().where(ModelEvaluation.id == evaluation_id)).first()
    if row is None:
        raise NotFound(
            f"Evaluation {evaluation_id} does not exist", details={"evaluationId": evaluation_id}
        )
    return EvaluationView(*row)


def read_plot(session: Session, blobs: BlobStore, evaluation_id: int, kind: PlotKind) -> bytes:
    """The PNG bytes of one plot of an evaluation.

    Raises:
        NotFound: No such evaluation, or it has no plot of that kind.
    """
    get_evaluation(session, evaluation_id)
    sha256 = session.scalar(
        select(EvaluationPlot.blob_sha256).where(
            EvaluationPlot.evaluation_id == evaluation_id, EvaluationPlot.kind == kind.value
        )
    )
    if sha256 is None:
        raise NotFound(
            f"Evaluation {evaluation_id} has no {kind.value} plot",
            details={"evaluationId": evaluation_id, "kind": kind.value},
        )
    return blobs.read_bytes(sha256)


def headline(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The few numbers that compare evaluations at a glance, None where absent."""
    names = ("accuracy", "balancedAccuracy", "top3Accuracy", "macroF1", "weightedF1")
    values: dict[str, float | None] = {name: _number(metrics.get(name)) for name in names}
    values["logLoss"] = _number(metrics.get("logLoss"))
    values["ece"] = _number(metrics.get("ece"))
    return values


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _views() -> Any:
    return (
        select(ModelEvaluation, ModelVersion, DatasetVersion, Dataset)
        .join(ModelVersion, ModelVersion.id == ModelEvaluation.model_version_id)
        .outerjoin(DatasetVersion, DatasetVersion.id == ModelEvaluation.dataset_version_id)
        .outerjoin(Dataset, Dataset.id == DatasetVersion.dataset_id)
    )
