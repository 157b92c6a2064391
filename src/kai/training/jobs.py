"""The ``training.run`` job kind, registered by the entry points.

The handler imports PyTorch only when a job runs, so the API and the CLI,
which register the kind, start without it. When a training job ends failed
or cancelled for good, its checkpoints are deleted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kai.errors import GraphNotConvertible
from kai.jobs.allocator import retain_freed_memory
from kai.jobs.context import JobContext
from kai.jobs.registry import JobRegistry
from kai.models import resolve_version as resolve_model_version
from kai.training.config import TrainingConfig, TrainingJobConfig
from kai.training.starts import (
    NATIVE_TRAINABLE_FORMATS,
    TRAIN_JOB,
    TRIALS_JOB,
    adapt_to_model,
    fine_tuning_obstacle,
    refuse_feature_only,
)

if TYPE_CHECKING:
    from kai.training.runs import NetworkKind


def register_job_handlers(registry: JobRegistry) -> None:
    """Register the training job kind with an entry point's registry."""
    registry.register(TRAIN_JOB, run_training_job, on_failure=fail_training_job)
    registry.register(TRIALS_JOB, run_trials_job)


def run_training_job(ctx: JobContext) -> dict[str, Any]:
    """Run one attempt of a training job (resuming from its checkpoint if it has one).

    A config with a search runs the hyperparameter search, one with folds runs
    cross-validation (over a PyTorch network or a Keras one), one with feature
    extraction trains a head on cached embeddings, one on a Keras model
    fine-tunes the Keras network in one process, any other one runs plain
    training, with DistributedDataParallel when there are several devices. A
    graph model that cannot be fine-tuned whole trains by feature extraction
    even when the job was queued before its import ended, so before its format
    was known; so does an ONNX graph whose conversion to PyTorch fails in this
    process, when nothing else was asked of it.
    """
    retain_freed_memory()
    requested = TrainingJobConfig.model_validate(ctx.config)
    with ctx.db.session() as session:
        version = resolve_model_version(session, requested.model_id, requested.model_version)
        job_config = adapt_to_model(version, requested)
        obstacle = fine_tuning_obstacle(version)
        native = version.format in NATIVE_TRAINABLE_FORMATS
    ctx.config = job_config.model_dump(mode="json")
    training = job_config.training
    if training.feature_extraction:
        if obstacle is not None:
            ctx.log(
                f"Full fine-tuning is not possible: {obstacle}; a new head trains over the "
                "graph's frozen features instead"
            )
        from kai.training.features import run_feature_extraction

        return run_feature_extraction(ctx)
    try:
        return _run_whole(ctx, training, native=native)
    except GraphNotConvertible as exc:
        return _fall_back_to_features(ctx, job_config, exc)


def run_trials_job(ctx: JobContext) -> dict[str, Any]:
    """Run trials of a search job's study beside it (see :mod:`kai.training.search`)."""
    from kai.training.search import TrialJobConfig, run_trials

    retain_freed_memory()
    job_config = TrialJobConfig.model_validate(ctx.config).job
    with ctx.db.session() as session:
        version = resolve_model_version(session, job_config.model_id, job_config.model_version)
        native = version.format in NATIVE_TRAINABLE_FORMATS
    return run_trials(ctx, _network_kind(native=native))


def _run_whole(ctx: JobContext, training: TrainingConfig, *, native: bool) -> dict[str, Any]:
    # PyTorch, Keras and Optuna load with these modules, only in job processes.
    if training.search is not None:
        from kai.training.search import run_search

        return run_search(ctx, _network_kind(native=native))
    if training.cross_validation_folds is not None:
        from kai.training.folds import run_cross_validation

        return run_cross_validation(ctx, _network_kind(native=native))
    if native:
        from kai.training.keras_runs import run_keras_training

        return run_keras_training(ctx)
    from kai.training.distributed import run_distributed_training, world_size_for
    from kai.training.runs import run_training

    world_size = world_size_for(training)
    if world_size > 1:
        return run_distributed_training(ctx, world_size)
    return run_training(ctx)


def _network_kind(*, native: bool) -> NetworkKind:
    """Keras networks for a format that trains through its own framework, else PyTorch's."""
    if native:
        from kai.training.keras_runs import KERAS_NETWORKS

        return KERAS_NETWORKS
    from kai.training.runs import TORCH_NETWORKS

    return TORCH_NETWORKS


def _fall_back_to_features(
    ctx: JobContext, job_config: TrainingJobConfig, error: GraphNotConvertible
) -> dict[str, Any]:
    """Train a head over the graph's features after its conversion failed here.

    Raises:
        InvalidInput: The job asked for what feature extraction cannot do.
    """
    obstacle = f"its graph does not convert to PyTorch: {error.message}"
    with ctx.db.session() as session:
        version = resolve_model_version(session, job_config.model_id, job_config.model_version)
        refuse_feature_only(version, job_config.training, obstacle)
    from kai.training.features import run_feature_extraction_instead

    return run_feature_extraction_instead(
        ctx, job_config, f"Full fine-tuning is not possible: {obstacle}"
    )


def fail_training_job(ctx: JobContext, reason: str) -> None:
    """Drop the checkpoints of a job that will not resume."""
    from kai.training.checkpoints import checkpoint_dir, remove_checkpoints

    remove_checkpoints(checkpoint_dir(ctx.settings.resolved_data_dir, ctx.job_id))
