"""Following a job live from the CLI: a progress bar, epoch and trial lines, a table at the end.

``kai train --watch`` and ``kai jobs watch ID`` read the job's stored events
as they arrive (the same events ``/ws/training`` sends) and draw them with
Rich on standard error. A training job nobody claims soon runs here, in its
own child process, as a worker would run it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from kai.db.tables import FINISHED_STATES, Job, JobState
from kai.jobs.environment import create_job_environment
from kai.jobs.events import list_events
from kai.jobs.leases import claim_job, new_lease_owner
from kai.jobs.runner import run_claimed_job
from kai.runtime import Runtime

POLL_SECONDS = 0.5
CLAIM_WAIT_SECONDS = 3.0
METRIC_COLUMNS = ("trainLoss", "trainAccuracy", "valLoss", "valAccuracy", "epochSeconds")


def follow_job(runtime: Runtime, job_id: int, *, run_here: bool = True) -> Job:
    """Draw the job's progress, epochs and trials until it ends; the ended job.

    Args:
        runtime: The open runtime.
        job_id: The job to follow.
        run_here: Run the job here when it stays queued for a few seconds.
    """
    runner: threading.Thread | None = None
    started, seen = time.monotonic(), 0
    table = _metrics_table()
    with _progress() as progress:
        task = progress.add_task("queued", total=1.0)
        while True:
            job, events = _read(runtime, job_id, seen)
            for event in events:
                seen = event.seq
                show_event(progress, task, table, event.type, event.payload)
            if job.state in FINISHED_STATES and (runner is None or not runner.is_alive()):
                break
            unclaimed = runner is None and job.state is JobState.QUEUED
            if run_here and unclaimed and time.monotonic() - started > CLAIM_WAIT_SECONDS:
                runner = run_job_here(runtime, job_id)
            time.sleep(POLL_SECONDS)
    if table.row_count:
        _err().print(table)
    return job


def _read(runtime: Runtime, job_id: int, after: int) -> tuple[Job, list[Any]]:
    with runtime.db.session() as session:
        job = session.get(Job, job_id, populate_existing=True)
        assert job is not None
        return job, list_events(session, job_id, after_seq=after)


def show_event(
    progress: Progress, task: Any, table: Table, event_type: str, payload: dict[str, Any]
) -> None:
    if event_type == "progress":
        epoch, total = payload.get("currentEpoch"), payload.get("totalEpochs")
        label = f"epoch {epoch}/{total}" if epoch else str(payload.get("stage", ""))
        progress.update(task, completed=float(payload.get("progress", 0.0)), description=label)
    elif event_type == "metrics":
        metrics = payload.get("metrics", {})
        table.add_row(str(payload.get("epoch")), *(_cell(metrics.get(c)) for c in METRIC_COLUMNS))
        progress.console.print(
            f"epoch {payload.get('epoch')}: "
            + ", ".join(f"{c} {_cell(metrics.get(c))}" for c in METRIC_COLUMNS),
            markup=False,
        )
    elif event_type == "trial":
        progress.console.print(_trial_line(payload), markup=False)
    elif event_type == "fold" and payload.get("status") == "complete":
        accuracy = _cell(payload.get("metrics", {}).get("valAccuracy"))
        progress.console.print(f"fold {payload.get('fold')}: valAccuracy {accuracy}", markup=False)
    elif event_type == "log":
        progress.console.print(str(payload.get("message", "")), markup=False)
    elif event_type == "error":
        progress.console.print(f"[red]{payload.get('error', '')}[/]")


def _trial_line(payload: dict[str, Any]) -> str:
    status = str(payload.get("status"))
    line = f"trial {payload.get('trial')} {status}"
    if status == "running":
        return line + f" {payload.get('params')}"
    if status == "epoch":
        accuracy = _cell(payload.get("metrics", {}).get("valAccuracy"))
        return line + f" {payload.get('epoch')}: valAccuracy {accuracy}"
    if status == "complete":
        return line + f": best valAccuracy {_cell(payload.get('value'))}"
    return line


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value if value is not None else "-")


def _metrics_table() -> Table:
    return Table("epoch", *METRIC_COLUMNS, title="Metrics per epoch")


def run_job_here(runtime: Runtime, job_id: int) -> threading.Thread | None:
    """Claim the job and run it on a thread, in its own child process as a worker would."""
    settings = runtime.settings
    claim = claim_job(
        runtime.db, owner=new_lease_owner(), lease_seconds=settings.lease_seconds, job_id=job_id
    )
    if claim is None:
        return None
    # The job's events are shown here; its log lines would say the same again.
    env = create_job_environment(settings, runtime.registry, job_log_level="CRITICAL")

    def run() -> None:
        try:
            run_claimed_job(env, claim)
        finally:
            env.close()

    thread = threading.Thread(target=run, name=f"kai-job-{job_id}", daemon=True)
    thread.start()
    return thread


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=_err(),
    )


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)
