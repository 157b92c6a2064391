"""The reconciler: finds jobs that a dead worker left behind and gets them going.

A worker that dies (killed, out of memory, machine lost) stops renewing its
leases. The reconciler queues such jobs again while attempts remain and fails
them otherwise. In the distributed setup it also re-sends the message of
queued jobs that have waited too long, in case a message was lost. Workers run
:func:`run_maintenance` every few seconds; every step is safe to run in many
workers at once. Beside it, :func:`maintain_until` starts the periodic garbage
collection when it is due (see :mod:`kai.jobs.collector`).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from kai.db.engine import Database
from kai.db.tables import FINISHED_STATES, Job, JobState, utcnow
from kai.jobs.collector import PeriodicCollector
from kai.jobs.context import EventAnnouncer
from kai.jobs.dispatch import Dispatcher, PollingDispatcher
from kai.jobs.environment import JobEnvironment
from kai.jobs.hooks import run_pending_failure_hooks
from kai.jobs.leases import fail_blocked_jobs, requeue_or_fail

__all__ = [
    "maintain_until",
    "reconcile_expired_leases",
    "redispatch_stale_queued",
    "run_maintenance",
]

logger = logging.getLogger(__name__)

RECONCILE_BATCH = 100
MIN_REDISPATCH_SECONDS = 60.0


def reconcile_expired_leases(
    db: Database,
    *,
    now: datetime | None = None,
    dispatcher: Dispatcher | None = None,
    announcer: EventAnnouncer | None = None,
) -> int:
    """Queue again (or fail) running jobs whose lease expired.

    Args:
        db: The metadata database.
        now: The time to compare leases with; the current time by default.
        dispatcher: Told about each job queued again.
        announcer: Told about each job's new events.

    Returns:
        How many jobs were queued again or failed.
    """
    moment = now or utcnow()
    outcomes: dict[int, JobState] = {}
    with db.session() as session:
        expired = session.scalars(
            select(Job)
            .where(Job.state == JobState.RUNNING, Job.lease_expires_at < moment)
            .order_by(Job.id)
            .limit(RECONCILE_BATCH)
            .with_for_update(skip_locked=True)
        )
        for job in list(expired):
            reason = f"the job's worker {job.lease_owner} stopped renewing its lease"
            outcomes[job.id] = requeue_or_fail(session, job, reason)

    for job_id, state in outcomes.items():
        if announcer is not None:
            announcer.announce(job_id)
        if state is JobState.QUEUED and dispatcher is not None:
            dispatcher.dispatch(job_id)
    if outcomes:
        logger.warning("Reconciled jobs with expired leases", extra={"job_ids": list(outcomes)})
    return len(outcomes)


def redispatch_stale_queued(
    db: Database, dispatcher: Dispatcher, *, older_than_seconds: float
) -> int:
    """Re-send "job N is ready" for jobs queued longer than the given age.

    A message lost on its way (a broker restart, a failed publish) would
    otherwise leave its job queued forever. Each job is re-sent at most once
    per period across all workers, and extra messages are harmless: only one
    claim of a job succeeds. Jobs still waiting for dependencies are skipped.

    Returns:
        How many jobs were dispatched.
    """
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    with db.session() as session:
        rows = session.execute(
            select(Job.id, Job.depends_on)
            .where(Job.state == JobState.QUEUED, Job.created_at < cutoff)
            .where(or_(Job.redispatched_at.is_(None), Job.redispatched_at < cutoff))
            .order_by(Job.id)
            .limit(RECONCILE_BATCH)
        ).all()
        unfinished = _unfinished(session, {d for row in rows for d in row.depends_on or []})
        ready = [row.id for row in rows if not set(row.depends_on or []) & unfinished]
        job_ids = [job_id for job_id in ready if _mark_redispatched(session, job_id, cutoff)]

    for job_id in job_ids:
        dispatcher.dispatch(job_id)
    if job_ids:
        logger.info("Re-sent queued jobs", extra={"job_ids": job_ids})
    return len(job_ids)


def run_maintenance(env: JobEnvironment) -> None:
    """One pass of everything a worker does besides running jobs."""
    reconcile_expired_leases(env.db, dispatcher=env.dispatcher, announcer=env.announcer)
    fail_blocked_jobs(env.db, announcer=env.announcer)
    run_pending_failure_hooks(env)
    if not isinstance(env.dispatcher, PollingDispatcher):
        period = max(env.settings.lease_seconds * 2, MIN_REDISPATCH_SECONDS)
        redispatch_stale_queued(env.db, env.dispatcher, older_than_seconds=period)


def maintain_until(env: JobEnvironment, stop: threading.Event) -> None:
    """Run :func:`run_maintenance` every few seconds until ``stop`` is set.

    A worker runs this in a thread beside its jobs, so a long job does not
    hold up requeueing, blocked dependencies or failure hooks. Each pass also
    starts a garbage collection in its own thread when one is due.
    """
    interval = max(env.settings.heartbeat_seconds, env.settings.lease_seconds / 2)
    collector = PeriodicCollector(env)
    while not stop.is_set():
        try:
            run_maintenance(env)
            collector.tick()
        except SQLAlchemyError:
            logger.exception("Reconciler pass failed; retrying")
        stop.wait(interval)


def _unfinished(session: Session, job_ids: set[int]) -> set[int]:
    if not job_ids:
        return set()
    query = select(Job.id).where(Job.id.in_(job_ids), Job.state.not_in(FINISHED_STATES))
    return set(session.scalars(query))


def _mark_redispatched(session: Session, job_id: int, cutoff: datetime) -> bool:
    marked = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED)
        .where(or_(Job.redispatched_at.is_(None), Job.redispatched_at < cutoff))
        .values(redispatched_at=utcnow())
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return marked is not None
