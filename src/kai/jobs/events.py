"""Job events: stored with a gapless per-job ``seq`` and announced to listeners.

Events are the single source of what a job did; the WebSocket hub and the
events route both read them from the database. The announcement is only a
wake-up call: in the embedded setup listeners poll, in the distributed one
they also wait on a Redis pub/sub channel so any API replica can serve any
subscriber.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kai.db.tables import Job, JobEvent

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "kai:job-events:"


def channel_for(job_id: int) -> str:
    """The pub/sub channel that announces a job's new events."""
    return f"{CHANNEL_PREFIX}{job_id}"


def append_event(session: Session, job_id: int, event_type: str, payload: dict[str, Any]) -> int:
    """Store one event in the caller's transaction and return its ``seq``.

    The counter lives on the job row and is bumped with ``UPDATE ... RETURNING``,
    which takes the row lock, so concurrent writers get consecutive numbers.
    """
    seq = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(last_seq=Job.last_seq + 1)
        .returning(Job.last_seq)
    ).scalar_one()
    if event_type == "progress" and "progress" in payload:
        session.execute(update(Job).where(Job.id == job_id).values(progress=payload["progress"]))
    session.add(JobEvent(job_id=job_id, seq=seq, type=event_type, payload=payload))
    return int(seq)


def list_events(
    session: Session, job_id: int, *, after_seq: int = 0, limit: int = 1000
) -> list[JobEvent]:
    """Stored events of a job with ``seq`` above ``after_seq``, oldest first."""
    query = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.seq > after_seq)
        .order_by(JobEvent.seq)
        .limit(limit)
    )
    return list(session.scalars(query))


def event_message(event: JobEvent) -> dict[str, Any]:
    """The wire form of an event: its payload with ``type``, ``seq`` and ``jobId``."""
    return {**event.payload, "type": event.type, "seq": event.seq, "jobId": event.job_id}
