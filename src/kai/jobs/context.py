"""What a job handler sees while it runs in its child process."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Job
from kai.errors import JobCancelled
from kai.jobs.events import append_event
from kai.storage.blobs import BlobStore

logger = logging.getLogger(__name__)


class EventAnnouncer(Protocol):
    """Wakes listeners after an event is committed."""

    def announce(self, job_id: int) -> None:
        """Say that the job has new events."""


class SilentAnnouncer:
    """For the embedded setup: listeners poll the database."""

    def announce(self, job_id: int) -> None:
        return None


@dataclass
class JobContext:
    """A running job's handle on Kai.

    Attributes:
        job_id: The job's id.
        job_type: The job's registered type.
        config: The job's stored configuration.
        attempt: Which attempt this is, counting from 1.
        settings: Kai's settings.
        db: The metadata database.
        blobs: The blob store.
        work_dir: Scratch space for this attempt, removed when it ends.
    """

    job_id: int
    job_type: str
    config: dict[str, Any]
    attempt: int
    settings: Settings
    db: Database
    blobs: BlobStore
    work_dir: Path
    announcer: EventAnnouncer = field(default_factory=SilentAnnouncer)
    _last_progress_at: float = 0.0
    _last_cancel_check_at: float = 0.0

    def emit(self, event_type: str, payload: dict[str, Any]) -> int:
        """Store an event and announce it; returns its ``seq``."""
        with self.db.session() as session:
            seq = append_event(session, self.job_id, event_type, payload)
        self.announcer.announce(self.job_id)
        return seq

    def progress(
        self, fraction: float, *, stage: str = "", force: bool = False, **fields: Any
    ) -> None:
        """Emit a progress event, at most a few per second unless ``force``.

        Args:
            fraction: Overall progress from 0 to 1.
            stage: What the job is doing, such as ``extract`` or ``ingest``.
            force: Emit even if the last progress event was very recent.
            **fields: Extra fields for the event, such as ``currentEpoch``.
        """
        now = time.monotonic()
        if not force and now - self._last_progress_at < 0.25:
            return
        self._last_progress_at = now
        payload = {"progress": round(min(max(fraction, 0.0), 1.0), 4), **fields}
        if stage:
            payload["stage"] = stage
        self.emit("progress", payload)

    def log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        """Emit a human-readable log event and write it to the worker log."""
        logger.log(logging.getLevelName(level.upper()), message, extra={"job_id": self.job_id})
        self.emit("log", {"level": level, "message": message, **fields})

    def check_cancelled(self) -> None:
        """Raise JobCancelled if cancellation was requested (checked at most once a second)."""
        now = time.monotonic()
        if now - self._last_cancel_check_at < 1.0:
            return
        self._last_cancel_check_at = now
        with self.db.session() as session:
            requested = session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id))
        if requested:
            raise JobCancelled(f"Job {self.job_id} was cancelled")
