"""Quality routes: start an analysis, read the report and its issues, repair."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.support import Account
from kai.db.tables import Job
from kai.jobs.context import JobContext
from kai.runtime import Runtime
from quality.quality_factories import planted_set

pytestmark = pytest.mark.db

DATASETS = "/api/admin/datasets"


def run_job(runtime: Runtime, job_id: int) -> dict[str, Any]:
    """Run a queued job's handler here, as a worker would."""
    with runtime.db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job_type, config = job.type, dict(job.config)
    work_dir = runtime.settings.work_dir / str(job_id)
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = JobContext(
        job_id, job_type, config, 1, runtime.settings, runtime.db, runtime.blobs, work_dir
    )
    return runtime.registry.resolve(job_type).handler(ctx)


@pytest.fixture
def dataset_id(client: TestClient, editor: Account, runtime: Runtime) -> int:
    """The planted set uploaded and imported; its automatic analysis is still queued."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in planted_set().files.items():
            archive.writestr(name, data)
    files = {"file": ("planted.zip", buffer.getvalue(), "application/zip")}
    response = client.post(f"{DATASETS}/upload", files=files, headers=editor.headers)
    assert response.status_code == 202, response.text
    run_job(runtime, response.json()["jobId"])
    return int(response.json()["id"])


def test_report_is_404_until_analysed_then_complete(
    client: TestClient, editor: Account, viewer: Account, runtime: Runtime, dataset_id: int
) -> None:
    missing = client.get(f"{DATASETS}/{dataset_id}/quality", headers=viewer.headers)
    assert missing.status_code == 404
    assert "not been analysed" in missing.json()["error"]["message"]

    started = client.post(f"{DATASETS}/{dataset_id}/quality", headers=editor.headers)
    assert started.status_code == 202, started.text
    assert started.json()["version"] == 1
    run_job(runtime, started.json()["jobId"])

    report = client.get(f"{DATASETS}/{dataset_id}/quality?version=1", headers=viewer.headers)
    body = report.json()
    assert report.status_code == 200, report.text
    assert 0 <= body["overallQualityScore"] <= 100
    assert body["needsImprovement"] is (body["overallQualityScore"] < 70)
    assert body["issueCounts"]["exact_leakage"] == 1
    assert body["scoreBreakdown"]["families"] and body["recommendations"]


def test_issues_page_by_type_with_evidence(
    client: TestClient, editor: Account, runtime: Runtime, dataset_id: int
) -> None:
    run_job(
        runtime,
        client.post(f"{DATASETS}/{dataset_id}/quality", headers=editor.headers).json()["jobId"],
    )
    url = f"{DATASETS}/{dataset_id}/quality/issues?type=blurry&pageSize=5"
    page = client.get(url, headers=editor.headers).json()
    assert page["total"] == 1
    issue = page["items"][0]
    assert issue["originalName"] == "train/ceramic/blurred.png"
    assert issue["evidence"]["laplacianVariance"] < issue["evidence"]["threshold"]
    thumbnail = client.get(
        f"{DATASETS}/{dataset_id}/samples/{issue['sampleId']}/thumbnail", headers=editor.headers
    )
    assert thumbnail.status_code == 200


def test_repair_route_makes_a_better_version(
    client: TestClient, editor: Account, viewer: Account, runtime: Runtime, dataset_id: int
) -> None:
    run_job(
        runtime,
        client.post(f"{DATASETS}/{dataset_id}/quality", headers=editor.headers).json()["jobId"],
    )
    body = {"fixes": [{"type": "dropDuplicates"}, {"type": "resplitLeakage"}]}
    refused = client.post(
        f"{DATASETS}/{dataset_id}/quality/repair", json=body, headers=viewer.headers
    )
    assert refused.status_code == 403
    repaired = client.post(
        f"{DATASETS}/{dataset_id}/quality/repair", json=body, headers=editor.headers
    )
    assert repaired.status_code == 201, repaired.text
    assert repaired.json()["version"] == 2
    run_job(runtime, repaired.json()["jobId"])
    report = client.get(f"{DATASETS}/{dataset_id}/quality", headers=editor.headers).json()
    assert report["version"] == 2 and report["parentVersion"] == 1
    assert report["scoreChange"] > 0


def test_bad_fix_is_a_clear_4xx(client: TestClient, editor: Account, dataset_id: int) -> None:
    body = {"fixes": [{"type": "capClasses", "max": 0}]}
    response = client.post(
        f"{DATASETS}/{dataset_id}/quality/repair", json=body, headers=editor.headers
    )
    assert response.status_code == 422


def sample_id_named(client: TestClient, account: Account, dataset_id: int, name: str) -> str:
    page = client.get(f"{DATASETS}/{dataset_id}/samples?pageSize=100", headers=account.headers)
    return next(item["id"] for item in page.json()["items"] if item["originalName"] == name)


def test_similar_images_come_from_the_analysed_index(
    client: TestClient, editor: Account, viewer: Account, runtime: Runtime, dataset_id: int
) -> None:
    sample_id = sample_id_named(client, viewer, dataset_id, "train/ceramic/ceramic_0.png")
    url = f"{DATASETS}/{dataset_id}/samples/{sample_id}/similar"
    before = client.get(url, headers=viewer.headers)
    assert before.status_code == 409 and "similarity index" in before.json()["error"]["message"]

    run_job(
        runtime,
        client.post(f"{DATASETS}/{dataset_id}/quality", headers=editor.headers).json()["jobId"],
    )
    found = client.get(f"{url}?limit=5", headers=viewer.headers)
    assert found.status_code == 200, found.text
    items = found.json()["items"]
    assert len(items) == 5 and sample_id not in {item["sample"]["id"] for item in items}
    assert items[0]["sample"]["originalName"] == "test/ceramic/leaked.png"
    assert items[0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    similarities = [item["similarity"] for item in items]
    assert similarities == sorted(similarities, reverse=True)
    assert client.get(f"{url}?limit=0", headers=viewer.headers).status_code == 422
    missing = client.get(f"{DATASETS}/{dataset_id}/samples/nope/similar", headers=viewer.headers)
    assert missing.status_code == 404
