"""The one place where a job reaches a final state.

Every path that ends a job (a handler's outcome, a cancellation, a failed
dependency, a worker that vanished) goes through :func:`end_job`, so each
final state comes with its terminal event and, for failures and
cancellations, a pending ``on_failure`` hook.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.orm import Session

from kai.db.tables import Job, JobState, utcnow
from kai.jobs.events import append_event


def end_job(
    session: Session,
    job_id: int,
    *,
    state: JobState,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    conditions: tuple[ColumnElement[bool], ...] = (),
) -> bool:
    """Move a job to a final state with its terminal event, if ``conditions`` hold.

    Args:
        session: The caller's transaction.
        job_id: The job to end.
        state: ``succeeded``, ``failed`` or ``cancelled``.
        result: The handler's result, for ``succeeded``.
        error: Why the job failed or was cancelled.
        conditions: Extra WHERE clauses, such as "the lease is still ours".

    Returns:
        Whether the job was ended by this call.
    """
    failed = state is not JobState.SUCCEEDED
    ended = session.execute(
        update(Job)
        .where(Job.id == job_id, *conditions)
        .values(
            state=state,
            result=result if not failed else None,
            error=error if failed else None,
            finished_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
            failure_hook_pending=failed,
        )
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if ended is None:
        return False
    append_event(session, job_id, *terminal_event(state, result=result, error=error))
    return True


def terminal_event(
    state: JobState, *, result: dict[str, Any] | None, error: str | None
) -> tuple[str, dict[str, Any]]:
    """The event type and payload that announce a job's final state."""
    if state is JobState.SUCCEEDED:
        return "completed", {"results": result or {}}
    return "error", {"error": error or f"The job ended {state.value}", "state": state.value}
