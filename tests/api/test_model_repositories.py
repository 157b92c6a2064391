"""The repository import route: the form fields DESIGN.md fixes, roles, and a real import.

The import reads a torch hub checkpoint made here, with the network's
hosts unreachable, and runs in the real job with its sandbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from fastapi.testclient import TestClient

from api.support import Account
from api.test_models import run_job
from kai.db.tables import Job
from kai.runtime import Runtime
from models.repositories.model_caches import make_torch_checkpoint

pytestmark = pytest.mark.db

ROUTE = "/api/admin/models/import/repository"
ARCHITECTURE = "shufflenet_v2_x0_5"


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _form(**fields: str) -> dict[str, str]:
    return {"name": "", "description": "", "framework": "", **fields}


def test_pytorch_hub_import_answers_at_once_and_records_the_weights(
    client: TestClient, editor: Account, runtime: Runtime, torch_home: Path
) -> None:
    url = torchvision.models.get_model_weights(ARCHITECTURE).DEFAULT.url
    torch.manual_seed(0)
    model = torchvision.models.get_model(ARCHITECTURE, weights=None, num_classes=1000)
    make_torch_checkpoint(torch_home, url.rsplit("/", 1)[-1], model)
    form = {
        "repository": "pytorch-hub",
        "modelId": f"torchvision:{ARCHITECTURE}",
        "name": "Shuffle tiles",
        "description": "ImageNet backbone",
        "framework": "pytorch",
    }
    response = client.post(ROUTE, data=form, headers=editor.headers)
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"id", "jobId"}
    result, error = run_job(runtime, body["jobId"])
    assert error is None and result is not None
    versions = client.get(f"/api/admin/models/{body['id']}/versions", headers=editor.headers)
    version = versions.json()[0]
    assert version["architecture"] == ARCHITECTURE
    assert len(version["classNames"]) == 1000 and version["classNames"][0] == "tench"
    assert version["provenance"]["repository"] == "pytorch-hub"
    assert version["provenance"]["reference"] == f"torchvision:{ARCHITECTURE}"
    assert version["provenance"]["revision"] == "IMAGENET1K_V1"
    shown = client.get(f"/api/admin/models/{body['id']}", headers=editor.headers).json()
    assert shown["name"] == "Shuffle tiles"


def test_viewer_may_not_import(client: TestClient, viewer: Account) -> None:
    form = _form(repository="huggingface", modelId="kai-test/tiles")
    response = client.post(ROUTE, data=form, headers=viewer.headers)
    assert response.status_code == 403


def test_unknown_repository_is_refused_listing_the_valid_ones(
    client: TestClient, editor: Account
) -> None:
    form = _form(repository="modelscope", modelId="kai-test/tiles")
    response = client.post(ROUTE, data=form, headers=editor.headers)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"]["field"] == "repository"
    assert "pytorch-hub" in error["message"] and "onnx-model-zoo" in error["message"]


def test_trusting_repository_code_is_for_admins_only(
    client: TestClient, editor: Account, admin: Account
) -> None:
    form = _form(repository="pytorch-hub", modelId="pytorch/vision:resnet18")
    refused = client.post(
        ROUTE, data={**form, "trustRepositoryCode": "true"}, headers=editor.headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["field"] == "trustRepositoryCode"
    without = client.post(ROUTE, data=form, headers=admin.headers)
    assert without.status_code == 422
    assert "trustRepositoryCode" in without.json()["error"]["message"]


def test_tensorflow1_hub_module_is_refused_with_the_conversions(
    client: TestClient, editor: Account
) -> None:
    form = _form(repository="kaggle", modelId="google/mobilenet-v1/tensorFlow1/classify")
    response = client.post(ROUTE, data=form, headers=editor.headers)
    assert response.status_code == 422
    assert "TensorFlow 1 hub modules" in response.json()["error"]["message"]


def test_model_id_is_required(client: TestClient, editor: Account) -> None:
    response = client.post(ROUTE, data=_form(repository="huggingface"), headers=editor.headers)
    assert response.status_code == 422
    assert "modelId" in response.text


def test_advanced_options_travel_with_a_repository_import(
    client: TestClient, editor: Account, runtime: Runtime
) -> None:
    form = _form(
        repository="kaggle",
        modelId="kai-test/tiles/tfLite/v1",
        inputSize="32",
        mean="0.5,0.5,0.5",
        std="0.25, 0.25, 0.25",
        graphInput="pixels",
        graphOutput="logits",
        headLayer="head",
    )
    files = {"classNamesFile": ("classes.txt", b"porcelain\nslate\n\noak\n", "text/plain")}
    response = client.post(ROUTE, data=form, files=files, headers=editor.headers)
    assert response.status_code == 202, response.text

    with runtime.db.session() as session:
        options = session.get(Job, response.json()["jobId"]).config["options"]
    assert options["input_size_px"] == [32, 32]
    assert (options["mean"], options["std"]) == ([0.5] * 3, [0.25] * 3)
    assert options["class_names"] == ["porcelain", "slate", "oak"]
    assert (options["graph_input"], options["graph_output"]) == ("pixels", "logits")
    assert options["head_layer"] == "head"


def test_bad_advanced_options_of_a_repository_import_are_named(
    client: TestClient, editor: Account
) -> None:
    form = _form(repository="kaggle", modelId="kai-test/tiles/tfLite/v1", std="1,0,1")
    response = client.post(ROUTE, data=form, headers=editor.headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "std"
