"""Leases: which worker runs a job, for how long, and what happens when it stops.

A worker claims a queued job with a conditional UPDATE (``WHERE state =
'queued'``), which the database applies to one claimer only, on SQLite and
PostgreSQL alike. The lease names its owner and expires unless the owner's
heartbeat renews it; every later write by the owner (renewal, outcome,
release) holds only while the lease is still its own, so a worker that lost
its lease to the reconciler cannot overwrite the next attempt.

A job whose dependencies have not all succeeded is not claimable. When one
of them failed or was cancelled, the claim pass fails the waiting job with
the reason instead.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kai.db.engine import Database
from kai.db.tables import Job, JobState, utcnow
from kai.jobs._transitions import end_job
from kai.jobs.context import EventAnnouncer
from kai.jobs.events import append_event

__all__ = [
    "ClaimedJob",
    "Heartbeat",
    "claim_job",
    "fail_blocked_jobs",
    "finish_job",
    "new_lease_owner",
    "release_job",
    "release_leases_of",
    "renew_lease",
    "requeue_or_fail",
]

logger = logging.getLogger(__name__)

CLAIM_BATCH = 50
BLOCKED_BATCH = 500


@dataclass(frozen=True)
class ClaimedJob:
    """A job whose lease a worker holds.

    Attributes:
        id: The job's id.
        type: The job's registered type.
        config: The job's configuration.
        attempt: Which attempt this is, counting from 1.
        max_attempts: How many attempts the job may have.
        owner: The lease owner, unique to this attempt.
    """

    id: int
    type: str
    config: dict[str, Any]
    attempt: int
    max_attempts: int
    owner: str


@dataclass(frozen=True)
class Heartbeat:
    """What a lease renewal found.

    Attributes:
        held: Whether the owner still holds the lease (it was renewed).
        cancel_requested: Whether someone asked to cancel the job.
    """

    held: bool
    cancel_requested: bool


def new_lease_owner() -> str:
    """A lease owner name unique to one attempt: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def claim_job(
    db: Database,
    *,
    owner: str,
    lease_seconds: float,
    job_id: int | None = None,
    announcer: EventAnnouncer | None = None,
) -> ClaimedJob | None:
    """Claim the oldest claimable queued job (or exactly ``job_id``).

    Waiting jobs whose dependency failed or was cancelled are failed on the way.

    Args:
        db: The metadata database.
        owner: The lease owner, from :func:`new_lease_owner`.
        lease_seconds: How long the lease lasts without a heartbeat.
        job_id: Claim only this job, as a Celery task does.
        announcer: Told about jobs this pass failed.

    Returns:
        The claimed job, or None when nothing is claimable.
    """
    failed: list[int] = []
    claimed: ClaimedJob | None = None
    with db.session() as session:
        for candidate in _queued_candidates(session, job_id):
            reason = _dependency_verdict(session, candidate)
            if reason == _WAITING:
                continue
            if reason is not None:
                if _fail_waiting_job(session, candidate.id, reason):
                    failed.append(candidate.id)
                continue
            claimed = _take_lease(session, candidate, owner, lease_seconds)
            if claimed is not None:
                break
    _announce(announcer, failed)
    if claimed is not None:
        logger.info(
            "Job claimed",
            extra={"job_id": claimed.id, "attempt": claimed.attempt, "owner": owner},
        )
    return claimed


def fail_blocked_jobs(db: Database, *, announcer: EventAnnouncer | None = None) -> list[int]:
    """Fail queued jobs whose dependency failed or was cancelled; returns their ids.

    :func:`claim_job` does the same for the jobs it looks at; workers also run
    this between claims, so a blocked job fails promptly while workers are busy.
    """
    failed: list[int] = []
    with db.session() as session:
        waiting = session.scalars(
            select(Job).where(Job.state == JobState.QUEUED).order_by(Job.id).limit(BLOCKED_BATCH)
        )
        for job in [job for job in waiting if job.depends_on]:
            reason = _dependency_verdict(session, job)
            if reason not in (None, _WAITING) and _fail_waiting_job(session, job.id, str(reason)):
                failed.append(job.id)
    _announce(announcer, failed)
    return failed


def renew_lease(db: Database, job_id: int, *, owner: str, lease_seconds: float) -> Heartbeat:
    """Extend the lease if ``owner`` still holds it, and read the cancellation flag."""
    with db.session() as session:
        cancel_requested = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.RUNNING, Job.lease_owner == owner)
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
            .returning(Job.cancel_requested)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
    if cancel_requested is None:
        return Heartbeat(held=False, cancel_requested=False)
    return Heartbeat(held=True, cancel_requested=bool(cancel_requested))


def finish_job(
    db: Database,
    job_id: int,
    *,
    owner: str,
    state: JobState,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Record a job's outcome and clear its lease, if ``owner`` still holds it.

    Returns:
        Whether the outcome was recorded; False means the lease was lost.
    """
    with db.session() as session:
        return end_job(
            session,
            job_id,
            state=state,
            result=result,
            error=error,
            conditions=(Job.state == JobState.RUNNING, Job.lease_owner == owner),
        )


def release_job(
    db: Database,
    job_id: int,
    *,
    owner: str,
    reason: str,
    count_attempt: bool = True,
) -> JobState | None:
    """Give a job back after its attempt ended without an outcome.

    The job is queued again while attempts remain, else it fails with ``reason``.

    Args:
        db: The metadata database.
        job_id: The job.
        owner: The lease owner giving it back.
        reason: Why the attempt ended, such as "the job's process exited with code 3".
        count_attempt: False when the attempt was interrupted through no fault of the
            job (a worker shutting down), so it does not use up an attempt.

    Returns:
        The job's new state, or None if ``owner`` no longer held the lease.
    """
    with db.session() as session:
        job = session.scalar(
            select(Job)
            .where(Job.id == job_id, Job.state == JobState.RUNNING, Job.lease_owner == owner)
            .with_for_update()
        )
        if job is None:
            return None
        return _release(session, job, reason, count_attempt=count_attempt)


def release_leases_of(db: Database, owner_prefix: str, *, reason: str) -> list[int]:
    """Give back every running job whose lease owner starts with ``owner_prefix``.

    Used when a worker process is known to be gone, so its jobs need not wait
    for their leases to expire.

    Returns:
        The ids of the jobs queued again.
    """
    requeued: list[int] = []
    with db.session() as session:
        jobs = session.scalars(
            select(Job)
            .where(Job.state == JobState.RUNNING, Job.lease_owner.startswith(owner_prefix))
            .with_for_update()
        )
        for job in list(jobs):
            if _release(session, job, reason, count_attempt=True) is JobState.QUEUED:
                requeued.append(job.id)
    return requeued


def requeue_or_fail(session: Session, job: Job, reason: str) -> JobState:
    """Queue a running job again if attempts remain, else fail it with ``reason``.

    The caller has locked the job's row in this transaction and checked that the
    lease it read is still current. A job whose cancellation was requested is
    cancelled instead.
    """
    return _release(session, job, reason, count_attempt=True)


def _release(session: Session, job: Job, reason: str, *, count_attempt: bool) -> JobState:
    if job.cancel_requested:
        end_job(session, job.id, state=JobState.CANCELLED, error=f"Job {job.id} was cancelled")
        return JobState.CANCELLED

    attempts = job.attempts if count_attempt else max(job.attempts - 1, 0)
    if attempts >= job.max_attempts:
        plural = "" if attempts == 1 else "s"
        error = f"{reason} (gave up after {attempts} attempt{plural})"
        end_job(session, job.id, state=JobState.FAILED, error=error)
        logger.warning("Job failed", extra={"job_id": job.id, "reason": error})
        return JobState.FAILED

    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(
            state=JobState.QUEUED,
            attempts=attempts,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    retry = "it is queued again" if count_attempt else "it is queued again, attempt not counted"
    message = f"Attempt {job.attempts} ended: {reason}; {retry}"
    append_event(session, job.id, "log", {"level": "warning", "message": message})
    logger.warning("Job requeued", extra={"job_id": job.id, "reason": reason})
    return JobState.QUEUED


_WAITING = "waiting"


def _queued_candidates(session: Session, job_id: int | None) -> list[Job]:
    query = select(Job).where(Job.state == JobState.QUEUED)
    if job_id is not None:
        query = query.where(Job.id == job_id)
    return list(session.scalars(query.order_by(Job.id).limit(CLAIM_BATCH)))


def _dependency_verdict(session: Session, job: Job) -> str | None:
    """None when every dependency succeeded, _WAITING, or why the job cannot run."""
    if not job.depends_on:
        return None
    rows = session.execute(
        select(Job.id, Job.state, Job.error).where(Job.id.in_(job.depends_on))
    ).all()
    found = {row.id: row for row in rows}
    waiting = False
    for dependency_id in job.depends_on:
        row = found.get(dependency_id)
        if row is None:
            return f"Waiting for job {dependency_id} failed: the job no longer exists"
        if row.state in (JobState.FAILED, JobState.CANCELLED):
            why = row.error or f"it was {row.state.value}"
            return f"Waiting for job {dependency_id} failed: {why}"
        waiting = waiting or row.state is not JobState.SUCCEEDED
    return _WAITING if waiting else None


def _fail_waiting_job(session: Session, job_id: int, reason: str) -> bool:
    ended = end_job(
        session,
        job_id,
        state=JobState.FAILED,
        error=reason,
        conditions=(Job.state == JobState.QUEUED,),
    )
    if ended:
        logger.warning("Job failed", extra={"job_id": job_id, "reason": reason})
    return ended


def _take_lease(session: Session, job: Job, owner: str, lease_seconds: float) -> ClaimedJob | None:
    now = utcnow()
    attempt = session.execute(
        update(Job)
        .where(
            Job.id == job.id,
            Job.state == JobState.QUEUED,
            Job.attempts < Job.max_attempts,
        )
        .values(
            state=JobState.RUNNING,
            attempts=Job.attempts + 1,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=now,
        )
        .returning(Job.attempts)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if attempt is None:
        return None
    return ClaimedJob(
        id=job.id,
        type=job.type,
        config=dict(job.config),
        attempt=int(attempt),
        max_attempts=job.max_attempts,
        owner=owner,
    )


def _announce(announcer: EventAnnouncer | None, job_ids: list[int]) -> None:
    if announcer is None:
        return
    for job_id in job_ids:
        announcer.announce(job_id)
