"""The training configuration shared by the API, the CLI and the worker.

:class:`TrainingConfig` holds the hyperparameters in Python names;
:class:`TrainingJobConfig` is what a ``training.run`` job stores: which model
and dataset (by id, with a version number or the latest), and the config.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OptimizerName(StrEnum):
    """The optimizers training offers."""

    ADAMW = "adamw"
    SGD = "sgd"


class ScheduleName(StrEnum):
    """How the learning rate changes over the epochs."""

    COSINE = "cosine"
    STEP = "step"
    PLATEAU = "plateau"
    NONE = "none"


class AugmentationPreset(StrEnum):
    """How strongly training images are varied."""

    OFF = "off"
    LIGHT = "light"
    STANDARD = "standard"
    STRONG = "strong"


class AugmentationStep(StrEnum):
    """One transform of an explicit augmentation list, in the order given."""

    CROP = "crop"  # A random crop of 35 to 100 % of the image, resized to the input.
    HORIZONTAL_FLIP = "horizontalFlip"
    VERTICAL_FLIP = "verticalFlip"
    ROTATE = "rotate"  # Up to 15 degrees either way.
    COLOUR_JITTER = "colourJitter"  # Brightness, contrast and saturation by up to 20 %.
    GREYSCALE = "greyscale"  # One image in five.
    BLUR = "blur"
    TRIVIAL_AUGMENT = "trivialAugment"


class ClassBalance(StrEnum):
    """How training makes up for classes with fewer images."""

    NONE = "none"
    LOSS = "loss"  # Cross-entropy weighted by inverse class frequency.
    SAMPLING = "sampling"  # Batches drawn with replacement, each class equally likely.


class MonitoredMetric(StrEnum):
    """The validation metric early stopping and the kept weights follow."""

    VAL_LOSS = "valLoss"
    VAL_ACCURACY = "valAccuracy"


class FocusPreset(StrEnum):
    """What an ensemble member is steered to look at, through its crops and colours.

    ``texture`` trains on small crops at full resolution with colour dropped at
    random, ``colour`` keeps colours exact and the whole image, ``pattern`` sees
    larger crops in grey so layout and repetition carry the decision.
    """

    NONE = "none"
    TEXTURE = "texture"
    COLOUR = "colour"
    PATTERN = "pattern"


class SearchConfig(BaseModel):
    """A hyperparameter search: which knobs TPE tunes, how many trials, how long.

    Attributes:
        trials: Trials to finish (pruned ones count) over every worker sharing the study.
        time_budget_seconds: Stop starting trials after this long.
        epochs_per_trial: Epochs of one trial; the run's ``epochs`` when None.
        tune_learning_rate: Search the learning rate on a log scale.
        tune_weight_decay: Search the weight decay on a log scale.
        tune_batch_size: Search among powers of two that fit the training split.
        tune_trainable_layers: Search how many layer groups train, the head included.
        tune_augmentation: Search the augmentation strength.
        tune_label_smoothing: Search label smoothing between 0 and 0.2.
        startup_trials: Random trials before TPE and the pruner take over.
        parallel_trials: Trials that run at once: the search job runs one and queues
            this many less one trial jobs, which any free worker claims; all share
            the study, and trial jobs no worker claimed by the end are cancelled.
    """

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(12, ge=1, le=500)
    time_budget_seconds: float | None = Field(None, gt=0)
    epochs_per_trial: int | None = Field(None, ge=1, le=1000)
    tune_learning_rate: bool = True
    tune_weight_decay: bool = True
    tune_batch_size: bool = True
    tune_trainable_layers: bool = True
    tune_augmentation: bool = True
    tune_label_smoothing: bool = True
    startup_trials: int = Field(4, ge=0, le=100)
    parallel_trials: int = Field(1, ge=1, le=16)


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
        schedule: ``cosine`` with a linear warm-up, ``step``, ``plateau`` (halved when
            the validation loss stalls) or ``none``.
        warmup_epochs: Epochs of linear warm-up before the cosine decay.
        label_smoothing: Cross-entropy label smoothing.
        class_balance: Make up for small classes by weighting the loss or the sampling.
        image_size_px: Input height and width; the model's input spec when None.
        seed: Seeds the split, the shuffling and the new head.
        use_transfer_learning: Start from the model version's weights; when False
            the architecture starts from random weights.
        freeze_base_model: Freeze every layer group but the trainable ones.
        trainable_layers_count: How many layer groups, counted from the head, train
            when the base is frozen (the head counts as one).
        unfreeze_every_epochs: With a frozen base, one more group trains every this
            many epochs (progressive unfreezing), each time after a short warm-up.
        freeze_batch_norm: Keep every batch-norm layer's running statistics, even in
            groups that train.
        head_learning_rate_multiplier: Learning rate of the head relative to the body.
        layer_decay: Each layer group's learning rate is this times the next one's
            toward the head (1 gives every group the same rate).
        enable_early_stopping: Stop when the monitored metric stops improving,
            restoring the best weights.
        early_stopping_metric: ``valLoss`` (lower is better) or ``valAccuracy``.
        early_stopping_patience: Epochs without improvement before stopping.
        early_stopping_min_delta: The smallest improvement of the metric that counts.
        enable_data_augmentation: Vary the training images.
        augmentation: The augmentation preset.
        augmentations: An explicit list of augmentation steps that replaces the preset.
        focus: A focus preset for ensemble members; overrides the crops and colours.
        quick_trial: Check a setup in a minute: a small stratified subset, at most
            ``quick_trial_epochs`` epochs.
        quick_trial_images_per_class: Training images per class in a quick trial.
        quick_trial_epochs: The epochs a quick trial runs at most.
        cross_validation_folds: Train this many folds (stratified, grouped) and report
            the mean and spread of their metrics; the last fold's model is kept.
        search: Tune the hyperparameters with Optuna before keeping the best trial.
        feature_extraction: Embed every image once with the frozen backbone (cached
            on disk, shared with quality analysis) and train only a new head on the
            embeddings; augmentation and freezing settings do not apply. A job on a
            graph model that cannot be fine-tuned whole (TFLite, an ONNX graph that
            does not convert to PyTorch) has it turned on when it starts; a Keras
            model fine-tunes its network unless this is asked for.
        time_budget_seconds: Stop after the epoch that passes this budget.
        num_workers: Data loader processes; None sizes them to the machine's cores.
        distributed_processes: Processes that train the job together with
            DistributedDataParallel; None runs one per CUDA device (one on the CPU).
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
    class_balance: ClassBalance = ClassBalance.NONE
    image_size_px: int | None = Field(None, ge=16, le=1024)
    seed: int = 0
    use_transfer_learning: bool = True
    freeze_base_model: bool = False
    trainable_layers_count: int = Field(1, ge=1, le=1000)
    unfreeze_every_epochs: int | None = Field(None, ge=1, le=1000)
    freeze_batch_norm: bool = False
    head_learning_rate_multiplier: float = Field(1.0, gt=0, le=100)
    layer_decay: float = Field(1.0, gt=0, le=1)
    enable_early_stopping: bool = True
    early_stopping_metric: MonitoredMetric = MonitoredMetric.VAL_LOSS
    early_stopping_patience: int = Field(3, ge=1, le=100)
    early_stopping_min_delta: float = Field(0.0, ge=0)
    enable_data_augmentation: bool = True
    augmentation: AugmentationPreset = AugmentationPreset.STANDARD
    augmentations: list[AugmentationStep] | None = None
    focus: FocusPreset = FocusPreset.NONE
    quick_trial: bool = False
    quick_trial_images_per_class: int = Field(8, ge=2, le=1000)
    quick_trial_epochs: int = Field(2, ge=1, le=10)
    cross_validation_folds: int | None = Field(None, ge=2, le=20)
    search: SearchConfig | None = None
    feature_extraction: bool = False
    time_budget_seconds: float | None = Field(None, gt=0)
    num_workers: int | None = Field(None, ge=0, le=64)
    distributed_processes: int | None = Field(None, ge=1, le=64)

    @model_validator(mode="after")
    def _one_outer_loop(self) -> TrainingConfig:
        if self.search is not None and self.cross_validation_folds is not None:
            raise ValueError(
                "choose hyperparameter search or cross-validation for one job, not both"
            )
        outer = self.search is not None or self.cross_validation_folds is not None
        if self.feature_extraction and outer:
            raise ValueError(
                "feature extraction trains one head; it runs without search or cross-validation"
            )
        if self.feature_extraction and not self.use_transfer_learning:
            raise ValueError("feature extraction needs the model's pretrained weights")
        return self

    @property
    def planned_epochs(self) -> int:
        """The epochs this run trains at most (a quick trial caps them)."""
        return min(self.epochs, self.quick_trial_epochs) if self.quick_trial else self.epochs


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
