"""The jobs routes: list with filters, one job, its stored events, cancellation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.support import Account
from kai.db.tables import JobState
from kai.jobs.events import append_event
from kai.jobs.records import submit_job
from kai.runtime import Runtime

pytestmark = pytest.mark.db


def submit(runtime: Runtime, job_type: str) -> int:
    with runtime.db.session() as session:
        return submit_job(session, job_type=job_type, config={"n": 1}).id


def test_list_filters_by_status_and_type(
    client: TestClient, runtime: Runtime, viewer: Account, editor: Account
) -> None:
    first = submit(runtime, "test.alpha")
    second = submit(runtime, "test.beta")
    client.post(f"/api/admin/jobs/{first}/cancel", headers=editor.headers)

    every = client.get("/api/admin/jobs", headers=viewer.headers).json()
    assert [item["id"] for item in every["items"]] == [second, first]
    assert (every["total"], every["page"], every["pageSize"]) == (2, 1, 50)
    queued = client.get("/api/admin/jobs?status=queued", headers=viewer.headers).json()
    assert [item["id"] for item in queued["items"]] == [second]
    typed = client.get("/api/admin/jobs?type=test.alpha", headers=viewer.headers).json()
    assert [item["status"] for item in typed["items"]] == ["cancelled"]
    bad = client.get("/api/admin/jobs?status=sleeping", headers=viewer.headers)
    assert bad.status_code == 422


def test_read_job_has_status_and_timestamps(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    job_id = submit(runtime, "test.alpha")
    job = client.get(f"/api/admin/jobs/{job_id}", headers=viewer.headers).json()
    assert job["status"] == "queued"
    assert job["type"] == "test.alpha"
    assert (job["progress"], job["attempts"], job["maxAttempts"]) == (0.0, 0, 3)
    assert job["createdAt"].endswith("Z")
    assert job["startedAt"] is None
    assert job["result"] is None and job["error"] is None


def test_events_after_seq_oldest_first(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    job_id = submit(runtime, "test.alpha")
    with runtime.db.session() as session:
        for index in range(3):
            append_event(session, job_id, "log", {"message": f"line {index}"})
    events = client.get(f"/api/admin/jobs/{job_id}/events?after=1", headers=viewer.headers).json()
    assert [item["seq"] for item in events["items"]] == [2, 3]
    assert events["items"][0] == {"type": "log", "message": "line 1", "seq": 2, "jobId": job_id}
    assert events["lastSeq"] == 3


def test_cancel_a_queued_job_then_again_is_a_conflict(
    client: TestClient, runtime: Runtime, editor: Account
) -> None:
    job_id = submit(runtime, "test.alpha")
    cancelled = client.post(f"/api/admin/jobs/{job_id}/cancel", headers=editor.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == JobState.CANCELLED.value
    again = client.post(f"/api/admin/jobs/{job_id}/cancel", headers=editor.headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
