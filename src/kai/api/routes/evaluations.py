"""Evaluations: score a model version on a dataset version, compare and read the results.

Starting an evaluation checks at once that the model's classes and the
dataset's share at least one name (a 422 otherwise) and answers with the
``model.evaluate`` job's id, which the job routes and the WebSocket follow.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from kai.api.dependencies import (
    EditorUser,
    IdempotencyKey,
    PageQuery,
    RuntimeDep,
    SessionDep,
    ViewerUser,
)
from kai.api.schemas import Page
from kai.api.schemas.evaluations import (
    EvaluationCreate,
    EvaluationRead,
    EvaluationStarted,
    EvaluationSummaryRead,
)
from kai.evaluation import (
    PlotKind,
    get_evaluation,
    list_model_evaluations,
    read_plot,
    start_evaluation,
)

router = APIRouter(tags=["evaluations"])


@router.post("/models/{model_id}/evaluations", status_code=202)
def create_evaluation(
    model_id: int,
    body: EvaluationCreate,
    runtime: RuntimeDep,
    user: EditorUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey,
) -> EvaluationStarted:
    """Queue the evaluation of the latest model version (or ``modelVersion``) on a dataset."""
    start = start_evaluation(
        session,
        model_id,
        dataset_id=body.dataset_id,
        dataset_version=body.dataset_version,
        model_version=body.model_version,
        split=body.split,
        created_by=user.id,
        idempotency_key=idempotency_key,
        max_attempts=runtime.settings.max_attempts,
    )
    started = EvaluationStarted.from_start(model_id, start)
    session.commit()
    runtime.dispatcher.dispatch(started.job_id)
    return started


@router.get("/models/{model_id}/evaluations")
def list_evaluations_route(
    model_id: int, _user: ViewerUser, session: SessionDep, paging: PageQuery
) -> Page[EvaluationSummaryRead]:
    """Evaluations of every version of the model, newest first, with headline metrics."""
    views, total = list_model_evaluations(
        session, model_id, page=paging.page, page_size=paging.page_size
    )
    items = [EvaluationSummaryRead.from_view(view) for view in views]
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


@router.get("/evaluations/{evaluation_id}")
def read_evaluation(evaluation_id: int, _user: ViewerUser, session: SessionDep) -> EvaluationRead:
    """One evaluation with its full metrics document."""
    return EvaluationRead.from_view(get_evaluation(session, evaluation_id))


@router.get(
    "/evaluations/{evaluation_id}/plots/{kind}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The plot as PNG"}},
)
def read_evaluation_plot(
    evaluation_id: int, kind: PlotKind, runtime: RuntimeDep, _user: ViewerUser, session: SessionDep
) -> Response:
    """One plot of an evaluation: ``confusion-matrix`` or ``reliability-diagram``."""
    png = read_plot(session, runtime.blobs, evaluation_id, kind)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
