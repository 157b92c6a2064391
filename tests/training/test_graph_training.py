"""TFLite models, and Keras models and ONNX graphs on request, train a head over their features.

An ONNX graph that does not convert to PyTorch trains this way by itself: see
test_onnx_fine_tuning.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import safetensors.numpy
import torch
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
)

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import JobState, ModelVersion
from kai.errors import InvalidInput
from kai.evaluation import start_evaluation
from kai.jobs.environment import JobEnvironment
from kai.models import PredictorCache, list_artifacts, load_request_for, predict_images
from kai.models.formats import FeatureExtractor
from kai.quality.backbones import resolve_embedder
from kai.security.images import ImageLimits
from kai.storage.blobs import LocalBlobStore
from models.model_factories import linear_onnx_graph, save_torchscript, tiny_model
from models.savedmodel_factories import NUM_CLASSES as SAVEDMODEL_CLASSES
from models.savedmodel_factories import build_saved_models
from models.tflite_factories import linear_tflite

# Model formats, not the database: they run once, on SQLite.
pytestmark = [pytest.mark.slow]

TWO_CLASSES = {"ceramic": 6, "stone": 6}


def onnx_file(path: Path, num_classes: int) -> Path:
    onnx.save(linear_onnx_graph(num_classes), str(path))
    return path


def headless_onnx_file(path: Path) -> Path:
    """Pooled pixels as the output, with no Gemm or MatMul head to read features before."""
    graph = linear_onnx_graph(3)
    del graph.graph.node[2]
    graph.graph.node[1].output[0] = "logits"
    del graph.graph.initializer[:]
    graph.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 3
    onnx.save(graph, str(path))
    return path


def train_graph(
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
    model_file: Path,
    dataset_id: int,
    *,
    import_options: dict[str, Any] | None = None,
    **changes: Any,
) -> tuple[dict[str, object], ModelVersion]:
    """Import ``model_file``, train it (by default without asking for a mode), return results."""
    facts = {"architecture": None, **(import_options or {})}
    model_id = import_model(settings, database, blobs, model_file, **facts)
    options = {"epochs": 40, "learning_rate": 0.2, **changes}
    job_id = queue_training(database, model_id, dataset_id, **options)
    assert read_job(database, job_id).config["training"]["feature_extraction"] is True
    run_all(env)
    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    assert len(events(database, job_id, "metrics")) == 40
    results = job.result or {}
    with database.session() as session:
        version = session.get(ModelVersion, results["modelVersionId"])
        assert version is not None
        session.expunge(version)
    return results, version


def predict_colours(
    database: Database, blobs: LocalBlobStore, version: ModelVersion, cache_dir: Path
) -> dict[str, str]:
    """The top label the version predicts for a new image of each colour, by true label."""
    with database.session() as session:
        request = load_request_for(session, version)
    predictor = PredictorCache(blobs, cache_dir).get(request)
    limits = ImageLimits.from_settings(Settings())
    photos = [(name, image_bytes(COLOURS[name], 97)) for name in TWO_CLASSES]
    predictions = predict_images(predictor, photos, limits=limits, top_k=2)
    return {p.name: p.top[0].label for p in predictions}


def test_an_onnx_graph_asked_for_feature_extraction_trains_a_head_that_shares_embeddings(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    dataset_id = import_dataset(
        settings, database, blobs, dataset_zip(tmp_path / "d.zip", TWO_CLASSES)
    )
    graph = onnx_file(tmp_path / "m.onnx", 5)
    results, version = train_graph(
        settings, database, blobs, env, graph, dataset_id, feature_extraction=True
    )

    assert version.format == "kai_head"
    assert version.parent_id == results["fromVersionId"]
    assert version.class_names == sorted(TWO_CLASSES)
    with database.session() as session:
        names = {row.name: row.role for row in list_artifacts(session, version.id)}
        parent = session.get(ModelVersion, version.parent_id)
        assert parent is not None and parent.format == "onnx"
    assert names == {"head.safetensors": "weights", "base/model.onnx": "base"}
    assert predict_colours(database, blobs, version, tmp_path / "cache") == {
        name: name for name in TWO_CLASSES
    }

    # Quality analysis embedding with the ONNX version reads the rows training wrote.
    identity = results["featureExtraction"]["backbone"]  # type: ignore[index]
    assert identity == f"model-version-{version.parent_id}-32px"
    quality = settings.model_copy(update={"embedding_backbone": f"model:{version.parent_id}"})
    embedder = resolve_embedder(quality, database, blobs, version_id=1, work_dir=tmp_path / "q")
    assert not isinstance(embedder, str), embedder
    assert embedder.backbone.identity == identity
    assert embedder.cache.dimension == 3

    # The head's version trains again, over the same graph's features.
    again = queue_training(database, version.model_id, dataset_id, epochs=2)
    run_all(env)
    job = read_job(database, again)
    assert job.state is JobState.SUCCEEDED, job.error
    with database.session() as session:
        retrained = session.get(ModelVersion, (job.result or {})["modelVersionId"])
        assert retrained is not None and retrained.parent_id == version.id
        session.expunge(retrained)
        names = {row.name for row in list_artifacts(session, retrained.id)}
    assert names == {"head.safetensors", "base/head.safetensors", "base/base/model.onnx"}
    labels = predict_colours(database, blobs, retrained, tmp_path / "cache-again")
    assert set(labels.values()) <= set(TWO_CLASSES)


def test_a_tflite_model_trains_a_head_that_predicts(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    dataset_id = import_dataset(
        settings, database, blobs, dataset_zip(tmp_path / "d.zip", TWO_CLASSES)
    )
    model = linear_tflite(tmp_path / "m.tflite", num_classes=4)
    results, version = train_graph(settings, database, blobs, env, model, dataset_id)

    assert version.format == "kai_head"
    assert results["featureExtraction"] == {  # pooled RGB: three features per image
        "backbone": f"model-version-{version.parent_id}-32px",
        "embeddingWidth": 3,
    }
    assert predict_colours(database, blobs, version, tmp_path / "cache") == {
        name: name for name in TWO_CLASSES
    }

    # An evaluation on demand loads the version through its format like any other.
    with database.session() as session:
        started = start_evaluation(session, version.model_id, dataset_id=dataset_id)
        evaluation_job = started.job.id
    run_all(env)
    job = read_job(database, evaluation_job)
    assert job.state is JobState.SUCCEEDED, job.error
    assert (job.result or {})["accuracy"] > 0.9


def test_tensorflow_models_train_a_head_over_their_embedding_or_their_class_scores(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    # Looked up, not imported: TensorFlow runs in the import sandbox and a worker process.
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs the tensorflow extra: pip install -e '.[tensorflow]'")
    built = build_saved_models(tmp_path / "saved", tmp_path / "canary")
    dataset_id = import_dataset(
        settings, database, blobs, dataset_zip(tmp_path / "d.zip", TWO_CLASSES)
    )

    # The SavedModel's signature also returns its pooled RGB as "features".
    results, version = train_graph(settings, database, blobs, env, built["classifier"], dataset_id)
    assert version.format == "kai_head"
    assert results["featureExtraction"] == {
        "backbone": f"model-version-{version.parent_id}-32px",
        "embeddingWidth": 3,
    }
    assert predict_colours(database, blobs, version, tmp_path / "cache") == {
        name: name for name in TWO_CLASSES
    }

    # The same classifier frozen into a graph names no embedding: its scores serve.
    results, version = train_graph(
        settings,
        database,
        blobs,
        env,
        built["frozen"],
        dataset_id,
        import_options={"graph_output": "logits"},
    )
    assert_scores_trained(database, results, version, width=SAVEDMODEL_CLASSES)
    assert predict_colours(database, blobs, version, tmp_path / "cache-frozen") == {
        name: name for name in TWO_CLASSES
    }


def test_a_keras_model_asked_for_feature_extraction_trains_a_head_over_its_features(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    # Keras (and its backend setup) loads only for the test that uses it.
    from models.keras_factories import save_keras, tiny_keras_model

    dataset_id = import_dataset(
        settings, database, blobs, dataset_zip(tmp_path / "d.zip", TWO_CLASSES)
    )
    model = save_keras(tiny_keras_model(3), tmp_path / "m.keras")
    _, version = train_graph(
        settings, database, blobs, env, model, dataset_id, feature_extraction=True
    )
    assert version.format == "kai_head"

    # The version's probabilities are the stored head applied to the parent's features.
    with database.session() as session:
        request = load_request_for(session, version)
        parent = session.get(ModelVersion, version.parent_id)
        assert parent is not None and parent.format == "keras"
        parent_request = load_request_for(session, parent)
    cache = PredictorCache(blobs, tmp_path / "cache")
    predictor, base = cache.get(request), cache.get(parent_request)
    assert isinstance(base, FeatureExtractor)
    batch = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    head = safetensors.numpy.load_file(tmp_path / "cache" / str(version.id) / "head.safetensors")
    logits = base.extract_features(batch) @ head["weight"].T + head["bias"]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predictor.predict(batch), expected, rtol=1e-4, atol=1e-6)


def scripted_pooled_linear(path: Path, num_classes: int) -> Path:
    """A TorchScript program: mean colour through a seeded linear layer, no embedding to reach."""
    torch.manual_seed(0)
    return save_torchscript(PooledLinear(num_classes), path)


class PooledLinear(torch.nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, num_classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fc(pixels.mean(dim=(2, 3)))


def assert_scores_trained(
    database: Database, job_results: dict[str, object], version: ModelVersion, width: int
) -> None:
    """The version is a head over its parent's class scores, and the job said so."""
    assert version.format == "kai_head"
    assert job_results["featureExtraction"] == {
        "backbone": f"model-version-{version.parent_id}-32px",
        "embeddingWidth": width,
    }
    job_id = version.created_by_job_id
    assert job_id is not None
    logs = " ".join(e.payload["message"] for e in events(database, job_id, "log"))
    assert "class scores serve as its features" in logs


def test_a_torchscript_model_trains_a_head_over_its_class_scores(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    dataset_id = import_dataset(
        settings, database, blobs, dataset_zip(tmp_path / "d.zip", TWO_CLASSES)
    )
    script = scripted_pooled_linear(tmp_path / "m.pt", num_classes=4)
    results, version = train_graph(settings, database, blobs, env, script, dataset_id)

    assert_scores_trained(database, results, version, width=4)
    assert predict_colours(database, blobs, version, tmp_path / "cache") == {
        name: name for name in TWO_CLASSES
    }


def test_a_torchscript_model_refuses_what_needs_a_network(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    dataset_id = import_dataset(
        settings, database, blobs, dataset_zip(tmp_path / "d.zip", TWO_CLASSES)
    )
    script = save_torchscript(tiny_model(2), tmp_path / "m.pt")
    model_id = import_model(settings, database, blobs, script, architecture=None)
    with pytest.raises(InvalidInput, match="trains only by feature extraction"):
        queue_training(database, model_id, dataset_id, cross_validation_folds=2)


def test_an_onnx_graph_without_a_linear_head_trains_a_head_over_its_outputs(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    dataset_id = import_dataset(
        settings, database, blobs, dataset_zip(tmp_path / "d.zip", TWO_CLASSES)
    )
    graph = headless_onnx_file(tmp_path / "m.onnx")
    results, version = train_graph(settings, database, blobs, env, graph, dataset_id)

    assert_scores_trained(database, results, version, width=3)
    assert predict_colours(database, blobs, version, tmp_path / "cache") == {
        name: name for name in TWO_CLASSES
    }
