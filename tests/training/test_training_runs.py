"""Training jobs end to end: real PyTorch on 32-px images, through the real job runner.

Each real run imports PyTorch in a job process, so the suite keeps to a
handful of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from training_factories import (
    COLOURS,
    context,
    dataset_zip,
    events,
    image_bytes,
    import_dataset,
    import_model,
    queue_dataset,
    queue_training,
    read_job,
    run_all,
    tiny_weights,
)

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import JobState, ModelVersion
from kai.jobs.environment import JobEnvironment
from kai.models import PredictorCache, list_evaluations, load_request_for, predict_images
from kai.security.images import ImageLimits
from kai.storage.blobs import LocalBlobStore
from kai.training.checkpoints import checkpoint_dir
from kai.training.jobs import run_training_job

pytestmark = [pytest.mark.db, pytest.mark.slow]

CLASSES = {"ceramic": 4, "stone": 4, "wood": 4}
LIMITS = ImageLimits.from_settings(Settings())


def test_a_run_reports_each_epoch_and_writes_a_version_that_predicts(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))
    # Four ImageNet-style outputs: the dataset's three classes need a new head.
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors", 4))
    job_id = queue_training(database, model_id, dataset_id)

    run_all(env)

    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    metrics = events(database, job_id, "metrics")
    assert [e.payload["epoch"] for e in metrics] == [1, 2]
    for event in metrics:
        assert {"trainLoss", "trainAccuracy", "valLoss", "valAccuracy", "learningRate"} <= set(
            event.payload["metrics"]
        )
    progress = events(database, job_id, "progress")
    assert any(
        e.payload.get("currentEpoch") == 2 and e.payload.get("totalEpochs") == 2 for e in progress
    )
    logs = " ".join(e.payload["message"] for e in events(database, job_id, "log"))
    assert "validation split made here" in logs
    completed = events(database, job_id, "completed")
    assert len(completed) == 1
    results = completed[0].payload["results"]
    assert results["finalMetrics"] == metrics[-1].payload["metrics"]
    assert_trained_version(database, blobs, results, dataset_classes=sorted(CLASSES))
    assert not checkpoint_dir(settings.resolved_data_dir, job_id).exists()


def assert_trained_version(
    database: Database,
    blobs: LocalBlobStore,
    results: dict[str, Any],
    *,
    dataset_classes: list[str],
) -> None:
    with database.session() as session:
        version = session.get(ModelVersion, results["modelVersionId"])
        assert version is not None
        assert version.parent_id == results["fromVersionId"]
        assert version.provenance["kind"] == "trained"
        assert version.provenance["fromVersionId"] == results["fromVersionId"]
        assert version.provenance["datasetVersionId"] == results["datasetVersionId"]
        assert version.class_names == dataset_classes
        evaluations = list_evaluations(session, version.id)
        assert evaluations, "the evaluation was recorded"
        request = load_request_for(session, version)
    # The temperature is fitted on validation, kept with the version and measured on test.
    calibration = evaluations[0].metrics["calibration"]
    assert calibration["temperatureFittedOn"] == "validation"
    assert request.spec.temperature == calibration["temperature"]
    assert results["calibration"]["temperature"] == calibration["temperature"]
    cache = PredictorCache(blobs, blobs.root.parent / "model-cache")
    predictor = cache.get(request)
    photo = image_bytes(COLOURS["stone"], 99)
    [prediction] = predict_images(predictor, [("stone.jpg", photo)], limits=LIMITS, top_k=3)
    assert {score.label for score in prediction.top} == set(dataset_classes)
    assert abs(sum(score.probability for score in prediction.top) - 1.0) < 1e-4


def test_training_waits_for_a_running_import_and_fails_with_its_reason(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))
    one_class = dataset_zip(tmp_path / "d.zip", {"stone": 4})
    dataset_id, import_id = queue_dataset(database, one_class)
    job_id = queue_training(database, model_id, dataset_id)
    assert read_job(database, job_id).depends_on == [import_id]

    run_all(env)

    assert read_job(database, import_id).state is JobState.FAILED
    job = read_job(database, job_id)
    assert job.state is JobState.FAILED
    assert read_job(database, import_id).error in (job.error or "")


class Killed(BaseException):
    """Stands in for the process dying: no handler catches it."""


def test_a_retried_attempt_resumes_after_the_last_checkpoint_without_repeating_epochs(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))
    job_id = queue_training(database, model_id, dataset_id, epochs=3)
    first = context(settings, database, blobs, job_id)
    emit = first.emit

    def emit_then_die(event_type: str, payload: dict[str, Any]) -> int:
        seq = emit(event_type, payload)
        if event_type == "metrics" and payload["epoch"] == 2:
            raise Killed
        return seq

    first.emit = emit_then_die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        run_training_job(first)
    assert (checkpoint_dir(settings.resolved_data_dir, job_id) / "last.pt").exists()

    results = run_training_job(context(settings, database, blobs, job_id, attempt=2))

    assert [e.payload["epoch"] for e in events(database, job_id, "metrics")] == [1, 2, 3]
    logs = [e.payload["message"] for e in events(database, job_id, "log")]
    assert "Resumed from the checkpoint after epoch 2" in logs
    assert results["epochs"] == 3
