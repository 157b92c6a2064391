"""Model routes: uploads, URL imports, reads, versions, cards and predictions over HTTP.

A bad file is answered with a 4xx in Kai's error shape naming the problem,
and nothing is stored; the import itself runs in the real job, with the
real sandbox.
"""

from __future__ import annotations

import http.server
import importlib.util
import io
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import kai.models.imports
from api.support import Account
from kai.db.tables import Job
from kai.errors import KaiError
from kai.jobs.context import JobContext
from kai.models.formats import InputSpec
from kai.models.formats.preprocessing import images_to_array, softmax
from kai.runtime import Runtime
from kai.security.downloads import AddressPolicy
from models.model_factories import (
    SIZE_PX,
    TINY_ARCHITECTURE,
    garbage_file,
    linear_onnx_graph,
    photo_bytes,
    reference_probabilities,
    save_pickled_module,
    save_state_dict,
    saved_model_bytes,
    tiny_model,
    zipped_saved_model,
)
from models.savedmodel_factories import NUM_CLASSES as SAVED_MODEL_CLASSES
from models.savedmodel_factories import build_saved_models, savedmodel_reference

pytestmark = pytest.mark.db

MODELS = "/api/admin/models"


def run_job(runtime: Runtime, job_id: int) -> tuple[dict[str, Any] | None, str | None]:
    """Run a queued job's handler here as a worker would; returns (result, error)."""
    with runtime.db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job_type, config = job.type, dict(job.config)
    ctx = JobContext(
        job_id=job_id,
        job_type=job_type,
        config=config,
        attempt=1,
        settings=runtime.settings,
        db=runtime.db,
        blobs=runtime.blobs,
        work_dir=runtime.settings.work_dir / str(job_id),
    )
    kind = runtime.registry.resolve(job_type)
    try:
        return kind.handler(ctx), None
    except KaiError as exc:
        if kind.on_failure is not None:
            kind.on_failure(ctx, exc.message)
        return None, exc.message


def upload(
    client: TestClient,
    account: Account,
    data: bytes,
    *,
    filename: str,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    return client.post(
        f"{MODELS}/upload",
        files={"file": (filename, data, "application/octet-stream")},
        data={"name": "tiles", "description": "test", **(fields or {})},
        headers=account.headers | (headers or {}),
    )


def onnx_bytes(num_classes: int = 3) -> bytes:
    return linear_onnx_graph(num_classes).SerializeToString()


def assert_nothing_stored(client: TestClient, account: Account, runtime: Runtime) -> None:
    listing = client.get(MODELS, headers=account.headers).json()
    assert listing["total"] == 0
    uploads = runtime.settings.uploads_dir
    assert not uploads.exists() or not any(uploads.iterdir())
    assert list(runtime.blobs.iter_hashes()) == []


def test_state_dict_upload_reads_versions_card_and_predicts(
    client: TestClient, editor: Account, viewer: Account, runtime: Runtime, tmp_path: Path
) -> None:
    model = tiny_model(num_classes=3)
    weights = save_state_dict(model, tmp_path / "tiles.pth").read_bytes()
    fields = {
        "architecture": TINY_ARCHITECTURE,
        "inputSize": str(SIZE_PX),
        "classNames": json.dumps(["stone", "tile", "wood"]),
    }
    response = upload(client, editor, weights, filename="tiles.pth", fields=fields)
    assert response.status_code == 202, response.text
    model_id, job_id = response.json()["id"], response.json()["jobId"]
    result, error = run_job(runtime, job_id)
    assert error is None and result is not None

    read = client.get(f"{MODELS}/{model_id}", headers=viewer.headers).json()
    assert read["status"] == "ready" and read["version"] == 1
    assert read["classNames"] == ["stone", "tile", "wood"]
    assert read["architecture"] == TINY_ARCHITECTURE and read["format"] == "pytorch_state_dict"
    versions = client.get(f"{MODELS}/{model_id}/versions", headers=viewer.headers).json()
    assert len(versions) == 1
    roles = {a["role"]: a["name"] for a in versions[0]["artifacts"]}
    assert roles == {"weights": "weights.safetensors", "original": "original/tiles.pth"}
    assert versions[0]["inputSpec"]["sizePx"] == [SIZE_PX, SIZE_PX]
    assert versions[0]["layerGroups"][-1]["name"] == "head"

    images = [photo_bytes(1), photo_bytes(2)]
    files = [("file", (f"p{i}.png", data, "image/png")) for i, data in enumerate(images)]
    answer = client.post(f"{MODELS}/{model_id}/predict?topK=2", files=files, headers=editor.headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == 1 and [r["file"] for r in body["results"]] == ["p0.png", "p1.png"]
    decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    stored = versions[0]["inputSpec"]
    spec = InputSpec(
        size_px=stored["sizePx"],
        mean=stored["mean"],
        std=stored["std"],
        crop_fraction=stored["cropFraction"],
    )
    batch = torch.from_numpy(images_to_array(decoded, spec))
    expected = reference_probabilities(model, batch)
    for row, result_for_image in zip(expected, body["results"], strict=True):
        top = result_for_image["predictions"]
        assert [p["index"] for p in top] == list(np.argsort(-row)[:2])
        assert top[0]["label"] == ["stone", "tile", "wood"][top[0]["index"]]
        assert top[0]["probability"] == pytest.approx(float(row.max()), abs=1e-4)

    card = client.get(f"{MODELS}/{model_id}/versions/1/card", headers=viewer.headers).json()
    assert card["markdown"].startswith("# tiles (version 1)") and not card["edited"]
    refused = client.put(
        f"{MODELS}/{model_id}/versions/1/card", json={"markdown": "x"}, headers=viewer.headers
    )
    assert refused.status_code == 403
    edited = client.put(
        f"{MODELS}/{model_id}/versions/1/card",
        json={"markdown": "# Tiles\n\nOurs."},
        headers=editor.headers,
    ).json()
    assert edited["edited"] and edited["markdown"] == "# Tiles\n\nOurs."


def test_onnx_uploads_accumulate_versions_and_predict_by_version(
    client: TestClient, editor: Account, runtime: Runtime
) -> None:
    first = upload(client, editor, onnx_bytes(3), filename="linear.onnx")
    assert first.status_code == 202, first.text
    model_id = first.json()["id"]
    assert run_job(runtime, first.json()["jobId"])[1] is None
    second = upload(
        client, editor, onnx_bytes(4), filename="v2.onnx", fields={"modelId": str(model_id)}
    )
    assert second.status_code == 202 and second.json()["id"] == model_id
    assert run_job(runtime, second.json()["jobId"])[1] is None

    versions = client.get(f"{MODELS}/{model_id}/versions", headers=editor.headers).json()
    assert [(v["number"], v["numClasses"], v["format"]) for v in versions] == [
        (1, 3, "onnx"),
        (2, 4, "onnx"),
    ]
    white = [("file", ("white.png", _plain_png((255, 255, 255)), "image/png"))]
    latest = client.post(f"{MODELS}/{model_id}/predict", files=white, headers=editor.headers)
    older = client.post(
        f"{MODELS}/{model_id}/predict?version=1", files=white, headers=editor.headers
    )
    assert latest.status_code == 200 and older.status_code == 200, older.text
    assert len(latest.json()["results"][0]["predictions"]) == 4
    assert len(older.json()["results"][0]["predictions"]) == 3
    # Bright inputs favour the column with the largest weights: the last class.
    assert older.json()["results"][0]["predictions"][0]["index"] == 2
    assert older.json()["results"][0]["predictions"][0]["label"] == "class 2"


def test_garbage_with_a_model_extension_is_refused_and_nothing_is_stored(
    client: TestClient, editor: Account, runtime: Runtime, tmp_path: Path
) -> None:
    data = garbage_file(tmp_path / "weights.pth").read_bytes()
    response = upload(client, editor, data, filename="weights.pth")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and "not a model Kai can read" in error["message"]
    assert_nothing_stored(client, editor, runtime)


def test_pickled_module_is_refused_with_state_dict_advice(
    client: TestClient, editor: Account, runtime: Runtime, tmp_path: Path
) -> None:
    data = save_pickled_module(tiny_model(), tmp_path / "whole.pt").read_bytes()
    fields = {"architecture": TINY_ARCHITECTURE}
    response = upload(client, editor, data, filename="whole.pt", fields=fields)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unsafe_model_file" and "state_dict" in error["message"]
    assert_nothing_stored(client, editor, runtime)


def test_state_dict_without_architecture_is_refused(
    client: TestClient, editor: Account, runtime: Runtime, tmp_path: Path
) -> None:
    data = save_state_dict(tiny_model(), tmp_path / "w.pth").read_bytes()
    response = upload(client, editor, data, filename="w.pth")
    assert response.status_code == 422
    assert "architecture" in response.json()["error"]["message"]
    assert_nothing_stored(client, editor, runtime)


def test_bad_advanced_options_are_named(client: TestClient, editor: Account) -> None:
    response = upload(client, editor, onnx_bytes(), filename="m.onnx", fields={"mean": "1,2"})
    assert response.status_code == 422 and response.json()["error"]["details"]["field"] == "mean"


def test_viewer_cannot_upload(client: TestClient, viewer: Account, runtime: Runtime) -> None:
    response = upload(client, viewer, onnx_bytes(), filename="m.onnx")
    assert response.status_code == 403
    assert_nothing_stored(client, viewer, runtime)


def test_idempotent_upload_returns_the_first_import(client: TestClient, editor: Account) -> None:
    key = {"Idempotency-Key": "model-upload-1"}
    first = upload(client, editor, onnx_bytes(), filename="m.onnx", headers=key)
    second = upload(client, editor, onnx_bytes(), filename="m.onnx", headers=key)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert client.get(MODELS, headers=editor.headers).json()["total"] == 1


def test_predict_refuses_non_images_and_models_without_versions(
    client: TestClient, editor: Account
) -> None:
    response = upload(client, editor, onnx_bytes(), filename="m.onnx")
    model_id = response.json()["id"]
    files = [("file", ("a.png", b"not an image", "image/png"))]
    pending = client.post(f"{MODELS}/{model_id}/predict", files=files, headers=editor.headers)
    assert pending.status_code == 409 and "no version yet" in pending.json()["error"]["message"]
    missing = client.post(f"{MODELS}/999/predict", files=files, headers=editor.headers)
    assert missing.status_code == 404


def test_url_import_refuses_addresses_inside_the_network(
    client: TestClient, editor: Account, runtime: Runtime
) -> None:
    runtime.settings.allow_http_downloads = True
    body = {"url": "http://127.0.0.1:9/model.onnx", "name": "m"}
    response = client.post(f"{MODELS}/import/url", json=body, headers=editor.headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unsafe_download"
    assert client.get(MODELS, headers=editor.headers).json()["total"] == 0


@pytest.fixture
def served_onnx(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> Iterator[str]:
    """An HTTP server on loopback serving one ONNX graph, trusted by the download policy."""
    data = onnx_bytes(5)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    trusted = AddressPolicy(trusted_origins=frozenset({("127.0.0.1", port)}))
    monkeypatch.setattr(kai.models.imports, "download_policy", lambda: trusted)
    runtime.settings.allow_http_downloads = True
    try:
        yield f"http://127.0.0.1:{port}/files/linear.onnx"
    finally:
        server.shutdown()
        server.server_close()


def test_url_import_downloads_and_imports(
    client: TestClient, editor: Account, runtime: Runtime, served_onnx: str
) -> None:
    body = {"url": served_onnx, "name": "from-url", "framework": "onnx"}
    response = client.post(f"{MODELS}/import/url", json=body, headers=editor.headers)
    assert response.status_code == 202, response.text
    result, error = run_job(runtime, response.json()["jobId"])
    assert error is None and result is not None
    versions = client.get(
        f"{MODELS}/{response.json()['id']}/versions", headers=editor.headers
    ).json()
    assert versions[0]["numClasses"] == 5
    assert versions[0]["provenance"]["kind"] == "url"
    assert versions[0]["provenance"]["url"] == served_onnx


def _plain_png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_versions_compare_side_by_side_with_classes_and_metrics(
    client: TestClient, editor: Account, runtime: Runtime
) -> None:
    names = {"classNames": "stone\ntile\nwood"}
    first = upload(client, editor, onnx_bytes(3), filename="a.onnx", fields=names)
    model_id = first.json()["id"]
    assert run_job(runtime, first.json()["jobId"])[1] is None
    fields = {"modelId": str(model_id), "classNames": '["stone", "tile", "oak", "slate"]'}
    second = upload(client, editor, onnx_bytes(4), filename="b.onnx", fields=fields)
    assert run_job(runtime, second.json()["jobId"])[1] is None
    with runtime.db.session() as session:
        versions = kai.models.list_versions(session, model_id)
        kai.models.record_evaluation(session, versions[0].id, metrics={"accuracy": 0.5})
        kai.models.record_evaluation(
            session, versions[1].id, metrics={"accuracy": 0.75, "perClass": {"oak": 1.0}}
        )

    response = client.get(
        f"{MODELS}/{model_id}/versions/compare?versions=1,2", headers=editor.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert [v["version"] for v in body["versions"]] == [1, 2]
    assert [v["facts"]["numClasses"] for v in body["versions"]] == [3, 4]
    assert "numClasses" in body["differing"] and "format" not in body["differing"]
    assert body["classChanges"] == [{"version": 2, "added": ["oak", "slate"], "removed": ["wood"]}]
    assert body["metrics"] == [
        {"datasetVersionId": None, "metric": "accuracy", "values": [0.5, 0.75]}
    ]


@pytest.mark.parametrize("versions", ["1", "1,1", "1,x", "1,2,3,4,5,6,7,8,9,10,11"])
def test_versions_compare_needs_two_to_ten_distinct_numbers(
    client: TestClient, editor: Account, versions: str
) -> None:
    response = client.get(
        f"{MODELS}/1/versions/compare?versions={versions}", headers=editor.headers
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "versions"


def test_a_lone_saved_model_pb_is_answered_with_the_way_in(
    client: TestClient, editor: Account, runtime: Runtime
) -> None:
    response = upload(client, editor, saved_model_bytes(), filename="saved_model.pb")
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "TensorFlow SavedModel" in message and "ZIP of the whole SavedModel folder" in message
    assert "TFLiteConverter" in message
    assert_nothing_stored(client, editor, runtime)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Zipped SavedModels built by TensorFlow in a child process; never imported here."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs the tensorflow extra: pip install -e '.[tensorflow]'")
    out = tmp_path_factory.mktemp("saved_models")
    return build_saved_models(out, out / "canary")


@pytest.mark.slow
def test_a_savedmodel_upload_reads_back_its_facts_and_predicts(
    client: TestClient, editor: Account, runtime: Runtime, saved_models: dict[str, Path]
) -> None:
    data = saved_models["classifier"].read_bytes()
    fields = {"classNames": json.dumps(["ash", "birch", "cedar", "deal"])}
    response = upload(client, editor, data, filename="classifier.zip", fields=fields)
    assert response.status_code == 202, response.text
    model_id = response.json()["id"]
    result, error = run_job(runtime, response.json()["jobId"])
    assert error is None and result is not None

    version = client.get(f"{MODELS}/{model_id}/versions", headers=editor.headers).json()[0]
    assert version["format"] == "savedmodel" and version["numClasses"] == SAVED_MODEL_CLASSES
    assert version["inputSpec"]["sizePx"] == [SIZE_PX, SIZE_PX]
    assert version["parameterCount"] == 3 * SAVED_MODEL_CLASSES + SAVED_MODEL_CLASSES
    details = version["details"]
    assert details["signature"] == "serving_default" and details["featuresOutput"] == "features"
    assert details["inputs"] == [{"name": "pixels", "shape": [None, 32, 32, 3], "type": "float32"}]
    assert {a["name"] for a in version["artifacts"]} >= {"saved_model/saved_model.pb"}

    image = photo_bytes(1)
    files = [("file", ("p.png", image, "image/png"))]
    answer = client.post(f"{MODELS}/{model_id}/predict?topK=4", files=files, headers=editor.headers)
    assert answer.status_code == 200, answer.text
    top = answer.json()["results"][0]["predictions"]
    stored = version["inputSpec"]
    spec = InputSpec(
        size_px=stored["sizePx"],
        mean=stored["mean"],
        std=stored["std"],
        crop_fraction=stored["cropFraction"],
    )
    batch = images_to_array([Image.open(io.BytesIO(image)).convert("RGB")], spec)
    expected = softmax(savedmodel_reference(batch)[1])[0]
    assert [p["index"] for p in top] == list(np.argsort(-expected))
    assert top[0]["label"] == ["ash", "birch", "cedar", "deal"][top[0]["index"]]
    assert top[0]["probability"] == pytest.approx(float(expected.max()), abs=1e-4)
    assert "tensorflow" not in sys.modules


@pytest.mark.slow
def test_a_frozen_graph_upload_with_its_output_named_predicts(
    client: TestClient, editor: Account, runtime: Runtime, saved_models: dict[str, Path]
) -> None:
    data = saved_models["frozen"].read_bytes()
    fields = {"graphOutput": "logits", "mean": "0,0,0", "std": "1,1,1"}
    response = upload(client, editor, data, filename="frozen.pb", fields=fields)
    assert response.status_code == 202, response.text
    model_id = response.json()["id"]
    assert run_job(runtime, response.json()["jobId"])[1] is None

    version = client.get(f"{MODELS}/{model_id}/versions", headers=editor.headers).json()[0]
    assert version["format"] == "tensorflow" and version["numClasses"] == SAVED_MODEL_CLASSES
    assert version["parameterCount"] == 3 * SAVED_MODEL_CLASSES + SAVED_MODEL_CLASSES
    white = [("file", ("white.png", _plain_png((255, 255, 255)), "image/png"))]
    answer = client.post(f"{MODELS}/{model_id}/predict?topK=4", files=white, headers=editor.headers)
    assert answer.status_code == 200, answer.text
    top = answer.json()["results"][0]["predictions"]
    # A white image pools to ones: the logits are the head's column sums plus its bias.
    expected = softmax(savedmodel_reference(np.ones((1, 3, SIZE_PX, SIZE_PX), np.float32))[1])[0]
    assert [p["index"] for p in top] == list(np.argsort(-expected))
    assert top[0]["probability"] == pytest.approx(float(expected.max()), abs=1e-4)
    assert "tensorflow" not in sys.modules


@pytest.mark.slow
def test_a_savedmodel_that_runs_python_is_refused_and_its_canary_never_appears(
    client: TestClient, editor: Account, runtime: Runtime, saved_models: dict[str, Path]
) -> None:
    data = saved_models["pyfunc"].read_bytes()
    response = upload(client, editor, data, filename="pyfunc.zip")
    assert response.status_code == 202, response.text
    result, error = run_job(runtime, response.json()["jobId"])
    assert result is None and error is not None
    assert "EagerPyFunc operator, which runs Python" in error
    assert not (saved_models["pyfunc"].parent / "canary").exists()
    versions = client.get(f"{MODELS}/{response.json()['id']}/versions", headers=editor.headers)
    assert versions.json() == []


def test_a_savedmodel_without_the_tensorflow_extra_says_how_to_add_it(
    client: TestClient,
    editor: Account,
    runtime: Runtime,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    data = zipped_saved_model(tmp_path / "saved.zip").read_bytes()
    response = upload(client, editor, data, filename="classifier.zip")
    assert response.status_code == 422
    assert "pip install 'kai[tensorflow]'" in response.json()["error"]["message"]
    assert_nothing_stored(client, editor, runtime)


def test_a_truncated_savedmodel_zip_is_refused_and_nothing_is_stored(
    client: TestClient, editor: Account, runtime: Runtime, tmp_path: Path
) -> None:
    data = zipped_saved_model(tmp_path / "saved.zip").read_bytes()
    response = upload(client, editor, data[: len(data) // 2], filename="classifier.zip")
    assert response.status_code == 422
    assert "not a model Kai can read" in response.json()["error"]["message"]
    assert_nothing_stored(client, editor, runtime)


def test_a_keras_file_with_a_lambda_layer_is_refused_at_once_and_never_runs(
    client: TestClient, editor: Account, runtime: Runtime, tmp_path: Path
) -> None:
    from models.keras_factories import save_lambda_model

    canary = tmp_path / "canary"
    data = save_lambda_model(tmp_path / "lambda.keras", canary).read_bytes()
    response = upload(client, editor, data, filename="tiles.keras")
    assert response.status_code == 422
    assert "Lambda layer" in response.json()["error"]["message"]
    assert_nothing_stored(client, editor, runtime)
    assert not canary.exists()


def test_a_tflite_file_with_absurd_tensors_is_refused_at_once(
    client: TestClient, editor: Account, runtime: Runtime, tmp_path: Path
) -> None:
    from models.tflite_factories import linear_tflite

    huge = linear_tflite(tmp_path / "huge.tflite", input_shape=(1, 2**31 - 1, 2**31 - 1, 3))
    response = upload(client, editor, huge.read_bytes(), filename="tiles.tflite")
    assert response.status_code == 422
    assert "claims" in response.json()["error"]["message"]
    assert_nothing_stored(client, editor, runtime)
