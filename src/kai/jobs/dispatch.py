"""Telling workers that a job is ready.

The database owns the job; a dispatcher only delivers the news. The embedded
setup needs no message at all because local workers poll the database; the
distributed one sends a Celery message per job.
"""

from __future__ import annotations

from typing import Protocol

from kai.config import Settings


class Dispatcher(Protocol):
    """Delivers "job N is ready" to whoever runs jobs."""

    def dispatch(self, job_id: int) -> None:
        """Announce that the job is queued."""


class PollingDispatcher:
    """For local workers, which find queued jobs by polling the database."""

    def dispatch(self, job_id: int) -> None:
        return None


def create_dispatcher(settings: Settings) -> Dispatcher:
    """Celery when ``KAI_BROKER_URL`` is set, else polling local workers."""
    if not settings.broker_url:
        return PollingDispatcher()
    # Celery is imported only where a broker is configured.
    from kai.jobs.celery_app import CeleryDispatcher, create_celery_app

    return CeleryDispatcher(create_celery_app(settings))
