"""The ``training.run`` job kind, registered by the entry points.

The handler imports PyTorch only when a job runs, so the API and the CLI,
which register the kind, start without it. When a training job ends failed
or cancelled for good, its checkpoints are deleted.
"""

from __future__ import annotations

from typing import Any

from kai.jobs.context import JobContext
from kai.jobs.registry import JobRegistry
from kai.training.starts import TRAIN_JOB


def register_job_handlers(registry: JobRegistry) -> None:
    """Register the training job kind with an entry point's registry."""
    registry.register(TRAIN_JOB, run_training_job, on_failure=fail_training_job)


def run_training_job(ctx: JobContext) -> dict[str, Any]:
    """Run one attempt of a training job (resuming from its checkpoint if it has one)."""
    from kai.training.runs import run_training  # PyTorch loads with it, only in job processes.

    return run_training(ctx)


def fail_training_job(ctx: JobContext, reason: str) -> None:
    """Drop the checkpoints of a job that will not resume."""
    from kai.training.checkpoints import checkpoint_dir, remove_checkpoints

    remove_checkpoints(checkpoint_dir(ctx.settings.resolved_data_dir, ctx.job_id))
