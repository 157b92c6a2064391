"""Premade datasets: the curated catalog, and imports from public repositories.

Included before the datasets router, so ``/datasets/premade`` is never read
as a dataset id. An import is checked (id, classes, cap) before anything is
stored, then answers at once with the new dataset and its job; the job
downloads or reads the cached source and ingests it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kai.api.dependencies import (
    EditorUser,
    IdempotencyKey,
    PageQuery,
    RuntimeDep,
    SessionDep,
    ViewerUser,
)
from kai.api.schemas import Page
from kai.api.schemas.datasets import DatasetRead
from kai.api.schemas.premade import (
    PremadeDatasetRead,
    PremadeImportCreate,
    PremadeImportStarted,
)
from kai.datasets import find_by_idempotency_key, read_dataset
from kai.datasets.catalog import search_catalog
from kai.datasets.sources import resolve_request
from kai.datasets.sources.premade import start_premade_import

router = APIRouter(prefix="/datasets", tags=["premade"])


@router.get("/premade")
def list_premade_datasets(
    _user: ViewerUser,
    paging: PageQuery,
    search: Annotated[str | None, Query(max_length=200)] = None,
    category: Annotated[str | None, Query(max_length=40)] = None,
    repository: Annotated[str | None, Query(max_length=40)] = None,
) -> Page[PremadeDatasetRead]:
    """Catalog datasets matching ``search`` words, a ``category`` and a ``repository``."""
    entries = search_catalog(search=search, category=category, repository=repository)
    start = (paging.page - 1) * paging.page_size
    items = [PremadeDatasetRead.from_entry(e) for e in entries[start : start + paging.page_size]]
    return Page(items=items, total=len(entries), page=paging.page, page_size=paging.page_size)


@router.post("/import/premade", status_code=202)
def create_premade_import(
    body: PremadeImportCreate,
    runtime: RuntimeDep,
    user: EditorUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey,
) -> PremadeImportStarted:
    """Queue the import of a premade dataset; answers with the new dataset and ``jobId``."""
    if idempotency_key:
        earlier = find_by_idempotency_key(session, idempotency_key)
        if earlier is not None:
            return _started(session, earlier[0].id, earlier[1].id)
    request = resolve_request(body.source_dataset_id, body.options())
    dataset, job = start_premade_import(
        session,
        request=request,
        name=body.name,
        description=body.description,
        created_by=user.id,
        idempotency_key=idempotency_key,
        max_attempts=runtime.settings.max_attempts,
    )
    started = _started(session, dataset.id, job.id)
    session.commit()
    runtime.dispatcher.dispatch(started.job_id)
    return started


def _started(session: SessionDep, dataset_id: int, job_id: int) -> PremadeImportStarted:
    read = DatasetRead.from_rows(*read_dataset(session, dataset_id))
    return PremadeImportStarted(**read.model_dump(), job_id=job_id)
