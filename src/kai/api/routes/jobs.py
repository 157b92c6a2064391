"""Jobs: list, read, their stored events, and cancellation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kai.api.dependencies import EditorUser, PageQuery, SessionDep, ViewerUser
from kai.api.schemas import Page
from kai.api.schemas.jobs import JobEventsRead, JobRead
from kai.db.tables import JobState
from kai.jobs.events import event_message, list_events
from kai.jobs.records import get_job, list_jobs, request_cancel

router = APIRouter(prefix="/jobs", tags=["jobs"])

MAX_EVENTS_PER_PAGE = 1000


@router.get("")
def list_jobs_route(
    _user: ViewerUser,
    session: SessionDep,
    paging: PageQuery,
    status: JobState | None = None,
    job_type: Annotated[str | None, Query(alias="type", max_length=64)] = None,
) -> Page[JobRead]:
    """Jobs, newest first, filtered by ``status`` and ``type``."""
    jobs, total = list_jobs(
        session, page=paging.page, page_size=paging.page_size, state=status, job_type=job_type
    )
    items = [JobRead.from_job(job) for job in jobs]
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


@router.get("/{job_id}")
def read_job(job_id: int, _user: ViewerUser, session: SessionDep) -> JobRead:
    """One job with its status, progress, attempts, result or error."""
    return JobRead.from_job(get_job(session, job_id))


@router.get("/{job_id}/events")
def list_job_events(
    job_id: int,
    _user: ViewerUser,
    session: SessionDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PER_PAGE)] = MAX_EVENTS_PER_PAGE,
) -> JobEventsRead:
    """The job's stored events after ``seq`` ``after``, oldest first, in their WebSocket form."""
    job = get_job(session, job_id)
    items = [
        event_message(event) for event in list_events(session, job_id, after_seq=after, limit=limit)
    ]
    return JobEventsRead(job_id=job_id, items=items, last_seq=job.last_seq)


@router.post("/{job_id}/cancel")
def cancel_job(job_id: int, _user: EditorUser, session: SessionDep) -> JobRead:
    """Cancel a queued job at once, or ask a running job's runner to stop it."""
    return JobRead.from_job(request_cancel(session, job_id))
