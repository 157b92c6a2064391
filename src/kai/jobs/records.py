"""Job records: submit, read, list and cancel jobs.

These functions work in the caller's session and never run anything. After
the caller commits a submitted job, it calls ``runtime.dispatcher.dispatch(job.id)``
so that a worker learns the job is ready.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kai.db.tables import FINISHED_STATES, Job, JobState
from kai.errors import Conflict, InvalidInput, NotFound
from kai.jobs._transitions import end_job

__all__ = ["get_job", "list_jobs", "request_cancel", "submit_job"]

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500


def submit_job(
    session: Session,
    *,
    job_type: str,
    config: Mapping[str, Any],
    idempotency_key: str | None = None,
    created_by: int | None = None,
    depends_on: Iterable[int] = (),
    max_attempts: int = 3,
) -> Job:
    """Queue a job, or return the job already submitted under ``idempotency_key``.

    Args:
        session: The caller's transaction; the job is visible to workers once it commits.
        job_type: A type registered in the workers' JobRegistry, such as ``dataset.import``.
        config: The job's JSON configuration, handed to its handler.
        idempotency_key: Makes a repeated submission return the first job.
        created_by: The submitting user's id.
        depends_on: Jobs that must succeed before this one runs; if one fails or is
            cancelled, this job fails with the reason.
        max_attempts: How many times the job may start before it is given up.

    Returns:
        The new job, or the earlier one with the same idempotency key.

    Raises:
        InvalidInput: ``max_attempts`` is below 1 or a dependency does not exist.
        Conflict: The idempotency key was used for a job of another type.
    """
    if max_attempts < 1:
        raise InvalidInput(f"max_attempts must be at least 1, not {max_attempts}")
    if idempotency_key is not None:
        existing = _find_by_key(session, idempotency_key)
        if existing is not None:
            return _check_same_type(existing, job_type)

    dependencies = sorted({int(job_id) for job_id in depends_on})
    _check_dependencies_exist(session, dependencies)
    job = Job(
        type=job_type,
        config=dict(config),
        state=JobState.QUEUED,
        idempotency_key=idempotency_key,
        created_by=created_by,
        depends_on=dependencies,
        max_attempts=max_attempts,
    )
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError:
        # Another transaction inserted the same key between our check and insert.
        existing = _find_by_key(session, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _check_same_type(existing, job_type)
    logger.info("Job submitted", extra={"job_id": job.id, "job_type": job_type})
    return job


def get_job(session: Session, job_id: int) -> Job:
    """The job with ``job_id``; raises NotFound if there is none."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFound(f"Job {job_id} does not exist")
    return job


def list_jobs(
    session: Session,
    *,
    page: int = 1,
    page_size: int = 50,
    state: JobState | str | None = None,
    job_type: str | None = None,
) -> tuple[list[Job], int]:
    """One page of jobs, newest first, with the total count matching the filters.

    Raises:
        InvalidInput: The page, page size or state is out of range.
    """
    if page < 1:
        raise InvalidInput(f"page must be at least 1, not {page}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")

    query = select(Job)
    if state is not None:
        query = query.where(Job.state == _parse_state(state))
    if job_type is not None:
        query = query.where(Job.type == job_type)

    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page_query = query.order_by(Job.id.desc()).offset((page - 1) * page_size).limit(page_size)
    return list(session.scalars(page_query)), total


def request_cancel(session: Session, job_id: int) -> Job:
    """Cancel a job: a queued one at once, a running one through its runner.

    A queued job becomes ``cancelled`` with an ``error`` event saying so. A running
    job gets ``cancel_requested``; its runner terminates the job's process and
    records ``cancelled``. Cancelling a job again while that happens is allowed.

    Raises:
        NotFound: There is no such job.
        Conflict: The job has already finished.
    """
    job = get_job(session, job_id)
    _check_not_finished(job)
    if job.state is JobState.QUEUED:
        cancelled = end_job(
            session,
            job_id,
            state=JobState.CANCELLED,
            error=f"Job {job_id} was cancelled before it started",
            conditions=(Job.state == JobState.QUEUED,),
        )
        if cancelled:
            logger.info("Queued job cancelled", extra={"job_id": job_id})
            return get_job(session, job_id)

    # Running, or claimed by a worker between our read and the update above.
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    job = get_job(session, job_id)
    if job.state is JobState.RUNNING:
        logger.info("Cancellation requested", extra={"job_id": job_id})
    return job


def _find_by_key(session: Session, idempotency_key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.idempotency_key == idempotency_key))


def _check_same_type(job: Job, job_type: str) -> Job:
    if job.type != job_type:
        raise Conflict(
            f"Idempotency key {job.idempotency_key!r} already belongs to job {job.id} "
            f"of type {job.type!r}, not {job_type!r}; use a new key"
        )
    return job


def _check_dependencies_exist(session: Session, dependencies: list[int]) -> None:
    if not dependencies:
        return
    found = set(session.scalars(select(Job.id).where(Job.id.in_(dependencies))))
    missing = [job_id for job_id in dependencies if job_id not in found]
    if missing:
        raise InvalidInput(f"The job depends on jobs that do not exist: {missing}")


def _check_not_finished(job: Job) -> None:
    if job.state in FINISHED_STATES:
        raise Conflict(
            f"Job {job.id} has already {job.state.value}; only queued or running jobs "
            "can be cancelled",
            details={"state": job.state.value},
        )


def _parse_state(state: JobState | str) -> JobState:
    try:
        return JobState(state)
    except ValueError as exc:
        names = ", ".join(s.value for s in JobState)
        raise InvalidInput(f"Unknown job state {state!r}; use one of: {names}") from exc
