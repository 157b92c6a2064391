"""Quality: analyse a dataset version, read its report and issues, and repair it.

The analysis runs as a ``dataset.quality`` job; the start route answers at
once with its ``jobId``, which the job routes and the WebSocket follow.
A repair writes its new version at once and queues that version's analysis.
The gallery's "images like this one" searches the index the analysis wrote.
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
from kai.api.schemas.quality import (
    QualityIssueRead,
    QualityReportRead,
    QualityStarted,
    RepairCreate,
    RepairRead,
    SimilarSampleRead,
    SimilarSamplesRead,
)
from kai.datasets.records import resolve_version
from kai.db.tables import IssueType
from kai.quality import (
    MAX_SIMILAR,
    find_similar_samples,
    list_issues,
    read_report,
    repair_dataset,
    start_analysis,
)

router = APIRouter(prefix="/datasets", tags=["quality"])

VersionQuery = Annotated[int | None, Query(ge=1, description="The version; the latest if absent")]


@router.post("/{dataset_id}/quality", status_code=202)
def create_quality_analysis(
    dataset_id: int,
    runtime: RuntimeDep,
    user: EditorUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey,
    version: VersionQuery = None,
) -> QualityStarted:
    """Queue the quality analysis of the latest version (or ``version``)."""
    chosen, job = start_analysis(
        session,
        dataset_id,
        version=version,
        created_by=user.id,
        idempotency_key=idempotency_key,
        max_attempts=runtime.settings.max_attempts,
    )
    started = QualityStarted(job_id=job.id, dataset_id=dataset_id, version=chosen.number)
    session.commit()
    runtime.dispatcher.dispatch(started.job_id)
    return started


@router.get("/{dataset_id}/quality")
def read_quality_report(
    dataset_id: int, _user: ViewerUser, session: SessionDep, version: VersionQuery = None
) -> QualityReportRead:
    """The newest report of the latest version (or ``version``); 404 if never analysed."""
    chosen = resolve_version(session, dataset_id, version)
    return QualityReportRead.from_view(read_report(session, chosen))


@router.get("/{dataset_id}/quality/issues")
def list_quality_issues(
    dataset_id: int,
    _user: ViewerUser,
    session: SessionDep,
    paging: PageQuery,
    version: VersionQuery = None,
    issue_type: Annotated[IssueType | None, Query(alias="type")] = None,
) -> Page[QualityIssueRead]:
    """The report's issues per sample, with evidence, optionally of one ``type``."""
    chosen = resolve_version(session, dataset_id, version)
    view = read_report(session, chosen)
    rows, total = list_issues(
        session, view.report, issue_type=issue_type, page=paging.page, page_size=paging.page_size
    )
    items = [QualityIssueRead.from_rows(issue, sample) for issue, sample in rows]
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


@router.get("/{dataset_id}/samples/{sample_id}/similar")
def list_similar_samples(
    dataset_id: int,
    sample_id: str,
    runtime: RuntimeDep,
    _user: ViewerUser,
    session: SessionDep,
    version: VersionQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SIMILAR)] = 12,
) -> SimilarSamplesRead:
    """The samples most like ``sample_id`` in the latest version (or ``version``)."""
    chosen = resolve_version(session, dataset_id, version)
    found = find_similar_samples(
        session, chosen, sample_id, data_dir=runtime.settings.resolved_data_dir, limit=limit
    )
    return SimilarSamplesRead(
        sample_id=sample_id,
        dataset_id=dataset_id,
        version=chosen.number,
        items=[SimilarSampleRead.from_similar(item) for item in found],
    )


@router.post("/{dataset_id}/quality/repair", status_code=201)
def create_quality_repair(
    dataset_id: int,
    body: RepairCreate,
    runtime: RuntimeDep,
    user: EditorUser,
    session: SessionDep,
) -> RepairRead:
    """Apply fixes from the latest report as a new version and queue its analysis."""
    fixes = [fix.to_fix() for fix in body.fixes]
    outcome = repair_dataset(session, dataset_id, fixes, created_by=user.id, message=body.message)
    answer = RepairRead(
        dataset_id=dataset_id,
        version=outcome.version.number,
        parent_version=outcome.parent.number,
        sample_count=outcome.version.sample_count,
        fixes=outcome.applied,
        job_id=outcome.job.id,
    )
    session.commit()
    runtime.dispatcher.dispatch(answer.job_id)
    return answer
