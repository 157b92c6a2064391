"""Feature extraction: embeddings cached once and shared with quality, only the head trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_factories import (
    COLOURS,
    dataset_zip,
    events,
    image_bytes,
    import_dataset,
    import_model,
    queue_training,
    read_job,
    run_all,
    tiny_weights,
)

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import JobState, ModelVersion
from kai.embeddings import EmbeddingCache
from kai.jobs.environment import JobEnvironment
from kai.models import PredictorCache, load_request_for, predict_images
from kai.quality.backbones import resolve_embedder
from kai.security.images import ImageLimits
from kai.storage.blobs import LocalBlobStore

pytestmark = [pytest.mark.db, pytest.mark.slow]

CLASSES = {"ceramic": 4, "stone": 4, "wood": 4}


def test_feature_extraction_trains_a_head_on_cached_embeddings_quality_shares(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors", 4))
    first = queue_training(
        database, model_id, dataset_id, epochs=3, feature_extraction=True, learning_rate=0.05
    )
    run_all(env)

    job = read_job(database, first)
    assert job.state is JobState.SUCCEEDED, job.error
    results = job.result or {}
    identity = results["featureExtraction"]["backbone"]
    assert [e.payload["epoch"] for e in events(database, first, "metrics")] == [1, 2, 3]
    logs = " ".join(e.payload["message"] for e in events(database, first, "log"))
    assert "12 of 12 images not cached" in logs

    with database.session() as session:
        version = session.get(ModelVersion, results["modelVersionId"])
        assert version is not None
        parent_id = version.parent_id
        request = load_request_for(session, version)
    # Quality analysis with this version as its backbone reads the very same cache.
    quality_settings = settings.model_copy(update={"embedding_backbone": f"model:{parent_id}"})
    embedder = resolve_embedder(
        quality_settings, database, blobs, version_id=1, work_dir=tmp_path / "w"
    )
    assert not isinstance(embedder, str), embedder
    assert embedder.backbone.identity == identity
    cache = EmbeddingCache(settings.resolved_data_dir, identity)
    assert cache.dimension == results["featureExtraction"]["embeddingWidth"]

    # The new version is a whole network that predicts from an image.
    predictor = PredictorCache(blobs, tmp_path / "model-cache").get(request)
    photo = image_bytes(COLOURS["wood"], 99)
    limits = ImageLimits.from_settings(Settings())
    [prediction] = predict_images(predictor, [("wood.jpg", photo)], limits=limits, top_k=3)
    assert {score.label for score in prediction.top} == set(CLASSES)

    second = queue_training(
        database, model_id, dataset_id, model_version=1, epochs=1, feature_extraction=True
    )
    run_all(env)
    assert read_job(database, second).state is JobState.SUCCEEDED
    logs = " ".join(e.payload["message"] for e in events(database, second, "log"))
    assert "0 of 12 images not cached" in logs
