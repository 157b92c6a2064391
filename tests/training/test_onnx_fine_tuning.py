"""ONNX graphs that convert to PyTorch are fine-tuned whole; the others train a head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import optuna
import pytest
import torch
from onnx import helper, numpy_helper
from sqlalchemy.orm.attributes import flag_modified
from torch import nn
from training_factories import (
    context,
    dataset_zip,
    events,
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
from kai.models import PredictorCache, list_artifacts, load_request_for
from kai.models.formats import FeatureExtractor
from kai.storage.blobs import LocalBlobStore
from kai.training import SearchConfig
from kai.training.jobs import run_training_job
from kai.training.search import create_storage
from models.model_factories import SIZE_PX, save_onnx

# Model formats, not the database: they run once, on SQLite.
pytestmark = [pytest.mark.slow]

CLASSES = {"ceramic": 6, "stone": 6}


class TinyCnn(nn.Module):
    """Two convolutions, pooling and a linear classifier: Conv, Relu, GAP, Flatten, Gemm."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(pixels), 1))


def cnn_onnx(path: Path, num_classes: int = 5) -> Path:
    torch.manual_seed(0)
    return save_onnx(TinyCnn(num_classes).eval(), path)


def shrink_onnx(path: Path, num_classes: int = 4) -> Path:
    """A Gemm classifier over pooled pixels after Shrink, an operator onnx2torch lacks."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((num_classes, 3)).astype("f"), "w")
    bias = numpy_helper.from_array(np.zeros(num_classes, np.float32), "b")
    nodes = [
        helper.make_node("Shrink", ["pixels"], ["shrunk"], lambd=0.1),
        helper.make_node("GlobalAveragePool", ["shrunk"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "shrink",
        [helper.make_tensor_value_info("pixels", onnx.TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["n", num_classes])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def dataset_id(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> int:
    return import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))


def import_graph(
    settings: Settings, database: Database, blobs: LocalBlobStore, path: Path
) -> tuple[int, dict[str, Any]]:
    """Import the graph; its model id and the conversion verdict its import recorded."""
    model_id = import_model(settings, database, blobs, path, architecture=None)
    with database.session() as session:
        version = session.query(ModelVersion).filter_by(model_id=model_id).one()
        return model_id, dict(version.inspection["details"]["torchConversion"])


def train(database: Database, env: JobEnvironment, model_id: int, dataset_id: int, **changes: Any):
    job_id = queue_training(database, model_id, dataset_id, **changes)
    run_all(env)
    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    with database.session() as session:
        version = session.get(ModelVersion, (job.result or {})["modelVersionId"])
        assert version is not None
        parent = session.get(ModelVersion, version.parent_id)
        assert parent is not None
        requests = (load_request_for(session, parent), load_request_for(session, version))
        files = {row.name: row.role for row in list_artifacts(session, version.id)}
        facts = {
            "format": version.format,
            "classes": list(version.class_names),
            "details": dict(version.inspection["details"]),
            "files": files,
            "provenance": dict(version.provenance),
        }
    logs = [event.payload["message"] for event in events(database, job_id, "log")]
    return job, facts, requests, logs


def features(blobs: LocalBlobStore, cache_dir: Path, requests: Any) -> list[np.ndarray]:
    """The parent's and the trained version's features for one seeded batch."""
    cache = PredictorCache(blobs, cache_dir)
    batch = np.random.default_rng(3).standard_normal((2, 3, SIZE_PX, SIZE_PX)).astype("f")
    found = []
    for request in requests:
        predictor = cache.get(request)
        assert isinstance(predictor, FeatureExtractor)
        found.append(predictor.extract_features(batch))
    trained = cache.get(requests[1])
    probabilities = trained.predict(batch)  # type: ignore[attr-defined]
    assert probabilities.shape == (2, len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    return found


def test_a_convertible_onnx_graph_is_fine_tuned_whole_and_stored_as_onnx(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
    dataset_id: int,
) -> None:
    model_id, verdict = import_graph(settings, database, blobs, cnn_onnx(tmp_path / "m.onnx"))
    assert verdict == {"convertible": True, "reason": None}

    job, facts, requests, logs = train(
        database, env, model_id, dataset_id, epochs=3, learning_rate=0.01
    )

    assert job.config["training"]["feature_extraction"] is False
    assert "featureExtraction" not in (job.result or {})
    assert any("Converting the onnx graph to a PyTorch network" in line for line in logs)
    assert facts["format"] == "onnx"
    assert facts["classes"] == sorted(CLASSES)
    assert facts["files"] == {"model.onnx": "weights"}
    assert facts["provenance"]["fromVersionId"] == requests[0].version_id
    assert facts["details"]["torchConversion"]["convertible"] is True
    assert facts["details"]["featureTensor"]
    parent_features, trained_features = features(blobs, tmp_path / "cache", requests)
    # The body trained too, not only the new head: the same images give other features.
    assert parent_features.shape == trained_features.shape == (2, 16)
    assert not np.allclose(parent_features, trained_features, atol=1e-4)

    # An evaluation on demand runs the stored graph in ONNX Runtime.
    with database.session() as session:
        evaluation_job = start_evaluation(session, model_id, dataset_id=dataset_id).job.id
    run_all(env)
    evaluated = read_job(database, evaluation_job)
    assert evaluated.state is JobState.SUCCEEDED, evaluated.error
    assert evaluated.config["version_id"] == (job.result or {})["modelVersionId"]
    assert 0.0 <= (evaluated.result or {})["accuracy"] <= 1.0


def test_a_frozen_base_of_a_converted_graph_keeps_its_features(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
    dataset_id: int,
) -> None:
    model_id, _ = import_graph(settings, database, blobs, cnn_onnx(tmp_path / "m.onnx"))

    _, facts, requests, logs = train(
        database, env, model_id, dataset_id, freeze_base_model=True, trainable_layers_count=1
    )

    assert facts["format"] == "onnx"
    assert any(
        "Base frozen: the last 1 layer group(s) train, 34 parameters" in line for line in logs
    )
    parent_features, trained_features = features(blobs, tmp_path / "cache", requests)
    np.testing.assert_allclose(parent_features, trained_features, rtol=1e-4, atol=1e-5)


def test_a_converted_graph_cross_validates_and_its_result_trains_again(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
    dataset_id: int,
) -> None:
    model_id, _ = import_graph(settings, database, blobs, cnn_onnx(tmp_path / "m.onnx"))

    job, facts, _, _ = train(database, env, model_id, dataset_id, cross_validation_folds=2)
    assert len((job.result or {})["crossValidation"]["folds"]) == 2
    assert facts["format"] == "onnx"

    # The trained ONNX version converts again: its next job fine-tunes it whole too.
    again, facts, requests, _ = train(database, env, model_id, dataset_id, epochs=1)
    assert again.config["training"]["feature_extraction"] is False
    assert facts["format"] == "onnx" and requests[0].format_name == "onnx"


def test_a_converted_graph_searches_over_its_own_layer_groups(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
    dataset_id: int,
) -> None:
    model_id, _ = import_graph(settings, database, blobs, cnn_onnx(tmp_path / "m.onnx"))
    with database.session() as session:
        version = session.query(ModelVersion).filter_by(model_id=model_id).one()
        groups = [group["name"] for group in version.layer_groups]
    assert groups == ["stem", "stage1", "head"]

    search = SearchConfig(trials=2, startup_trials=2, tune_augmentation=False)
    job, facts, _, _ = train(database, env, model_id, dataset_id, epochs=1, search=search)

    assert facts["format"] == "onnx"
    # The study offered every layer group the import found, not the head alone.
    storage = create_storage(settings.resolved_database_url)
    try:
        study = optuna.load_study(study_name=(job.result or {})["search"]["study"], storage=storage)
        ranges = {t.distributions["trainable_layers"].high for t in study.trials}  # type: ignore[attr-defined]
    finally:
        storage.engine.dispose()
    assert ranges == {3}


def test_a_graph_onnx2torch_cannot_convert_trains_a_head_and_says_why(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
    dataset_id: int,
) -> None:
    model_id, verdict = import_graph(settings, database, blobs, shrink_onnx(tmp_path / "m.onnx"))
    assert verdict["convertible"] is False
    assert "Shrink" in verdict["reason"]
    with pytest.raises(InvalidInput, match=r"Shrink.*trains only by feature extraction"):
        queue_training(database, model_id, dataset_id, cross_validation_folds=2)

    job, facts, _, logs = train(database, env, model_id, dataset_id)

    assert job.config["training"]["feature_extraction"] is True
    assert facts["format"] == "kai_head"
    assert any("Full fine-tuning is not possible" in line and "Shrink" in line for line in logs), (
        logs
    )


def test_a_graph_without_a_verdict_falls_back_when_it_does_not_convert_in_the_job(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
    dataset_id: int,
) -> None:
    model_id, _ = import_graph(settings, database, blobs, shrink_onnx(tmp_path / "m.onnx"))
    with database.session() as session:
        # As a graph imported before imports tried the conversion.
        version = session.query(ModelVersion).filter_by(model_id=model_id).one()
        del version.inspection["details"]["torchConversion"]
        flag_modified(version, "inspection")

    job, facts, _, logs = train(database, env, model_id, dataset_id)

    assert facts["format"] == "kai_head"
    assert any("Full fine-tuning is not possible" in line and "Shrink" in line for line in logs)
    assert job.result is not None and "featureExtraction" in job.result


class Killed(Exception):
    """Stands in for a worker that died mid-run."""


def test_a_converted_graph_resumes_from_its_checkpoint_and_unfreezes_by_group(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    dataset_id: int,
) -> None:
    model_id, _ = import_graph(settings, database, blobs, cnn_onnx(tmp_path / "m.onnx"))
    job_id = queue_training(
        database,
        model_id,
        dataset_id,
        epochs=3,
        freeze_base_model=True,
        trainable_layers_count=1,
        unfreeze_every_epochs=1,
    )
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
    results = run_training_job(context(settings, database, blobs, job_id, attempt=2))

    assert [e.payload["epoch"] for e in events(database, job_id, "metrics")] == [1, 2, 3]
    logs = [e.payload["message"] for e in events(database, job_id, "log")]
    assert "Resumed from the checkpoint after epoch 2" in logs
    assert any(line.startswith("Epoch 2: unfroze stage1") for line in logs), logs
    # Resumed in epoch 3, every group of the converted network trains.
    assert any("the last 3 layer group(s) train, 1426 parameters" in line for line in logs)
    with database.session() as session:
        version = session.get(ModelVersion, results["modelVersionId"])
        assert version is not None and version.format == "onnx"
