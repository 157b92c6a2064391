"""``kai jobs``: list, show, watch and cancel jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from kai.cli import _presentation
from kai.cli._context import open_runtime
from kai.cli._watching import follow_job
from kai.db.tables import JobState
from kai.jobs.events import list_events
from kai.jobs.records import get_job, list_jobs, request_cancel
from kai.runtime import Runtime

app = typer.Typer(help="Inspect and cancel jobs.", no_args_is_help=True)


@app.command("list")
def list_jobs_command(
    ctx: typer.Context,
    status: Annotated[JobState | None, typer.Option(help="Only jobs in this state")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only jobs of this type")] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """List jobs, newest first."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        jobs, total = list_jobs(
            session, page=page, page_size=page_size, state=status, job_type=job_type
        )
    _presentation.show_jobs(jobs, total=total, page=page)


@app.command("show")
def show_job_command(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job's id")],
    events: Annotated[bool, typer.Option(help="Also list the job's stored events")] = False,
) -> None:
    """Show one job's status, progress, result or error."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        job = get_job(session, job_id)
        stored = list_events(session, job_id) if events else []
    _presentation.show_job(job, stored)


@app.command("watch")
def watch_job_command(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job's id")],
) -> None:
    """Follow a job live until it ends: progress, epochs, trials; exits 1 unless it succeeds."""
    with open_runtime(ctx) as runtime:
        get_job_in(runtime, job_id)
        job = follow_job(runtime, job_id, run_here=False)
    _presentation.show_job(job)
    if job.state is not JobState.SUCCEEDED:
        raise typer.Exit(1)


def get_job_in(runtime: Runtime, job_id: int) -> None:
    """Raise NotFound before watching a job that does not exist."""
    with runtime.db.session() as session:
        get_job(session, job_id)


@app.command("cancel")
def cancel_job_command(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job's id")],
) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        job = request_cancel(session, job_id)
    _presentation.show_job(job)
