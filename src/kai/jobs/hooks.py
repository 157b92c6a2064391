"""Running a job kind's ``on_failure`` hook once per failed or cancelled job.

A job can end failed or cancelled in a process that has no registry, such as
the API cancelling a queued job. Each such ending sets ``failure_hook_pending``
on the job; a worker takes the flag with a conditional UPDATE and runs the
hook, so exactly one worker runs it, at most once.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from kai.db.tables import Job
from kai.errors import InvalidInput
from kai.jobs.context import JobContext
from kai.jobs.environment import JobEnvironment

__all__ = ["run_failure_hook", "run_pending_failure_hooks"]

logger = logging.getLogger(__name__)

HOOK_BATCH = 20


def run_failure_hook(env: JobEnvironment, job_id: int) -> bool:
    """Run the job's ``on_failure`` hook if it is still pending; returns whether it ran."""
    job = _take_pending_hook(env, job_id)
    if job is None:
        return False
    try:
        kind = env.registry.resolve(job.type)
    except InvalidInput:
        logger.warning(
            "No hook for unknown job type", extra={"job_id": job_id, "job_type": job.type}
        )
        return False
    if kind.on_failure is None:
        return False

    context = JobContext(
        job_id=job.id,
        job_type=job.type,
        config=dict(job.config),
        attempt=job.attempts,
        settings=env.settings,
        db=env.db,
        blobs=env.blobs,
        work_dir=env.settings.work_dir / str(job.id),
        announcer=env.announcer,
    )
    reason = job.error or f"Job {job.id} ended {job.state.value}"
    try:
        kind.on_failure(context, reason)
    except Exception:
        # The job has already ended; a broken hook must not stop the worker.
        logger.exception("The job's failure hook raised", extra={"job_id": job_id})
    return True


def run_pending_failure_hooks(env: JobEnvironment) -> int:
    """Run the hooks of jobs that ended failed or cancelled elsewhere; returns how many ran."""
    with env.db.session() as session:
        job_ids = list(
            session.scalars(
                select(Job.id).where(Job.failure_hook_pending.is_(True)).limit(HOOK_BATCH)
            )
        )
    return sum(run_failure_hook(env, job_id) for job_id in job_ids)


def _take_pending_hook(env: JobEnvironment, job_id: int) -> Job | None:
    with env.db.session() as session:
        taken = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.failure_hook_pending.is_(True))
            .values(failure_hook_pending=False)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        if taken is None:
            return None
        return session.get(Job, job_id, populate_existing=True)
