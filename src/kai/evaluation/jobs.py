"""The ``model.evaluate`` job: score a model version on a dataset version's samples.

Starting it resolves both versions, matches the model's classes with the
dataset's by name (refusing at once when none match) and picks the split:
the test split by default, else validation, else every sample. The job
loads the version's predictor, classifies the samples' reduced copies in
batches with progress events, evaluates, stores the plots as blobs and
records the evaluation on the model version. A sample whose image cannot be
read is skipped with a warning that names it, up to a bound.
"""

from __future__ import annotations

import enum
import io
import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kai.datasets.records import resolve_version as resolve_dataset_version
from kai.db.tables import DatasetVersion, Job, ModelVersion, Sample, Split
from kai.errors import InvalidInput, KaiError, NotFound
from kai.evaluation.mapping import ClassMapping, map_classes
from kai.evaluation.records import save_evaluation, store_plots
from kai.evaluation.reports import Evaluation, evaluate
from kai.jobs.allocator import retain_freed_memory
from kai.jobs.context import JobContext
from kai.jobs.records import submit_job
from kai.jobs.registry import JobRegistry
from kai.models.formats import Predictor
from kai.models.predictions import PredictorCache, load_request_for
from kai.models.records import get_version, resolve_version

logger = logging.getLogger(__name__)

EVALUATE_JOB = "model.evaluate"
BATCH_SIZE = 32
# Skipping more unreadable samples than this share would make the numbers misleading.
MAX_SKIPPED_SHARE = 0.05
PREDICT_END = 0.85


class EvaluationSplit(enum.StrEnum):
    """Which samples an evaluation scores."""

    TEST = "test"
    VAL = "val"
    TRAIN = "train"
    ALL = "all"


_AUTO_ORDER = (EvaluationSplit.TEST, EvaluationSplit.VAL, EvaluationSplit.ALL)


class EvaluationJobConfig(BaseModel):
    """What an evaluation job scores."""

    model_config = ConfigDict(frozen=True)

    model_id: int
    version_id: int
    dataset_id: int
    dataset_version_id: int
    split: EvaluationSplit
    batch_size: int = BATCH_SIZE


@dataclass(frozen=True)
class EvaluationStart:
    """A queued evaluation: the job and what it will score."""

    job: Job
    version: ModelVersion
    dataset_version: DatasetVersion
    split: EvaluationSplit
    num_samples: int
    mapping: ClassMapping


@dataclass(frozen=True)
class _SampleRef:
    uid: str
    reduced_sha256: str
    original_name: str
    target: int


def register_job_handlers(registry: JobRegistry) -> None:
    """Register the evaluation job kind with an entry point's registry."""
    registry.register(EVALUATE_JOB, run_evaluation)


def start_evaluation(
    session: Session,
    model_id: int,
    *,
    dataset_id: int,
    dataset_version: int | None = None,
    model_version: int | None = None,
    split: EvaluationSplit | None = None,
    created_by: int | None = None,
    idempotency_key: str | None = None,
    max_attempts: int = 3,
) -> EvaluationStart:
    """Queue the evaluation of a model version on a dataset version; the caller dispatches.

    Args:
        session: The caller's transaction.
        model_id: The model.
        dataset_id: The dataset whose samples are scored.
        dataset_version: Its version; the latest when None.
        model_version: The model's version; the latest when None.
        split: The samples to score; test, else val, else all when None.
        created_by: The submitting user's id.
        idempotency_key: Makes a repeated submission return the first job.
        max_attempts: How many times the job may start.

    Raises:
        NotFound: The model, dataset or a version does not exist.
        Conflict: The model or dataset has no version yet.
        InvalidInput: No class matches, or the chosen split has no matching samples.
    """
    version = resolve_version(session, model_id, model_version)
    data_version = resolve_dataset_version(session, dataset_id, dataset_version)
    mapping = map_classes([str(n) for n in version.class_names], list(data_version.classes))
    chosen, num_samples = _choose_split(session, data_version, mapping, split)
    config = EvaluationJobConfig(
        model_id=model_id,
        version_id=version.id,
        dataset_id=dataset_id,
        dataset_version_id=data_version.id,
        split=chosen,
    )
    job = submit_job(
        session,
        job_type=EVALUATE_JOB,
        config=config.model_dump(mode="json"),
        idempotency_key=idempotency_key,
        created_by=created_by,
        max_attempts=max_attempts,
    )
    return EvaluationStart(job, version, data_version, chosen, num_samples, mapping)


def run_evaluation(ctx: JobContext) -> dict[str, Any]:
    """Score the model version on the samples named in the job's configuration."""
    retain_freed_memory()
    config = EvaluationJobConfig.model_validate(ctx.config)
    ctx.progress(0.0, stage="load", force=True)
    with ctx.db.session() as session:
        version = _require_version(session, config)
        load_request = load_request_for(session, version)
        mapping = map_classes(
            [str(n) for n in version.class_names], _dataset_classes(session, config)
        )
        samples = _read_samples(session, config, mapping)
    if not samples:
        raise InvalidInput(f"The {config.split.value} split has no samples of a matched class")
    ctx.log(_plan_message(config, mapping, len(samples)))

    predictor = PredictorCache(ctx.blobs, ctx.work_dir / "model").get(load_request)
    probabilities, kept = _predict_all(ctx, predictor, samples, config.batch_size)
    ctx.progress(PREDICT_END, stage="evaluate", force=True)
    evaluation = evaluate(
        mapping.restrict(probabilities),
        np.array([sample.target for sample in kept]),
        class_names=mapping.class_names,
        sample_ids=[sample.uid for sample in kept],
        temperature=load_request.spec.temperature,
    )
    evaluation = replace(evaluation, details=_details(config, mapping, len(samples), len(kept)))

    ctx.progress(0.95, stage="store", force=True)
    evaluation_id = _store(ctx, config, evaluation)
    ctx.progress(1.0, stage="done", force=True)
    return _result(config, evaluation, evaluation_id)


def _choose_split(
    session: Session,
    version: DatasetVersion,
    mapping: ClassMapping,
    split: EvaluationSplit | None,
) -> tuple[EvaluationSplit, int]:
    counts = dict(
        session.execute(
            select(Sample.split, func.count())
            .where(Sample.version_id == version.id, Sample.label.in_(mapping.labels))
            .group_by(Sample.split)
        ).all()
    )
    by_split = {EvaluationSplit(s.value): int(counts.get(s, 0)) for s in Split}
    by_split[EvaluationSplit.ALL] = sum(by_split.values())
    if split is not None:
        if by_split[split] == 0:
            raise InvalidInput(
                f"The {split.value} split of dataset {version.dataset_id} version "
                f"{version.number} has no samples of the classes the model knows; "
                f"samples per split: {by_split}",
                details={"split": split.value, "samplesPerSplit": by_split},
            )
        return split, by_split[split]
    chosen = next(s for s in _AUTO_ORDER if by_split[s] > 0 or s is EvaluationSplit.ALL)
    return chosen, by_split[chosen]


def _require_version(session: Session, config: EvaluationJobConfig) -> ModelVersion:
    version = get_version(session, config.version_id)
    if version.model_id != config.model_id:
        raise NotFound(f"Model {config.model_id} no longer has the version to evaluate")
    return version


def _dataset_classes(session: Session, config: EvaluationJobConfig) -> list[str]:
    version = session.get(DatasetVersion, config.dataset_version_id)
    if version is None:
        raise NotFound(f"Dataset {config.dataset_id} no longer has the version to evaluate on")
    return [str(c) for c in version.classes]


def _read_samples(
    session: Session, config: EvaluationJobConfig, mapping: ClassMapping
) -> list[_SampleRef]:
    query = select(Sample.uid, Sample.reduced_sha256, Sample.original_name, Sample.label).where(
        Sample.version_id == config.dataset_version_id, Sample.label.in_(mapping.labels)
    )
    if config.split is not EvaluationSplit.ALL:
        query = query.where(Sample.split == Split(config.split.value))
    refs = []
    for uid, sha256, name, label in session.execute(query.order_by(Sample.id)):
        target = mapping.target_of(label)
        assert target is not None  # The query kept matched labels only.
        refs.append(_SampleRef(uid, sha256, name, target))
    return refs


def _predict_all(
    ctx: JobContext, predictor: Predictor, samples: list[_SampleRef], batch_size: int
) -> tuple[np.ndarray, list[_SampleRef]]:
    """Probabilities of every readable sample, shape ``(N, num_outputs)``, and those samples."""
    rows: list[np.ndarray] = []
    kept: list[_SampleRef] = []
    max_skipped = max(1, int(MAX_SKIPPED_SHARE * len(samples)))
    for start in range(0, len(samples), batch_size):
        ctx.check_cancelled()
        batch = samples[start : start + batch_size]
        images, readable = _load_batch(ctx, batch)
        kept.extend(readable)
        done = start + len(batch)
        if done - len(kept) > max_skipped:
            raise InvalidInput(
                f"More than {max_skipped} of {len(samples)} samples could not be read; "
                "the dataset's quality analysis finds unreadable images"
            )
        if images:
            rows.append(np.asarray(predictor.predict(images), dtype=np.float64))
        fraction = PREDICT_END * done / len(samples)
        ctx.progress(fraction, stage="predict", done=done, total=len(samples))
    if not kept:
        raise InvalidInput("No sample could be read")
    return np.concatenate(rows), kept


def _load_batch(
    ctx: JobContext, batch: list[_SampleRef]
) -> tuple[list[Image.Image], list[_SampleRef]]:
    images, readable = [], []
    for sample in batch:
        try:
            with Image.open(io.BytesIO(ctx.blobs.read_bytes(sample.reduced_sha256))) as image:
                images.append(image.convert("RGB"))
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, KaiError) as exc:
            ctx.log(f"Skipped sample {sample.uid} ({sample.original_name}): {exc}", level="warning")
            continue
        readable.append(sample)
    return images, readable


def _plan_message(config: EvaluationJobConfig, mapping: ClassMapping, num_samples: int) -> str:
    message = (
        f"Evaluating on {num_samples} samples of the {config.split.value} split, "
        f"{len(mapping.columns)} classes"
    )
    if not mapping.is_complete:
        message += " (only the classes the model and the dataset share)"
    return message


def _details(
    config: EvaluationJobConfig, mapping: ClassMapping, num_selected: int, num_scored: int
) -> dict[str, Any]:
    return {
        "split": config.split.value,
        "classMapping": mapping.to_json(),
        "numSelectedSamples": num_selected,
        "numSkippedSamples": num_selected - num_scored,
    }


def _store(ctx: JobContext, config: EvaluationJobConfig, evaluation: Evaluation) -> int:
    plots = store_plots(ctx.blobs, evaluation)
    with ctx.db.session() as session:
        row = save_evaluation(
            session,
            config.version_id,
            evaluation,
            plots=plots,
            dataset_version_id=config.dataset_version_id,
            job_id=ctx.job_id,
        )
        return row.id


def _result(
    config: EvaluationJobConfig, evaluation: Evaluation, evaluation_id: int
) -> dict[str, Any]:
    metrics = evaluation.metrics
    return {
        "evaluationId": evaluation_id,
        "modelId": config.model_id,
        "modelVersionId": config.version_id,
        "datasetId": config.dataset_id,
        "datasetVersionId": config.dataset_version_id,
        "split": config.split.value,
        "numSamples": metrics.num_samples,
        "accuracy": metrics.accuracy,
        "macroF1": metrics.macro_f1,
        "ece": evaluation.calibration.ece,
        "classMapping": evaluation.details["classMapping"],
    }
