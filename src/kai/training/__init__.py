"""Training: connect a model version with a dataset version in a job, and keep the result.

A ``training.run`` job fine-tunes a PyTorch model version (a state dict, a
transformers classifier, or an ONNX graph converted to one) on a dataset
version's reduced images, reports progress and per-epoch metrics as job
events, checkpoints every epoch, and writes the trained weights as a new
version of the model with its lineage. The same job can search the
hyperparameters with Optuna first, or cross-validate over k folds. The API,
the CLI and the workers share :class:`TrainingConfig`.
"""

from kai.training.config import (
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
from kai.training.jobs import register_job_handlers
from kai.training.starts import TRAIN_JOB, start_training

__all__ = [
    "TRAIN_JOB",
    "AugmentationPreset",
    "AugmentationStep",
    "ClassBalance",
    "FocusPreset",
    "MonitoredMetric",
    "OptimizerName",
    "ScheduleName",
    "SearchConfig",
    "TrainingConfig",
    "TrainingJobConfig",
    "register_job_handlers",
    "start_training",
]
