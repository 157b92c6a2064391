"""The job's own process: build the context, call the handler, report the outcome.

This module is the target of the job's process, forked from the fork server
or spawned. It takes on the worker's environment and working directory,
opens its own database connections (none is inherited), exits by itself if
its parent disappears, and sends exactly one :class:`ChildOutcome` back
through the pipe unless it dies first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Job, JobState
from kai.errors import JobCancelled, KaiError, NotFound
from kai.jobs.announcements import RedisAnnouncer, create_announcer
from kai.jobs.context import EventAnnouncer, JobContext
from kai.jobs.registry import JobRegistry
from kai.logs import configure_logging
from kai.storage.blobs import open_blob_store

logger = logging.getLogger(__name__)

ORPHAN_CHECK_SECONDS = 1.0
ORPHAN_EXIT_CODE = 70


@dataclass(frozen=True)
class ChildOutcome:
    """What the child reports: the state it reached, with a result or an error."""

    state: JobState
    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class ChildSurroundings:
    """The worker's environment variables and working directory when it started the job.

    A fork server was started with the environment of the worker's first job;
    the job must see the worker's as it is now, as a spawned process would.
    """

    environ: dict[str, str]
    cwd: str

    def apply(self) -> None:
        """Make them this process's own."""
        os.environ.clear()
        os.environ.update(self.environ)
        os.chdir(self.cwd)


def child_main(
    settings: Settings,
    registry: JobRegistry,
    job_id: int,
    attempt: int,
    connection: Connection,
    log_level: str,
    *,
    surroundings: ChildSurroundings | None = None,
) -> None:
    """Entry point of a job's process."""
    if surroundings is not None:
        surroundings.apply()
    configure_logging(level=log_level, json_lines=True)
    # Ctrl-C reaches the whole process group; the worker decides when a job stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_when_orphaned(os.getppid())
    outcome = run_handler(settings, registry, job_id, attempt)
    connection.send(outcome)
    connection.close()


def run_handler(
    settings: Settings, registry: JobRegistry, job_id: int, attempt: int
) -> ChildOutcome:
    """Run the job's handler in this process and turn what happens into an outcome."""
    db = Database(settings.resolved_database_url)
    work_dir = settings.work_dir / str(job_id)
    announcer = create_announcer(settings)
    try:
        context = _build_context(settings, db, job_id, attempt, work_dir, announcer)
        handler = registry.resolve(context.job_type).handler
        return ChildOutcome(JobState.SUCCEEDED, result=_checked_result(handler(context)))
    except JobCancelled as exc:
        return ChildOutcome(JobState.CANCELLED, error=exc.message)
    except KaiError as exc:
        return ChildOutcome(JobState.FAILED, error=exc.message)
    except Exception as exc:
        logger.exception("Job handler raised", extra={"job_id": job_id, "attempt": attempt})
        return ChildOutcome(JobState.FAILED, error=f"Internal error: {type(exc).__name__}: {exc}")
    finally:
        remove_work_dir(work_dir)
        if isinstance(announcer, RedisAnnouncer):
            announcer.close()
        db.dispose()


def _build_context(
    settings: Settings,
    db: Database,
    job_id: int,
    attempt: int,
    work_dir: Path,
    announcer: EventAnnouncer,
) -> JobContext:
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"Job {job_id} does not exist")
        job_type, config = job.type, dict(job.config)
    work_dir.mkdir(parents=True, exist_ok=True)
    return JobContext(
        job_id=job_id,
        job_type=job_type,
        config=config,
        attempt=attempt,
        settings=settings,
        db=db,
        blobs=open_blob_store(settings.resolved_storage_url),
        work_dir=work_dir,
        announcer=announcer,
    )


def remove_work_dir(work_dir: Path) -> None:
    """Remove a job's scratch space, warning about what could not be removed."""
    if not work_dir.exists():
        return
    try:
        shutil.rmtree(work_dir)
    except OSError as exc:
        logger.warning("Could not remove the job's work dir %s: %s", work_dir, exc)


def _checked_result(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise TypeError(f"the handler returned {type(result).__name__}, not a dict")
    json.dumps(result)  # A result that cannot be stored fails here, inside the job.
    return result


def _exit_when_orphaned(parent_pid: int) -> None:
    """Exit if the parent dies, so no attempt outlives its lease owner.

    The parent is the worker, or the fork server, which exits when the worker does.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(ORPHAN_CHECK_SECONDS)
        logger.error("The job's worker died; stopping the job")
        os._exit(ORPHAN_EXIT_CODE)

    threading.Thread(target=watch, name="kai-orphan-watch", daemon=True).start()
