"""The training configuration shared by the API, the CLI and the worker.

:class:`TrainingConfig` holds the hyperparameters in Python names;
:class:`TrainingJobConfig` is what a ``training.run`` job stores: which model
and dataset (by id, with a version number or the latest), and the config.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class OptimizerName(StrEnum):
    """The optimizers training offers."""

    ADAMW = "adamw"
    SGD = "sgd"


class ScheduleName(StrEnum):
    """How the learning rate changes over the epochs."""

    COSINE = "cosine"
    STEP = "step"
    NONE = "none"


class AugmentationPreset(StrEnum):
    """How strongly training images are varied."""

    LIGHT = "light"
    STANDARD = "standard"
    STRONG = "strong"


class TrainingConfig(BaseModel):
    """Hyperparameters of one training run.

    Attributes:
        learning_rate: The peak learning rate.
        epochs: Passes over the training split.
        batch_size: Images per optimisation step.
        validation_split: Share of the data held out for validation when the
            dataset version has no validation split (stratified, fixed seed).
        optimizer: ``adamw`` or ``sgd`` (with Nesterov momentum).
        weight_decay: Decoupled weight decay (AdamW) or L2 penalty (SGD).
        schedule: ``cosine`` with a linear warm-up, ``step`` or ``none``.
        warmup_epochs: Epochs of linear warm-up before the cosine decay.
        label_smoothing: Cross-entropy label smoothing.
        image_size_px: Input height and width; the model's input spec when None.
        seed: Seeds the split, the shuffling and the new head.
        use_transfer_learning: Start from the model version's weights; when False
            the architecture starts from random weights.
        freeze_base_model: Freeze every layer group but the trainable ones.
        trainable_layers_count: How many layer groups, counted from the head, train
            when the base is frozen (the head counts as one).
        head_learning_rate_multiplier: Learning rate of the head relative to the body.
        enable_early_stopping: Stop when the validation loss stops improving,
            restoring the best weights.
        early_stopping_patience: Epochs without improvement before stopping.
        early_stopping_min_delta: The smallest drop in validation loss that counts.
        enable_data_augmentation: Vary the training images.
        augmentation: The augmentation preset.
        time_budget_seconds: Stop after the epoch that passes this budget.
        num_workers: Data loader processes; None sizes them to the machine's cores.
    """

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(1e-3, gt=0, le=10)
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=4096)
    validation_split: float = Field(0.2, gt=0, lt=1)
    optimizer: OptimizerName = OptimizerName.ADAMW
    weight_decay: float = Field(0.01, ge=0, le=1)
    schedule: ScheduleName = ScheduleName.COSINE
    warmup_epochs: int = Field(1, ge=0, le=100)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    image_size_px: int | None = Field(None, ge=16, le=1024)
    seed: int = 0
    use_transfer_learning: bool = True
    freeze_base_model: bool = False
    trainable_layers_count: int = Field(1, ge=1, le=1000)
    head_learning_rate_multiplier: float = Field(1.0, gt=0, le=100)
    enable_early_stopping: bool = True
    early_stopping_patience: int = Field(3, ge=1, le=100)
    early_stopping_min_delta: float = Field(0.0, ge=0)
    enable_data_augmentation: bool = True
    augmentation: AugmentationPreset = AugmentationPreset.STANDARD
    time_budget_seconds: float | None = Field(None, gt=0)
    num_workers: int | None = Field(None, ge=0, le=64)


class TrainingJobConfig(BaseModel):
    """The stored configuration of a ``training.run`` job.

    Attributes:
        model_id: The model to start from.
        model_version: Its version number; the latest when the job starts if None.
        dataset_id: The dataset to train on.
        dataset_version: Its version number; the latest when the job starts if None.
        training: The hyperparameters.
    """

    model_config = ConfigDict(extra="forbid")

    model_id: int
    model_version: int | None = None
    dataset_id: int
    dataset_version: int | None = None
    training: TrainingConfig = Field(default_factory=TrainingConfig)
