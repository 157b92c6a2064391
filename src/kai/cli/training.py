"""``kai train``: train a model on a dataset, and follow the job with a progress bar.

Without ``--watch`` the command queues the job and prints its id. With it,
the job's progress is drawn as a bar and each epoch's metrics as a table
row; when no worker claims the job soon, it runs here, in its own process.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from kai.cli._context import open_runtime
from kai.cli._watching import follow_job
from kai.db.tables import JobState
from kai.errors import InvalidInput, KaiError
from kai.runtime import Runtime
from kai.training import (
    AugmentationPreset,
    AugmentationStep,
    ClassBalance,
    FocusPreset,
    MonitoredMetric,
    OptimizerName,
    ScheduleName,
    SearchConfig,
    TrainingConfig,
    TrainingJobConfig,
    start_training,
)


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
    preset: Annotated[
        AugmentationPreset, typer.Option("--augmentation-preset", help="How strongly to vary")
    ] = AugmentationPreset.STANDARD,
    steps: Annotated[
        str | None,
        typer.Option("--augment", help="An explicit list instead of the preset: crop,rotate,..."),
    ] = None,
    focus: Annotated[
        FocusPreset, typer.Option(help="Steer an ensemble member to texture, colour or pattern")
    ] = FocusPreset.NONE,
    unfreeze_every: Annotated[
        int | None, typer.Option(min=1, help="Unfreeze one more group every N epochs")
    ] = None,
    layer_decay: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="Learning-rate factor per group inward")
    ] = 1.0,
    quick_trial: Annotated[
        bool, typer.Option(help="Check the setup on a small subset for one or two epochs")
    ] = False,
    folds: Annotated[int | None, typer.Option(min=2, help="k-fold cross-validation")] = None,
    class_balance: Annotated[
        ClassBalance, typer.Option(help="Make up for small classes: loss or sampling")
    ] = ClassBalance.NONE,
    monitor: Annotated[
        MonitoredMetric, typer.Option(help="The metric early stopping follows")
    ] = MonitoredMetric.VAL_LOSS,
    feature_extraction: Annotated[
        bool,
        typer.Option(
            help="Train only a head on cached embeddings of the frozen backbone "
            "(TFLite models and ONNX graphs that do not convert to PyTorch always train "
            "this way; Keras models and other ONNX graphs fine-tune otherwise)"
        ),
    ] = False,
    search_trials: Annotated[
        int | None, typer.Option(min=1, help="Search the hyperparameters with N trials")
    ] = None,
    search_time: Annotated[
        float, typer.Option(min=1.0, help="Seconds the search may take")
    ] = 3600.0,
    search_parallel: Annotated[
        int,
        typer.Option(
            min=1, max=16, help="Trials of the search that run at once, each on a free worker"
        ),
    ] = 1,
    pretrained: Annotated[
        bool,
        typer.Option(
            "--pretrained/--from-scratch",
            help="Start from the model's weights, or from new random ones",
        ),
    ] = True,
    freeze_batch_norm: Annotated[
        bool, typer.Option(help="Keep every batch-norm layer's statistics")
    ] = False,
    optimizer: Annotated[OptimizerName, typer.Option()] = OptimizerName.ADAMW,
    weight_decay: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.01,
    schedule: Annotated[
        ScheduleName, typer.Option(help="How the learning rate changes over the epochs")
    ] = ScheduleName.COSINE,
    warmup_epochs: Annotated[int, typer.Option(min=0, max=100)] = 1,
    label_smoothing: Annotated[float, typer.Option(min=0.0, max=0.99)] = 0.0,
    patience: Annotated[
        int, typer.Option(min=1, help="Epochs without improvement before stopping early")
    ] = 3,
    min_delta: Annotated[
        float, typer.Option(min=0.0, help="The smallest improvement that counts")
    ] = 0.0,
    image_size: Annotated[
        int | None, typer.Option(min=16, max=1024, help="Input size in pixels; the model's own")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds the split, the shuffling and the new head")] = 0,
    time_budget: Annotated[
        float | None, typer.Option(min=1.0, help="Stop after the epoch that passes N seconds")
    ] = None,
    watch: Annotated[bool, typer.Option(help="Follow the job until it ends")] = False,
) -> None:
    """Queue a training job (and follow it with --watch); prints the job id."""
    search = None
    if search_trials is not None:
        search = SearchConfig(
            trials=search_trials, time_budget_seconds=search_time, parallel_trials=search_parallel
        )
    try:
        training = TrainingConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            freeze_base_model=freeze_base,
            trainable_layers_count=trainable_layers,
            enable_early_stopping=early_stopping,
            enable_data_augmentation=augmentation,
            validation_split=validation_split,
            augmentation=preset,
            augmentations=_steps(steps),
            focus=focus,
            unfreeze_every_epochs=unfreeze_every,
            layer_decay=layer_decay,
            quick_trial=quick_trial,
            cross_validation_folds=folds,
            search=search,
            feature_extraction=feature_extraction,
            class_balance=class_balance,
            early_stopping_metric=monitor,
            early_stopping_patience=patience,
            early_stopping_min_delta=min_delta,
            use_transfer_learning=pretrained,
            freeze_batch_norm=freeze_batch_norm,
            optimizer=optimizer,
            weight_decay=weight_decay,
            schedule=schedule,
            warmup_epochs=warmup_epochs,
            label_smoothing=label_smoothing,
            image_size_px=image_size,
            seed=seed,
            time_budget_seconds=time_budget,
        )
    except ValidationError as exc:
        raise InvalidInput(f"These training options do not go together: {_reason(exc)}") from exc
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


def _steps(text: str | None) -> list[AugmentationStep] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = {step.value for step in AugmentationStep}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidInput(
            f"Unknown augmentation step(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return [AugmentationStep(name) for name in names]


def _reason(exc: ValidationError) -> str:
    return "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())


def _queue(runtime: Runtime, job_config: TrainingJobConfig) -> int:
    with runtime.db.session() as session:
        job = start_training(session, job_config, max_attempts=runtime.settings.max_attempts)
        session.flush()
        job_id = job.id
    runtime.dispatcher.dispatch(job_id)
    return job_id


def _watch(runtime: Runtime, job_id: int) -> None:
    job = follow_job(runtime, job_id)
    if job.state is not JobState.SUCCEEDED:
        raise KaiError(f"Training job {job_id} ended {job.state.value}: {job.error}")
    result = job.result or {}
    _err().print(
        f"Model {result.get('modelId')} version {result.get('modelVersion')} written "
        f"(version id {result.get('modelVersionId')})"
    )


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)
