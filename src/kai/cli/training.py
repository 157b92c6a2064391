"""``kai train``: train a model on a dataset, and follow the job with a progress bar.

Without ``--watch`` the command queues the job and prints its id. With it,
the job's progress is drawn as a bar and each epoch's metrics as a table
row; when no worker claims the job soon, it runs here, in its own process.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from kai.cli._context import open_runtime
from kai.db.tables import FINISHED_STATES, Job, JobState
from kai.errors import KaiError
from kai.jobs.environment import create_job_environment
from kai.jobs.events import list_events
from kai.jobs.leases import claim_job, new_lease_owner
from kai.jobs.runner import run_claimed_job
from kai.runtime import Runtime
from kai.training import TrainingConfig, TrainingJobConfig, start_training

POLL_SECONDS = 0.5
CLAIM_WAIT_SECONDS = 3.0
METRIC_COLUMNS = ("trainLoss", "trainAccuracy", "valLoss", "valAccuracy", "epochSeconds")


def train(
    ctx: typer.Context,
    model: Annotated[int, typer.Option("--model", help="The model id to start from")],
    dataset: Annotated[int, typer.Option("--dataset", help="The dataset id to train on")],
    model_version: Annotated[
        int | None, typer.Option(help="Model version; latest if absent")
    ] = None,
    dataset_version: Annotated[
        int | None, typer.Option(help="Dataset version; latest if absent")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    freeze_base: Annotated[bool, typer.Option(help="Train only the last layer groups")] = False,
    trainable_layers: Annotated[int, typer.Option(min=1, help="Groups that train")] = 1,
    early_stopping: Annotated[bool, typer.Option()] = True,
    augmentation: Annotated[bool, typer.Option()] = True,
    validation_split: Annotated[float, typer.Option(min=0.01, max=0.99)] = 0.2,
    watch: Annotated[bool, typer.Option(help="Follow the job until it ends")] = False,
) -> None:
    """Queue a training job (and follow it with --watch); prints the job id."""
    training = TrainingConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        freeze_base_model=freeze_base,
        trainable_layers_count=trainable_layers,
        enable_early_stopping=early_stopping,
        enable_data_augmentation=augmentation,
        validation_split=validation_split,
    )
    job_config = TrainingJobConfig(
        model_id=model,
        model_version=model_version,
        dataset_id=dataset,
        dataset_version=dataset_version,
        training=training,
    )
    with open_runtime(ctx) as runtime:
        job_id = _queue(runtime, job_config)
        _err().print(f"Training job {job_id} queued")
        if watch:
            _watch(runtime, job_id)
    _out().print(str(job_id))


def _queue(runtime: Runtime, job_config: TrainingJobConfig) -> int:
    with runtime.db.session() as session:
        job = start_training(session, job_config, max_attempts=runtime.settings.max_attempts)
        session.flush()
        job_id = job.id
    runtime.dispatcher.dispatch(job_id)
    return job_id


def _watch(runtime: Runtime, job_id: int) -> None:
    job = _follow(runtime, job_id)
    if job.state is not JobState.SUCCEEDED:
        raise KaiError(f"Training job {job_id} ended {job.state.value}: {job.error}")
    result = job.result or {}
    _err().print(
        f"Model {result.get('modelId')} version {result.get('modelVersion')} written "
        f"(version id {result.get('modelVersionId')})"
    )


def _follow(runtime: Runtime, job_id: int) -> Job:
    """Draw the job's progress and epoch metrics until it ends."""
    runner: threading.Thread | None = None
    started, seen = time.monotonic(), 0
    table = _metrics_table()
    with _progress() as progress:
        task = progress.add_task("queued", total=1.0)
        while True:
            job, events = _read(runtime, job_id, seen)
            for event in events:
                seen = event.seq
                _show_event(progress, task, table, event.type, event.payload)
            if job.state in FINISHED_STATES and (runner is None or not runner.is_alive()):
                break
            waited = time.monotonic() - started
            if runner is None and job.state is JobState.QUEUED and waited > CLAIM_WAIT_SECONDS:
                runner = _run_here(runtime, job_id)
            time.sleep(POLL_SECONDS)
    if table.row_count:
        _err().print(table)
    return job


def _read(runtime: Runtime, job_id: int, after: int) -> tuple[Job, list[Any]]:
    with runtime.db.session() as session:
        job = session.get(Job, job_id, populate_existing=True)
        assert job is not None
        return job, list_events(session, job_id, after_seq=after)


def _show_event(
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
    elif event_type == "log":
        progress.console.print(str(payload.get("message", "")), markup=False)
    elif event_type == "error":
        progress.console.print(f"[red]{payload.get('error', '')}[/]")


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value if value is not None else "-")


def _metrics_table() -> Table:
    return Table("epoch", *METRIC_COLUMNS, title="Metrics per epoch")


def _run_here(runtime: Runtime, job_id: int) -> threading.Thread | None:
    """Claim the job and run it on a thread, in its own child process as a worker would."""
    settings = runtime.settings
    claim = claim_job(
        runtime.db, owner=new_lease_owner(), lease_seconds=settings.lease_seconds, job_id=job_id
    )
    if claim is None:
        return None
    env = create_job_environment(settings, runtime.registry)

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


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)
