"""The objects every entry point builds once: settings, database, blobs, dispatch, job kinds.

The API, the CLI and the workers each create one :class:`Runtime` at start and
pass it down; services receive the parts they need as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from kai.config import Settings
from kai.db.engine import Database
from kai.jobs.dispatch import Dispatcher, PollingDispatcher
from kai.jobs.registry import JobRegistry
from kai.storage.blobs import BlobStore, open_blob_store


@dataclass
class Runtime:
    """Kai's long-lived collaborators for one process."""

    settings: Settings
    db: Database
    blobs: BlobStore
    dispatcher: Dispatcher
    registry: JobRegistry


def create_runtime(
    settings: Settings,
    *,
    registry: JobRegistry | None = None,
    dispatcher: Dispatcher | None = None,
) -> Runtime:
    """Build the runtime for ``settings``; the caller migrates the database."""
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    return Runtime(
        settings=settings,
        db=Database(settings.resolved_database_url),
        blobs=open_blob_store(settings.resolved_storage_url),
        dispatcher=dispatcher or PollingDispatcher(),
        registry=registry or JobRegistry(),
    )
