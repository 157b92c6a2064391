"""``kai gc``: remove unreferenced blobs, unfinished writes and stale scratch files now.

Workers collect garbage every ``KAI_GC_INTERVAL_SECONDS`` by themselves; this
command is for an admin who wants the space back now, or wants to see what a
collection would remove (``--dry-run``). It takes the same collector lease as
the workers, so it never runs beside one of their collections.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import filesize
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from kai.cli._context import open_runtime
from kai.db.engine import Database
from kai.db.tables import Job, JobState
from kai.errors import Conflict
from kai.jobs.collector import collect_now
from kai.storage.gc import GcReport

SECONDS_PER_HOUR = 3600.0


def gc(
    ctx: typer.Context,
    grace_hours: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Keep blobs and scratch files younger than this (default KAI_BLOB_GRACE_SECONDS)",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what a collection would remove")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Collect with a shortened grace period even while jobs are running"
        ),
    ] = False,
) -> None:
    """Collect garbage now: blobs no dataset or model refers to, and stale temporary files."""
    with open_runtime(ctx) as runtime:
        settings = runtime.settings
        grace_seconds = settings.blob_grace_seconds
        if grace_hours is not None:
            grace_seconds = grace_hours * SECONDS_PER_HOUR
        if not dry_run and not force and grace_seconds < settings.blob_grace_seconds:
            _refuse_while_jobs_run(runtime.db)
        report = collect_now(
            runtime.db, runtime.blobs, settings, grace_seconds=grace_seconds, dry_run=dry_run
        )
    _show_report(report, grace_seconds=grace_seconds)


def _refuse_while_jobs_run(db: Database) -> None:
    """A running import stores its blobs before the rows that name them; keep them safe."""
    with db.session() as session:
        running = session.scalar(
            select(func.count()).select_from(Job).where(Job.state == JobState.RUNNING)
        )
    if running:
        raise Conflict(
            f"{running} job(s) are running, and their newest blobs are not referenced yet; "
            "a grace period shorter than KAI_BLOB_GRACE_SECONDS could delete them. "
            "Wait for the jobs to end, or pass --force"
        )


def _show_report(report: GcReport, *, grace_seconds: float) -> None:
    verb = "Would remove" if report.dry_run else "Removed"
    table = Table("", "count", "bytes", title=f"{verb} (grace {_hours(grace_seconds)})")
    table.add_row("unreferenced blobs", str(report.blobs_deleted), _size(report.blob_bytes_freed))
    table.add_row("unfinished writes", str(report.temporaries_removed), "")
    table.add_row("stale scratch", str(report.scratch_removed), _size(report.scratch_bytes_freed))
    console = Console(highlight=False)
    console.print(table)
    kept = f"Kept {report.blobs_referenced} referenced and {report.blobs_young} young blobs"
    freed = "would be freed" if report.dry_run else "freed"
    console.print(f"{kept}; {_size(report.bytes_freed)} {freed}.", markup=False)


def _hours(seconds: float) -> str:
    return f"{seconds / SECONDS_PER_HOUR:g} h"


def _size(num_bytes: int) -> str:
    return filesize.decimal(num_bytes)
