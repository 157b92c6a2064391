"""Training routes: the start request in the clients' exact shape, and its refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.support import Account
from kai.db.tables import Model, ModelStatus, ModelVersion
from kai.models.formats import Inspection, ModelSpec
from kai.models.versions import NewVersion, StoredFile, write_version
from kai.runtime import Runtime
from training.training_factories import dataset_zip, import_dataset

pytestmark = pytest.mark.db

START = "/api/admin/training/start"
CLASSES = {"ceramic": 4, "stone": 4, "wood": 4}
# What an ONNX import records when onnx2torch cannot convert the graph.
NOT_CONVERTIBLE = {
    "featureTensor": "flat",
    "torchConversion": {"convertible": False, "reason": "no converter for Shrink"},
}


def add_model(runtime: Runtime, model_format: str, details: dict[str, Any] | None = None) -> int:
    """A model with one version row in ``model_format``; only its records, no weights.

    An ONNX version gets :data:`NOT_CONVERTIBLE` as its details unless others are given.
    """
    spec = ModelSpec(format=model_format, architecture="test_efficientnet", num_classes=3)
    if details is None:
        details = NOT_CONVERTIBLE if model_format == "onnx" else {}
    inspection = Inspection(spec=spec, details=details)
    weights = StoredFile("weights", "weights.safetensors", "0" * 64, 1)
    new = NewVersion("pytorch", inspection, [weights], "0" * 64, 1, {}, {})
    with runtime.db.session() as session:
        model = Model(name="tiny", status=ModelStatus.IMPORTING)
        session.add(model)
        session.flush()
        write_version(session, model, new)
        return model.id


@pytest.fixture
def dataset_id(tmp_path: Path, runtime: Runtime) -> int:
    archive = dataset_zip(tmp_path / "d.zip", CLASSES)
    return import_dataset(runtime.settings, runtime.db, runtime.blobs, archive)


def request(model_id: int, dataset_id: int, **changes: Any) -> dict[str, Any]:
    body = {
        "modelId": model_id,
        "datasetId": dataset_id,
        "learningRate": 0.001,
        "epochs": 2,
        "batchSize": 4,
        "useTransferLearning": True,
        "freezeBaseModel": True,
        "trainableLayersCount": 2,
        "enableEarlyStopping": True,
        "enableDataAugmentation": False,
        "validationSplit": 0.25,
        "enableHyperparameterTuning": False,
    }
    return body | changes


def test_start_answers_a_job_with_the_requested_configuration(
    client: TestClient, admin: Account, runtime: Runtime, dataset_id: int
) -> None:
    model_id = add_model(runtime, "pytorch_state_dict")
    response = client.post(START, json=request(model_id, dataset_id), headers=admin.headers)
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]

    read = client.get(f"/api/admin/training/{job_id}", headers=admin.headers)
    assert read.status_code == 200
    training = read.json()["config"]["training"]
    assert training["freeze_base_model"] is True
    assert training["trainable_layers_count"] == 2
    assert training["enable_data_augmentation"] is False
    assert read.json()["status"] == "queued"


def test_the_old_spelling_of_the_transfer_flag_is_accepted(
    client: TestClient, admin: Account, runtime: Runtime, dataset_id: int
) -> None:
    model_id = add_model(runtime, "pytorch_state_dict")
    body = request(model_id, dataset_id)
    del body["useTransferLearning"]
    body["useTranferLearning"] = False
    response = client.post(START, json=body, headers=admin.headers)
    assert response.status_code == 202, response.text
    read = client.get(f"/api/admin/training/{response.json()['jobId']}", headers=admin.headers)
    assert read.json()["config"]["training"]["use_transfer_learning"] is False


@pytest.mark.parametrize(
    ("model_format", "changes", "words"),
    [
        (
            "pytorch_state_dict",
            {"enableHyperparameterTuning": True, "crossValidationFolds": 2},
            "not both",
        ),
        ("pytorch_state_dict", {"crossValidationFolds": 5}, "class 'ceramic' has images (4)"),
        ("onnx", {"enableHyperparameterTuning": True}, "Shrink): it trains only by feature"),
        ("torchscript", {"crossValidationFolds": 2}, "its class scores serve as its features"),
        # A format a plugin adds trains once its training is built.
        ("npz_linear", {}, "training npz_linear models is not built yet"),
        ("pytorch_state_dict", {"batchSize": 64}, "batchSize 64 is larger than the training"),
        ("pytorch_state_dict", {"epochs": 0}, "epochs"),
    ],
)
def test_requests_that_cannot_train_are_refused_before_a_job_starts(
    client: TestClient,
    admin: Account,
    runtime: Runtime,
    dataset_id: int,
    model_format: str,
    changes: dict[str, Any],
    words: str,
) -> None:
    model_id = add_model(runtime, model_format)
    body = request(model_id, dataset_id, **changes)
    response = client.post(START, json=body, headers=admin.headers)
    assert response.status_code == 422
    assert words in response.text
    jobs = client.get("/api/admin/jobs", headers=admin.headers).json()["items"]
    assert not [job for job in jobs if job["type"] == "training.run"]


@pytest.mark.parametrize(
    ("model_format", "details"),
    [
        ("onnx", None),
        # No linear head: its outputs serve as its features.
        ("onnx", {"featureTensor": None}),
        ("tflite", None),
        ("savedmodel", {"featuresOutput": "features"}),
        ("savedmodel", {}),
        ("tensorflow", None),
        ("torchscript", None),
    ],
)
def test_a_graph_model_trains_by_feature_extraction_and_its_config_says_so(
    client: TestClient,
    admin: Account,
    runtime: Runtime,
    dataset_id: int,
    model_format: str,
    details: dict[str, Any] | None,
) -> None:
    model_id = add_model(runtime, model_format, details)
    response = client.post(START, json=request(model_id, dataset_id), headers=admin.headers)
    assert response.status_code == 202, response.text
    read = client.get(f"/api/admin/training/{response.json()['jobId']}", headers=admin.headers)
    assert read.json()["config"]["training"]["feature_extraction"] is True


def test_an_onnx_graph_that_converts_is_fine_tuned_whole_and_may_be_searched(
    client: TestClient, admin: Account, runtime: Runtime, dataset_id: int
) -> None:
    details = {"featureTensor": "flat", "torchConversion": {"convertible": True, "reason": None}}
    model_id = add_model(runtime, "onnx", details)
    body = request(model_id, dataset_id, enableHyperparameterTuning=True)
    response = client.post(START, json=body, headers=admin.headers)
    assert response.status_code == 202, response.text
    read = client.get(f"/api/admin/training/{response.json()['jobId']}", headers=admin.headers)
    training = read.json()["config"]["training"]
    assert training["feature_extraction"] is False
    assert training["search"] is not None


def test_a_keras_model_fine_tunes_its_network_unless_feature_extraction_is_asked_for(
    client: TestClient, admin: Account, runtime: Runtime, dataset_id: int
) -> None:
    model_id = add_model(runtime, "keras")
    for asked in (False, True):
        body = request(model_id, dataset_id, featureExtraction=asked)
        response = client.post(START, json=body, headers=admin.headers)
        assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        read = client.get(f"/api/admin/training/{job_id}", headers=admin.headers)
        assert read.json()["config"]["training"]["feature_extraction"] is asked


def test_a_transformers_classifier_is_fine_tuned_whole_and_may_be_searched(
    client: TestClient, admin: Account, runtime: Runtime, dataset_id: int
) -> None:
    model_id = add_model(runtime, "transformers")
    body = request(model_id, dataset_id, enableHyperparameterTuning=True)
    response = client.post(START, json=body, headers=admin.headers)
    assert response.status_code == 202, response.text
    read = client.get(f"/api/admin/training/{response.json()['jobId']}", headers=admin.headers)
    training = read.json()["config"]["training"]
    assert training["feature_extraction"] is False
    assert training["search"] is not None


def test_hyperparameter_tuning_queues_a_search_with_sensible_defaults(
    client: TestClient, admin: Account, runtime: Runtime, dataset_id: int
) -> None:
    model_id = add_model(runtime, "pytorch_state_dict")
    body = request(model_id, dataset_id, enableHyperparameterTuning=True, searchTrials=5)
    response = client.post(START, json=body, headers=admin.headers)
    assert response.status_code == 202, response.text
    read = client.get(f"/api/admin/training/{response.json()['jobId']}", headers=admin.headers)
    search = read.json()["config"]["training"]["search"]
    assert search["trials"] == 5
    assert search["time_budget_seconds"] == 3600.0
    assert search["tune_learning_rate"] and search["tune_trainable_layers"]
    assert search["parallel_trials"] == 1

    body["searchParallelTrials"] = 3
    response = client.post(START, json=body, headers=admin.headers)
    assert response.status_code == 202, response.text
    read = client.get(f"/api/admin/training/{response.json()['jobId']}", headers=admin.headers)
    assert read.json()["config"]["training"]["search"]["parallel_trials"] == 3
    body["searchParallelTrials"] = 0
    refused = client.post(START, json=body, headers=admin.headers)
    assert refused.status_code == 422 and "searchParallelTrials" in refused.text


def test_viewers_cannot_start_training(
    client: TestClient, make_account: Any, runtime: Runtime, dataset_id: int
) -> None:
    from kai.db.tables import Role

    viewer = make_account(Role.VIEWER)
    model_id = add_model(runtime, "pytorch_state_dict")
    response = client.post(START, json=request(model_id, dataset_id), headers=viewer.headers)
    assert response.status_code == 403


def test_a_model_never_trained_trains_from_scratch_and_refuses_a_frozen_base(
    client: TestClient, admin: Account, runtime: Runtime, dataset_id: int
) -> None:
    model_id = add_model(runtime, "pytorch_state_dict")
    with runtime.db.session() as session:
        version = session.scalars(select(ModelVersion).filter_by(model_id=model_id)).one()
        version.provenance = {
            "kind": "repository",
            "repository": "architecture",
            "pretrained": False,
        }

    refused = client.post(START, json=request(model_id, dataset_id), headers=admin.headers)
    assert refused.status_code == 422
    assert "never been trained" in refused.text and "freezeBaseModel" in refused.text
    body = request(model_id, dataset_id, freezeBaseModel=False)
    started = client.post(START, json=body, headers=admin.headers)
    assert started.status_code == 202, started.text
    read = client.get(f"/api/admin/training/{started.json()['jobId']}", headers=admin.headers)
    assert read.json()["config"]["training"]["use_transfer_learning"] is False


def test_every_hyperparameter_of_the_config_can_be_given_and_is_stored(
    client: TestClient, admin: Account, runtime: Runtime, dataset_id: int
) -> None:
    model_id = add_model(runtime, "pytorch_state_dict")
    body = request(
        model_id,
        dataset_id,
        optimizer="sgd",
        weightDecay=0.05,
        schedule="plateau",
        warmupEpochs=0,
        labelSmoothing=0.1,
        headLearningRateMultiplier=10,
        imageSizePx=48,
        seed=7,
        timeBudgetSeconds=600,
        earlyStoppingPatience=5,
        earlyStoppingMinDelta=0.01,
    )
    response = client.post(START, json=body, headers=admin.headers)
    assert response.status_code == 202, response.text
    read = client.get(f"/api/admin/training/{response.json()['jobId']}", headers=admin.headers)
    training = read.json()["config"]["training"]
    assert training["optimizer"] == "sgd" and training["schedule"] == "plateau"
    assert training["weight_decay"] == 0.05 and training["warmup_epochs"] == 0
    assert training["label_smoothing"] == 0.1 and training["head_learning_rate_multiplier"] == 10
    assert training["image_size_px"] == 48 and training["seed"] == 7
    assert training["time_budget_seconds"] == 600
    assert training["early_stopping_patience"] == 5
    assert training["early_stopping_min_delta"] == 0.01

    refused = client.post(
        START, json=request(model_id, dataset_id, optimizer="adam"), headers=admin.headers
    )
    assert refused.status_code == 422
    assert "optimizer" in refused.text
