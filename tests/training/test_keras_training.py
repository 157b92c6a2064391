"""Keras models fine-tune their own network through Keras's PyTorch backend.

The tiny models are built here with Keras imported the way Kai imports it
(``import_keras``), which leaves ``KERAS_BACKEND`` unset for other tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from training_factories import (
    COLOURS,
    context,
    dataset_zip,
    events,
    image_bytes,
    import_dataset,
    import_model,
    queue_training,
    read_job,
    run_all,
)

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import JobState, ModelVersion
from kai.jobs.environment import JobEnvironment
from kai.models import (
    PredictorCache,
    list_artifacts,
    list_evaluations,
    load_request_for,
    predict_images,
)
from kai.models.formats.keras_models import KerasPredictor, import_keras
from kai.security.images import ImageLimits
from kai.storage.blobs import LocalBlobStore
from kai.training import SearchConfig
from kai.training.jobs import run_training_job

# Model formats, not the database: they run once, on SQLite.
pytestmark = [pytest.mark.slow]

TWO_CLASSES = {"ceramic": 6, "stone": 6}
SIZE_PX = 32


def keras_classifier(path: Path, num_classes: int = 3) -> Path:
    """Convolution, batch norm, pooling, dropout and a softmax Dense head, saved as ``path``."""
    keras = import_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE_PX, SIZE_PX, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.1, name="drop")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="head")(x)
    keras.Model(inputs, outputs, name="tiny_keras").save(str(path))
    return path


def headless_classifier(path: Path) -> Path:
    """Scores straight from a 1x1 convolution: no Dense layer to replace."""
    keras = import_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE_PX, SIZE_PX, 3))
    x = keras.layers.Conv2D(3, 1, name="scores")(inputs)
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    keras.Model(inputs, outputs, name="headless").save(str(path))
    return path


def keras_model_of(
    database: Database, blobs: LocalBlobStore, version: ModelVersion, cache_dir: Path
) -> Any:
    """The version's Keras model, loaded as predictions load it."""
    with database.session() as session:
        request = load_request_for(session, version)
    predictor = PredictorCache(blobs, cache_dir).get(request)
    assert isinstance(predictor, KerasPredictor)
    return predictor.model


def stored_version(database: Database, version_id: int) -> ModelVersion:
    with database.session() as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None
        session.expunge(version)
        return version


def import_both(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    model_file: Path,
) -> tuple[int, int]:
    """The tiny dataset and ``model_file`` imported through their real jobs; their ids."""
    archive = dataset_zip(tmp_path / "d.zip", TWO_CLASSES)
    dataset_id = import_dataset(settings, database, blobs, archive)
    return import_model(settings, database, blobs, model_file, architecture=None), dataset_id


def versions_of(database: Database, results: dict[str, Any]) -> tuple[ModelVersion, ModelVersion]:
    """The version a run started from and the one it wrote."""
    version = stored_version(database, results["modelVersionId"])
    assert version.parent_id is not None
    return stored_version(database, version.parent_id), version


def weights_of(model: Any, layer: str) -> list[np.ndarray]:
    return [np.asarray(weight) for weight in model.get_layer(layer).get_weights()]


def test_a_keras_network_fine_tunes_into_a_keras_version_that_predicts(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    backend = os.environ.get("KERAS_BACKEND")
    model_file = keras_classifier(tmp_path / "m.keras")
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs, model_file)
    job_id = queue_training(database, model_id, dataset_id, epochs=6, learning_rate=0.05)
    assert read_job(database, job_id).config["training"]["feature_extraction"] is False

    run_all(env)

    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    assert [e.payload["epoch"] for e in events(database, job_id, "metrics")] == list(range(1, 7))
    results = job.result or {}
    assert results["fineTuning"] == {"mode": "kerasNetwork"}
    parent, version = versions_of(database, results)
    assert (version.format, version.framework) == ("keras", "keras")
    assert version.class_names == sorted(TWO_CLASSES)
    assert version.provenance["fromVersionId"] == parent.id
    with database.session() as session:
        assert {row.name for row in list_artifacts(session, version.id)} == {"model.keras"}
        assert list_evaluations(session, version.id)

    # The base layers trained: convolution weights and batch-norm statistics moved.
    before = keras_model_of(database, blobs, parent, tmp_path / "cache")
    after = keras_model_of(database, blobs, version, tmp_path / "cache")
    assert after.output_shape == (None, len(TWO_CLASSES))
    assert not np.allclose(weights_of(before, "conv")[0], weights_of(after, "conv")[0])
    assert not np.allclose(weights_of(before, "bn")[2], weights_of(after, "bn")[2])

    with database.session() as session:
        request = load_request_for(session, version)
    predictor = PredictorCache(blobs, tmp_path / "cache").get(request)
    photos = [(name, image_bytes(COLOURS[name], 97)) for name in TWO_CLASSES]
    limits = ImageLimits.from_settings(Settings())
    predictions = predict_images(predictor, photos, limits=limits, top_k=2)
    assert {p.name: p.top[0].label for p in predictions} == {name: name for name in TWO_CLASSES}
    assert os.environ.get("KERAS_BACKEND") == backend


def test_a_frozen_h5_keras_base_keeps_its_weights_and_trains_the_new_head(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    model_file = keras_classifier(tmp_path / "m.h5")
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs, model_file)
    job_id = queue_training(
        database, model_id, dataset_id, freeze_base_model=True, trainable_layers_count=1
    )

    results = run_training_job(context(settings, database, blobs, job_id))

    assert results["fineTuning"] == {"mode": "kerasNetwork"}
    parent, version = versions_of(database, results)
    assert version.format == "keras"
    before = keras_model_of(database, blobs, parent, tmp_path / "cache")
    after = keras_model_of(database, blobs, version, tmp_path / "cache")
    for name in ("conv", "bn"):
        for old, new in zip(weights_of(before, name), weights_of(after, name), strict=True):
            np.testing.assert_array_equal(old, new)
    old_head, new_head = weights_of(before, "head")[0], weights_of(after, "head")[0]
    assert (old_head.shape, new_head.shape) == ((4, 3), (4, len(TWO_CLASSES)))
    assert after.get_layer("bn").trainable  # The file keeps the layers' own flags.


def test_a_keras_model_without_a_dense_head_falls_back_to_feature_extraction(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    model_file = headless_classifier(tmp_path / "m.keras")
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs, model_file)
    job_id = queue_training(database, model_id, dataset_id)

    results = run_training_job(context(settings, database, blobs, job_id))

    reason = results["fineTuning"]["reason"]
    assert results["fineTuning"]["mode"] == "featureExtraction"
    assert "Conv2D, not a Dense classifier" in reason
    assert versions_of(database, results)[1].format == "kai_head"
    logs = events(database, job_id, "log")
    warnings = [e.payload["message"] for e in logs if e.payload["level"] == "warning"]
    assert any(reason in message for message in warnings)


def test_a_retried_keras_run_resumes_after_its_last_checkpoint(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    model_file = keras_classifier(tmp_path / "m.keras")
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs, model_file)
    job_id = queue_training(database, model_id, dataset_id, epochs=3)
    first = context(settings, database, blobs, job_id)
    emit = first.emit

    def emit_then_die(event_type: str, payload: dict[str, Any]) -> int:
        seq = emit(event_type, payload)
        if event_type == "metrics" and payload["epoch"] == 2:
            raise KeyboardInterrupt
        return seq

    first.emit = emit_then_die  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        run_training_job(first)

    results = run_training_job(context(settings, database, blobs, job_id, attempt=2))

    assert [e.payload["epoch"] for e in events(database, job_id, "metrics")] == [1, 2, 3]
    logs = [e.payload["message"] for e in events(database, job_id, "log")]
    assert "Resumed from the checkpoint after epoch 2" in logs
    assert results["fineTuning"] == {"mode": "kerasNetwork"}
    assert stored_version(database, results["modelVersionId"]).format == "keras"


def test_a_keras_search_tries_its_trials_and_writes_the_best_as_keras(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    model_file = keras_classifier(tmp_path / "m.keras")
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs, model_file)
    search = SearchConfig(trials=2, startup_trials=1, tune_trainable_layers=False)
    job_id = queue_training(database, model_id, dataset_id, epochs=1, search=search)

    run_all(env)

    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    trials = [e.payload for e in events(database, job_id, "trial")]
    assert {t["trial"] for t in trials} == {0, 1}
    results = job.result or {}
    assert results["search"]["bestTrial"] in (0, 1)
    assert results["fineTuning"] == {"mode": "kerasNetwork"}
    _, version = versions_of(database, results)
    assert version.format == "keras" and version.class_names == sorted(TWO_CLASSES)


def test_a_keras_model_cross_validates_and_writes_its_last_fold(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    model_file = keras_classifier(tmp_path / "m.keras")
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs, model_file)
    job_id = queue_training(database, model_id, dataset_id, epochs=1, cross_validation_folds=2)

    run_all(env)

    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    summary = (job.result or {})["crossValidation"]
    assert [fold["fold"] for fold in summary["folds"]] == [1, 2]
    assert "valAccuracy" in summary["mean"] and "valAccuracy" in summary["spread"]
    assert [e.payload["fold"] for e in events(database, job_id, "fold")] == [1, 1]
    _, version = versions_of(database, job.result or {})
    assert version.format == "keras"


def test_a_keras_model_trains_from_scratch_from_new_weights(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    model_file = keras_classifier(tmp_path / "m.keras")
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs, model_file)
    # So small a rate cannot move a weight by 1e-3: only new initial weights differ that much.
    job_id = queue_training(
        database, model_id, dataset_id, epochs=1, learning_rate=1e-9, use_transfer_learning=False
    )

    run_all(env)

    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    logs = " ".join(e.payload["message"] for e in events(database, job_id, "log"))
    assert "From scratch" in logs
    parent, version = versions_of(database, job.result or {})
    original = keras_model_of(database, blobs, parent, tmp_path / "cache")
    trained = keras_model_of(database, blobs, version, tmp_path / "cache")
    assert not np.allclose(
        weights_of(original, "conv")[0], weights_of(trained, "conv")[0], atol=1e-3
    )
