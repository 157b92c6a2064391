"""What a worker process holds while it runs jobs: database, blobs, kinds, dispatch."""

from __future__ import annotations

from dataclasses import dataclass

from kai.config import Settings
from kai.db.engine import Database
from kai.jobs.announcements import RedisAnnouncer, create_announcer
from kai.jobs.context import EventAnnouncer
from kai.jobs.dispatch import Dispatcher, PollingDispatcher
from kai.jobs.registry import JobRegistry
from kai.storage.blobs import BlobStore, open_blob_store

__all__ = ["JobEnvironment", "create_job_environment"]


@dataclass
class JobEnvironment:
    """A worker's collaborators, built once per worker process.

    Attributes:
        settings: Kai's settings.
        registry: The job kinds this worker can run.
        db: The metadata database.
        blobs: The blob store.
        announcer: Wakes event listeners after the worker writes events.
        dispatcher: Re-announces jobs the worker queues again.
        job_log_level: The level job processes log at; the worker's own when None.
            The CLI runs jobs it watches at ``CRITICAL``, since their events tell the
            person the same things their log lines would.
    """

    settings: Settings
    registry: JobRegistry
    db: Database
    blobs: BlobStore
    announcer: EventAnnouncer
    dispatcher: Dispatcher
    job_log_level: str | None = None

    def close(self) -> None:
        """Release the database connections and the announcer."""
        self.db.dispose()
        if isinstance(self.announcer, RedisAnnouncer):
            self.announcer.close()


def create_job_environment(
    settings: Settings,
    registry: JobRegistry,
    *,
    dispatcher: Dispatcher | None = None,
    job_log_level: str | None = None,
) -> JobEnvironment:
    """Open the database, blob store and announcer for a worker process."""
    return JobEnvironment(
        settings=settings,
        registry=registry,
        db=Database(settings.resolved_database_url),
        blobs=open_blob_store(settings.resolved_storage_url),
        announcer=create_announcer(settings),
        dispatcher=dispatcher or PollingDispatcher(),
        job_log_level=job_log_level,
    )
