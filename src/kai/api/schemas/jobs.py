"""Schemas of jobs and their events."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kai.api.schemas.base import ApiModel, UtcDatetime
from kai.db.tables import Job, JobState


class JobRead(ApiModel):
    """A job with its ``status`` (the stored state), progress and outcome."""

    id: int
    type: str
    status: JobState
    progress: float
    attempts: int
    max_attempts: int
    cancel_requested: bool
    config: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    depends_on: list[int]
    created_by: int | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    last_seq: int

    @classmethod
    def from_job(cls, job: Job) -> JobRead:
        """The schema of a job row."""
        return cls(
            id=job.id,
            type=job.type,
            status=job.state,
            progress=job.progress,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            cancel_requested=job.cancel_requested,
            config=job.config,
            result=job.result,
            error=job.error,
            depends_on=[int(job_id) for job_id in job.depends_on],
            created_by=job.created_by,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            last_seq=job.last_seq,
        )


class JobEventsRead(ApiModel):
    """Stored events after a ``seq``, oldest first, in their WebSocket form."""

    job_id: int
    items: list[dict[str, Any]] = Field(default_factory=list)
    last_seq: int
