"""Schemas of training: the start request in the clients' exact shape, and its answers."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, model_validator

from kai.api.schemas.base import ApiModel
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
)


class TrainingStartCreate(ApiModel):
    """``POST /api/admin/training/start``: which model on which dataset, and how.

    Older clients spell the transfer flag ``useTranferLearning``; both spellings work.
    ``enableHyperparameterTuning`` searches with Optuna (``searchTrials`` trials
    within ``searchTimeBudgetSeconds``, ``searchParallelTrials`` of them at once on
    free workers); the fields after it are optional, each with the default a small
    material set suits (AdamW, cosine schedule with a one-epoch warm-up, the model's
    own input size). ``timeBudgetSeconds`` stops the run after the epoch that passes it.
    """

    model_id: int
    dataset_id: int
    model_version: int | None = Field(None, ge=1)
    dataset_version: int | None = Field(None, ge=1)
    learning_rate: float = Field(1e-3, gt=0, le=10)
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=4096)
    use_transfer_learning: bool = Field(
        True,
        validation_alias=AliasChoices(
            "useTransferLearning", "useTranferLearning", "use_transfer_learning"
        ),
    )
    freeze_base_model: bool = False
    trainable_layers_count: int = Field(1, ge=1, le=1000)
    enable_early_stopping: bool = True
    enable_data_augmentation: bool = True
    validation_split: float = Field(0.2, gt=0, lt=1)
    enable_hyperparameter_tuning: bool = False
    search_trials: int = Field(12, ge=1, le=500)
    search_time_budget_seconds: float = Field(3600.0, gt=0)
    search_parallel_trials: int = Field(1, ge=1, le=16)
    quick_trial: bool = False
    cross_validation_folds: int | None = Field(None, ge=2, le=20)
    augmentation: AugmentationPreset = AugmentationPreset.STANDARD
    augmentations: list[AugmentationStep] | None = None
    focus: FocusPreset = FocusPreset.NONE
    unfreeze_every_epochs: int | None = Field(None, ge=1, le=1000)
    layer_decay: float = Field(1.0, gt=0, le=1)
    freeze_batch_norm: bool = False
    feature_extraction: bool = False
    class_balance: ClassBalance = ClassBalance.NONE
    early_stopping_metric: MonitoredMetric = MonitoredMetric.VAL_LOSS
    early_stopping_patience: int = Field(3, ge=1, le=100)
    early_stopping_min_delta: float = Field(0.0, ge=0)
    optimizer: OptimizerName = OptimizerName.ADAMW
    weight_decay: float = Field(0.01, ge=0, le=1)
    schedule: ScheduleName = ScheduleName.COSINE
    warmup_epochs: int = Field(1, ge=0, le=100)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    head_learning_rate_multiplier: float = Field(1.0, gt=0, le=100)
    image_size_px: int | None = Field(None, ge=16, le=1024)
    seed: int = 0
    time_budget_seconds: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_outer_loop(self) -> TrainingStartCreate:
        if self.enable_hyperparameter_tuning and self.cross_validation_folds is not None:
            raise ValueError("choose enableHyperparameterTuning or crossValidationFolds, not both")
        return self

    def job_config(self) -> TrainingJobConfig:
        """The job's configuration; the hyperparameters not in the request keep their defaults."""
        search = None
        if self.enable_hyperparameter_tuning:
            search = SearchConfig(
                trials=self.search_trials,
                time_budget_seconds=self.search_time_budget_seconds,
                parallel_trials=self.search_parallel_trials,
            )
        training = TrainingConfig(
            learning_rate=self.learning_rate,
            epochs=self.epochs,
            batch_size=self.batch_size,
            use_transfer_learning=self.use_transfer_learning,
            freeze_base_model=self.freeze_base_model,
            trainable_layers_count=self.trainable_layers_count,
            enable_early_stopping=self.enable_early_stopping,
            enable_data_augmentation=self.enable_data_augmentation,
            validation_split=self.validation_split,
            search=search,
            quick_trial=self.quick_trial,
            cross_validation_folds=self.cross_validation_folds,
            augmentation=self.augmentation,
            augmentations=self.augmentations,
            focus=self.focus,
            unfreeze_every_epochs=self.unfreeze_every_epochs,
            layer_decay=self.layer_decay,
            freeze_batch_norm=self.freeze_batch_norm,
            feature_extraction=self.feature_extraction,
            class_balance=self.class_balance,
            early_stopping_metric=self.early_stopping_metric,
            early_stopping_patience=self.early_stopping_patience,
            early_stopping_min_delta=self.early_stopping_min_delta,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
            label_smoothing=self.label_smoothing,
            head_learning_rate_multiplier=self.head_learning_rate_multiplier,
            image_size_px=self.image_size_px,
            seed=self.seed,
            time_budget_seconds=self.time_budget_seconds,
        )
        return TrainingJobConfig(
            model_id=self.model_id,
            model_version=self.model_version,
            dataset_id=self.dataset_id,
            dataset_version=self.dataset_version,
            training=training,
        )


class TrainingStarted(ApiModel):
    """The queued training job, and the imports it waits for, if any."""

    job_id: int
    waits_for: list[int] = Field(default_factory=list)


class TrainingRead(ApiModel):
    """A training job: its state, configuration and, once it ends, its results."""

    job_id: int
    status: str
    progress: float
    config: dict[str, Any]
    results: dict[str, Any] | None
    error: str | None
