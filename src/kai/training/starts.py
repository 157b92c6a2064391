"""Starting a training job: judge the request before any job runs, then queue it.

A PyTorch state dict trains any way. A Hugging Face transformers image
classifier trains the same ways: the job rebuilds transformers' own class
for its config from the kept folder, with a head for the dataset's classes,
and writes a ``transformers`` version again; it trains at its own input size
(``imageSizePx`` is dropped from its config). An ONNX graph that converts to
PyTorch (its import tried the conversion and recorded the verdict in its
inspection details as ``torchConversion``) trains the same ways: the job
converts it again in its own process and fine-tunes the network under a new
head. A Keras model fine-tunes its own network through Keras's PyTorch
backend in one plain run (the job falls back to feature extraction when its
head or layers do not allow that). Other models (an ONNX graph that does
not convert, TFLite, SavedModels, frozen TensorFlow graphs, TorchScript
programs, or a head Kai trained over one) train only by feature
extraction, the frozen model embedding the images, so a job on one has
``featureExtraction`` turned on in its stored config. Where the model
exposes no embedding (TorchScript, a frozen graph, a SavedModel whose
signature returns only scores, an ONNX graph without a linear head) its
class scores serve as its features.
A version made from an architecture name alone (never trained) trains from
scratch: its stored config says ``useTransferLearning: false``.

What can be judged at once is: a format Kai cannot train yet, a dataset
with fewer than two classes, a batch larger than the training split, more
cross-validation folds than a class has images, search or cross-validation
on a graph that trains only by feature extraction. A
model or dataset whose import is still running cannot be judged yet: the
job then depends on that import, waits for it, and fails with the import's
reason if it fails; the job repeats the checks when it starts.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kai.datasets import get_dataset
from kai.datasets import resolve_version as resolve_dataset_version
from kai.db.tables import DatasetVersion, Job, JobState, ModelVersion, Sample, Split
from kai.errors import InvalidInput
from kai.jobs.records import submit_job
from kai.models import get_model
from kai.models import resolve_version as resolve_model_version
from kai.models.repositories import is_untrained
from kai.training.config import SearchConfig, TrainingConfig, TrainingJobConfig

logger = logging.getLogger(__name__)

TRAIN_JOB = "training.run"
# Trials of a search job's study, run beside it by any free worker.
TRIALS_JOB = "training.trials"
TRAINABLE_FORMATS = frozenset({"pytorch_state_dict"})
# Kept as a folder the network is rebuilt from (transformers' own class for its config); they
# train every way a state dict does.
FOLDER_FORMATS = frozenset({"transformers"})
# Graphs fine-tuned whole when they convert to PyTorch, by feature extraction otherwise.
CONVERTIBLE_FORMATS = frozenset({"onnx"})
# Their predictors give features (an embedding, or their class scores) but they take no new
# head: a head trains over those features.
FEATURE_ONLY_FORMATS = frozenset({"tflite", "savedmodel", "tensorflow", "torchscript", "kai_head"})
GRAPH_FORMATS = CONVERTIBLE_FORMATS | FEATURE_ONLY_FORMATS
# Their own network fine-tunes on PyTorch through their framework (Keras 3's torch backend).
NATIVE_TRAINABLE_FORMATS = frozenset({"keras"})
# Why a feature-only format takes no new head, and what its features are.
_SCORES = "so its class scores serve as its features"
_FEATURE_ONLY_REASONS = {
    "torchscript": f"a TorchScript program can neither take a new head nor be cut before its "
    f"own, {_SCORES}",
    "tensorflow": f"a frozen TensorFlow graph takes no new head and names no embedding, {_SCORES}",
}
MIN_CLASSES = 2
_PENDING = (JobState.QUEUED, JobState.RUNNING)
# A search asked for with one flag gets an hour unless its config says otherwise.
DEFAULT_SEARCH_SECONDS = 3600.0


def start_training(
    session: Session,
    job_config: TrainingJobConfig,
    *,
    hyperparameter_search: bool = False,
    created_by: int | None = None,
    idempotency_key: str | None = None,
    max_attempts: int = 3,
) -> Job:
    """Check the request and queue a ``training.run`` job; the caller commits and dispatches.

    Args:
        session: The open session.
        job_config: What to train on what, and how.
        hyperparameter_search: Search the hyperparameters with the default search
            (unless the config already carries one).
        created_by: The user who asked.
        idempotency_key: Makes a repeated request answer the same job.
        max_attempts: Attempts before the job fails for good.

    Raises:
        InvalidInput: The model's format cannot be trained (or, for a graph model,
            not with search, cross-validation or from scratch), the dataset has one
            class, the batch is larger than the training split, or a class has
            fewer images than the cross-validation folds.
        NotFound: The model, the dataset or a named version does not exist.
        Conflict: The model or dataset has no version and no import running.
    """
    if hyperparameter_search and job_config.training.search is None:
        search = SearchConfig(time_budget_seconds=DEFAULT_SEARCH_SECONDS)
        training = job_config.training.model_copy(update={"search": search})
        job_config = job_config.model_copy(update={"training": training})
    model_waits, job_config = _model_dependency(session, job_config)
    waits_for = [*model_waits, *_dataset_dependency(session, job_config)]
    job = submit_job(
        session,
        job_type=TRAIN_JOB,
        config=job_config.model_dump(mode="json"),
        idempotency_key=idempotency_key,
        created_by=created_by,
        depends_on=waits_for,
        max_attempts=max_attempts,
    )
    logger.info("Training queued", extra={"job_id": job.id, "waits_for": waits_for})
    return job


def check_model_version(version: ModelVersion) -> None:
    """Refuse a model version whose format training cannot build yet."""
    networks = TRAINABLE_FORMATS | FOLDER_FORMATS | NATIVE_TRAINABLE_FORMATS
    if version.format in networks | GRAPH_FORMATS:
        return
    raise InvalidInput(
        f"Model version {version.number} is in format {version.format!r}, which Kai cannot "
        f"train: training {version.format} models is not built yet. Export it as ONNX, "
        "Keras or TFLite, or import the weights as a PyTorch state dict (.safetensors or "
        ".pt) with its architecture",
        details={"field": "modelId", "format": version.format},
    )


def fine_tuning_obstacle(version: ModelVersion) -> str | None:
    """Why the version cannot be fine-tuned whole, or None when it can (or may: see below).

    An ONNX version imported before its import tried the conversion has no verdict;
    its job tries the conversion and falls back to feature extraction if it fails.
    """
    details = version.inspection.get("details", {})
    if version.format in _FEATURE_ONLY_REASONS:
        return _FEATURE_ONLY_REASONS[version.format]
    if version.format == "savedmodel" and not details.get("featuresOutput"):
        return f"a SavedModel takes no new head and its signature returns no embedding, {_SCORES}"
    if version.format in FEATURE_ONLY_FORMATS:
        return f"a {version.format} graph takes no new head"
    if version.format not in CONVERTIBLE_FORMATS:
        return None
    # Imports record the ONNX tensor features are read from; None means no linear head.
    if details.get("featureTensor", "") is None:
        return f"the ONNX graph's output comes from no Gemm or MatMul head to replace, {_SCORES}"
    verdict = details.get("torchConversion")
    if not isinstance(verdict, dict) or verdict.get("convertible", True):
        return None
    return f"its graph does not convert to PyTorch: {verdict.get('reason') or 'no reason given'}"


def adapt_to_model(version: ModelVersion, job_config: TrainingJobConfig) -> TrainingJobConfig:
    """The config with feature extraction turned on for a version that trains no other way.

    A Keras version keeps its config: its own network fine-tunes, searches,
    cross-validates or trains from scratch. A transformers version trains at its
    own input size (a ViT's position embeddings fix it), so ``imageSizePx`` is
    dropped.

    Raises:
        InvalidInput: The version's format cannot be trained, or the config asks a graph
            model for what only a network does (search, cross-validation, no
            pretrained weights).
    """
    check_model_version(version)
    job_config = adapt_to_untrained(version, job_config)
    training = job_config.training
    if version.format in FOLDER_FORMATS:
        return _without_image_size(job_config)
    if version.format in NATIVE_TRAINABLE_FORMATS and not training.feature_extraction:
        return job_config
    obstacle = fine_tuning_obstacle(version)
    if obstacle is None or training.feature_extraction:
        return job_config
    refuse_feature_only(version, training, obstacle)
    logger.info(
        "Feature extraction for a graph model: %s",
        obstacle,
        extra={"format": version.format, "model_version_id": version.id},
    )
    training = training.model_copy(update={"feature_extraction": True})
    return job_config.model_copy(update={"training": training})


def adapt_to_untrained(version: ModelVersion, job_config: TrainingJobConfig) -> TrainingJobConfig:
    """The config that trains from scratch, for a version made from an architecture alone.

    Its weights were never trained, so there is nothing to transfer: the stored
    config says ``useTransferLearning: false`` and the job draws new weights.

    Raises:
        InvalidInput: The config asks for what needs learned features (a frozen
            base, feature extraction).
    """
    if not is_untrained(version.provenance):
        return job_config
    training = job_config.training
    asked = [
        name
        for name, on in (
            ("freezeBaseModel", training.freeze_base_model),
            ("featureExtraction", training.feature_extraction),
        )
        if on
    ]
    if asked:
        raise InvalidInput(
            f"Model version {version.number} was made from the architecture "
            f"{version.architecture!r} and has never been trained: its features are random, "
            f"so {' and '.join(asked)} would train a head over noise; leave "
            f"{' and '.join(asked)} off to train the whole network from scratch",
            details={"field": "modelId", "options": asked},
        )
    if training.use_transfer_learning:
        logger.info(
            "An untrained version trains from scratch",
            extra={"model_version_id": version.id},
        )
        training = training.model_copy(update={"use_transfer_learning": False})
    return job_config.model_copy(update={"training": training})


def _without_image_size(job_config: TrainingJobConfig) -> TrainingJobConfig:
    if job_config.training.image_size_px is None:
        return job_config
    training = job_config.training.model_copy(update={"image_size_px": None})
    return job_config.model_copy(update={"training": training})


def refuse_feature_only(version: ModelVersion, training: TrainingConfig, obstacle: str) -> None:
    """Refuse options feature extraction cannot honour on a version that trains no other way.

    Raises:
        InvalidInput: The config asks for search, cross-validation or no pretrained weights.
    """
    asked = _network_options_asked(training)
    if asked:
        raise InvalidInput(
            f"Model version {version.number} is a {version.format} graph that cannot be "
            f"fine-tuned whole ({obstacle}): it trains only by feature extraction (a new "
            f"head over its frozen features), which cannot be combined with "
            f"{' or '.join(asked)}; leave that out to train it",
            details={
                "field": "modelId",
                "format": version.format,
                "options": asked,
                "reason": obstacle,
            },
        )


def _network_options_asked(training: TrainingConfig) -> list[str]:
    """The options asked for that only a network (PyTorch or Keras) offers, not a graph."""
    return [
        name
        for name, on in (
            ("hyperparameter search", training.search is not None),
            ("cross-validation", training.cross_validation_folds is not None),
            (
                "training from scratch (useTransferLearning false)",
                not training.use_transfer_learning,
            ),
        )
        if on
    ]


def resolve_training_mode(session: Session, job_config: TrainingJobConfig) -> TrainingJobConfig:
    """The job's config adapted to its model version as it resolves now (see adapt_to_model)."""
    version = resolve_model_version(session, job_config.model_id, job_config.model_version)
    return adapt_to_model(version, job_config)


def check_dataset_version(
    session: Session, version: DatasetVersion, config: TrainingConfig
) -> None:
    """Refuse a dataset version with one class, or a batch larger than its training split."""
    if len(version.classes) < MIN_CLASSES:
        raise InvalidInput(
            f"Dataset version {version.number} has {len(version.classes)} class(es); "
            f"training a classifier needs at least {MIN_CLASSES}",
            details={"field": "datasetId", "classes": list(version.classes)},
        )
    train_count = estimate_training_count(session, version, config.validation_split)
    if config.batch_size > train_count:
        raise InvalidInput(
            f"batchSize {config.batch_size} is larger than the training split of dataset "
            f"version {version.number} ({train_count} images); use a batch size of at most "
            f"{train_count}",
            details={"field": "batchSize", "trainingImages": train_count},
        )
    if config.cross_validation_folds is not None:
        _check_folds(session, version, config.cross_validation_folds)


def _check_folds(session: Session, version: DatasetVersion, folds: int) -> None:
    counts = dict(
        session.execute(
            select(Sample.label, func.count())
            .where(Sample.version_id == version.id, Sample.split != Split.TEST)
            .group_by(Sample.label)
        ).all()
    )
    smallest = min(counts.values(), default=0)
    if smallest < folds:
        label = min(counts, key=lambda name: counts[name]) if counts else ""
        raise InvalidInput(
            f"crossValidationFolds {folds} is more than class {label!r} has images "
            f"({smallest}); use at most {smallest} folds",
            details={"field": "crossValidationFolds", "smallestClass": smallest},
        )


def estimate_training_count(session: Session, version: DatasetVersion, share: float) -> int:
    """Images training will see: the train split, or all but the held-out share when no val."""
    counts = dict(
        session.execute(
            select(Sample.split, func.count())
            .where(Sample.version_id == version.id)
            .group_by(Sample.split)
        ).all()
    )
    if counts.get(Split.VAL, 0) > 0:
        return int(counts.get(Split.TRAIN, 0))
    pool = int(counts.get(Split.TRAIN, 0)) + int(counts.get(Split.VAL, 0))
    return pool - max(1, round(pool * share))


def _model_dependency(
    session: Session, job_config: TrainingJobConfig
) -> tuple[list[int], TrainingJobConfig]:
    model = get_model(session, job_config.model_id)
    pending = _pending_job(session, model.import_job_id)
    if pending is not None:
        return [pending], job_config
    return [], resolve_training_mode(session, job_config)


def _dataset_dependency(session: Session, job_config: TrainingJobConfig) -> list[int]:
    dataset = get_dataset(session, job_config.dataset_id)
    pending = _pending_job(session, dataset.import_job_id)
    if pending is not None:
        return [pending]
    version = resolve_dataset_version(session, dataset.id, job_config.dataset_version)
    check_dataset_version(session, version, job_config.training)
    return []


def _pending_job(session: Session, job_id: int | None) -> int | None:
    if job_id is None:
        return None
    state = session.scalar(select(Job.state).where(Job.id == job_id))
    return job_id if state in _PENDING else None
