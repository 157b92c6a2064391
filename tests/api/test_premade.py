"""The premade catalog and premade imports over HTTP."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.support import Account
from kai.db.tables import Job
from kai.errors import KaiError
from kai.jobs.context import JobContext
from kai.runtime import Runtime

pytestmark = pytest.mark.db

IMPORT = "/api/admin/datasets/import/premade"
# The premade source tests' factories, which prepare hub caches and TFDS data dirs.
SOURCE_FACTORIES = Path(__file__).parents[1] / "datasets" / "sources"


def run_job(runtime: Runtime, job_id: int) -> str | None:
    """Run the queued job's handler here as a worker would; returns its error, if any."""
    with runtime.db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job_type, config = job.type, dict(job.config)
    work_dir = runtime.settings.work_dir / str(job_id)
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = JobContext(
        job_id=job_id,
        job_type=job_type,
        config=config,
        attempt=1,
        settings=runtime.settings,
        db=runtime.db,
        blobs=runtime.blobs,
        work_dir=work_dir,
    )
    kind = runtime.registry.resolve(job_type)
    try:
        kind.handler(ctx)
    except KaiError as exc:
        assert kind.on_failure is not None
        kind.on_failure(ctx, exc.message)
        return exc.message
    return None


def test_catalog_lists_and_searches(client: TestClient, viewer: Account) -> None:
    every = client.get("/api/admin/datasets/premade", headers=viewer.headers)
    assert every.status_code == 200, every.text
    body = every.json()
    assert body["total"] >= 8 and {"dtd", "minc-2500", "kai-textures"} <= {
        item["id"] for item in body["items"]
    }
    dtd = next(item for item in body["items"] if item["id"] == "dtd")
    assert dtd["numClasses"] == 47 and dtd["classes"][0] == {"name": "banded", "count": 120}
    assert {"sourceDatasetId": "tfds:dtd"}.items() <= dtd["sources"][2].items()
    found = client.get(
        "/api/admin/datasets/premade",
        params={"search": "tile", "category": "materials", "repository": "huggingface"},
        headers=viewer.headers,
    )
    assert [item["id"] for item in found.json()["items"]] == ["minc-2500"]
    bad = client.get("/api/admin/datasets/premade?category=fabric", headers=viewer.headers)
    assert (
        bad.status_code == 422 and "materials, textures, general" in bad.json()["error"]["message"]
    )


def test_import_answers_at_once_then_the_job_fills_the_dataset(
    client: TestClient, editor: Account, runtime: Runtime
) -> None:
    response = client.post(
        IMPORT,
        json={"sourceDatasetId": "kai-textures", "maxSamplesPerClass": 2, "includeMetadata": True},
        headers=editor.headers,
    )
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["status"] == "importing" and started["name"] == "Kai sample textures"
    assert started["importJobId"] == started["jobId"] and started["license"]
    assert run_job(runtime, started["jobId"]) is None
    dataset = client.get(f"/api/admin/datasets/{started['id']}", headers=editor.headers).json()
    assert dataset["status"] == "ready" and dataset["sampleCount"] == 18
    assert dataset["classCounts"]["grass"] == {"train": 2, "val": 2, "test": 2, "total": 6}
    version = client.get(f"/api/admin/datasets/{started['id']}/versions/1", headers=editor.headers)
    provenance = version.json()["metadata"]["provenance"]
    assert provenance["repository"] == "sample" and provenance["catalogId"] == "kai-textures"
    assert provenance["options"] == {
        "selectedClasses": None,
        "maxSamplesPerClass": 2,
        "includeMetadata": True,
        "seed": 42,
    }
    events = client.get(f"/api/admin/jobs/{started['jobId']}/events", headers=editor.headers)
    body = events.json()
    listed = body["items"] if isinstance(body, dict) else body
    stages = {event.get("stage") for event in listed if event["type"] == "progress"}
    assert {"download", "extract", "ingest", "write", "done"} <= stages


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"sourceDatasetId": ""}, 422, "sourceDatasetId is missing"),
        ({}, 422, "sourceDatasetId is missing"),
        ({"sourceDatasetId": "nosuch"}, 404, "No premade dataset 'nosuch'"),
        ({"sourceDatasetId": "dtd", "selectedClasses": []}, 422, "selectedClasses is empty"),
        ({"sourceDatasetId": "dtd", "maxSamplesPerClass": 0}, 422, "at least 1, not 0"),
        ({"sourceDatasetId": "kai-textures", "selectedClasses": ["brick", "oak"]}, 422, "'oak'"),
        ({"sourceDatasetId": "huggingface:x"}, 422, "huggingface:ORG/NAME"),
    ],
)
def test_bad_requests_are_refused_and_store_nothing(
    client: TestClient, editor: Account, body: dict[str, Any], status: int, message: str
) -> None:
    response = client.post(IMPORT, json=body, headers=editor.headers)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    assert client.get("/api/admin/datasets", headers=editor.headers).json()["total"] == 0


def test_unknown_class_lists_the_valid_ones(client: TestClient, editor: Account) -> None:
    body = {"sourceDatasetId": "kai-textures", "selectedClasses": ["marble", "brick"]}
    error = client.post(IMPORT, json=body, headers=editor.headers).json()["error"]
    assert error["details"]["valid"] == ["brick", "grass", "gravel"]


def test_failed_source_fails_the_job_and_marks_the_dataset(
    client: TestClient,
    editor: Account,
    runtime: Runtime,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    body = {"sourceDatasetId": "huggingface:kai-test/absent", "name": "Absent"}
    started = client.post(IMPORT, json=body, headers=editor.headers).json()
    error = run_job(runtime, started["jobId"])
    assert error is not None and "not in the Hugging Face cache" in error
    dataset = client.get(f"/api/admin/datasets/{started['id']}", headers=editor.headers).json()
    assert dataset["status"] == "failed" and dataset["error"] == error
    assert dataset["version"] is None


def test_viewer_cannot_import(client: TestClient, viewer: Account) -> None:
    response = client.post(IMPORT, json={"sourceDatasetId": "dtd"}, headers=viewer.headers)
    assert response.status_code == 403


def test_idempotent_import_returns_the_first_dataset(client: TestClient, editor: Account) -> None:
    headers = editor.headers | {"Idempotency-Key": "textures-1"}
    first = client.post(IMPORT, json={"sourceDatasetId": "kai-textures"}, headers=headers)
    again = client.post(IMPORT, json={"sourceDatasetId": "kai-textures"}, headers=headers)
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["jobId"] == again.json()["jobId"]


def test_tfds_builder_imports_from_its_prepared_data(
    client: TestClient,
    editor: Account,
    runtime: Runtime,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("tensorflow_datasets", reason="needs the tfds extra")
    monkeypatch.syspath_prepend(str(SOURCE_FACTORIES))
    builds = importlib.import_module("tfds_builds")
    spec = builds.TfdsSpec("kai_api_tiles", ("oak", "slate"), {"train": 4, "test": 2})
    builds.prepare_tfds_datasets(tmp_path / "tfds", [spec])
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    body = {"sourceDatasetId": "tfds:kai_api_tiles", "maxSamplesPerClass": 1}
    response = client.post(IMPORT, json=body, headers=editor.headers)
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["name"] == "kai_api_tiles"
    assert run_job(runtime, started["jobId"]) is None
    dataset = client.get(f"/api/admin/datasets/{started['id']}", headers=editor.headers).json()
    assert dataset["status"] == "ready" and dataset["sampleCount"] == 4
    assert dataset["classCounts"]["oak"] == {"train": 1, "val": 0, "test": 1, "total": 2}
    version = client.get(f"/api/admin/datasets/{started['id']}/versions/1", headers=editor.headers)
    provenance = version.json()["metadata"]["provenance"]
    assert provenance["sourceId"] == "tfds:kai_api_tiles" and provenance["revision"] == "1.0.0"
    assert provenance["sourceDataDir"] == str(tmp_path / "tfds")
