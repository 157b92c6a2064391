"""``kai worker``: run jobs, from the broker when one is set, else by polling the database."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from kai.cli import _presentation
from kai.cli._context import load_cli_settings
from kai.db.engine import Database
from kai.db.migrate import migrate
from kai.jobs.celery_app import run_celery_worker
from kai.jobs.registry import JobRegistry
from kai.jobs.workers import LocalWorkerPool
from kai.logs import configure_logging
from kai.registrations import register_job_handlers


def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs run at once (default KAI_LOCAL_WORKERS)")
    ] = None,
) -> None:
    """Run jobs until stopped with Ctrl-C or SIGTERM."""
    settings = load_cli_settings(ctx)
    configure_logging(level="INFO", json_lines=True)
    registry = JobRegistry()
    register_job_handlers(registry)
    database = Database(settings.resolved_database_url)
    migrate(database)
    database.dispose()
    num_workers = concurrency or settings.local_workers
    if settings.broker_url:
        run_celery_worker(settings, registry, concurrency=num_workers)
        return
    _presentation.show_notice(f"No broker set: {num_workers} local worker(s) poll the database")
    pool = LocalWorkerPool(settings, registry, num_workers=num_workers)
    pool.start()
    try:
        _wait_for_stop_signal()
    finally:
        pool.stop()


def _wait_for_stop_signal() -> None:
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stop.wait()
