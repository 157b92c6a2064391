"""Evaluation routes over HTTP, with a real ``model.evaluate`` job run by the job runner.

A tiny timm network uploaded as a state dict is evaluated on a 32-pixel
dataset whose classes only partly match the model's; the job runs in its
own child process as a worker runs it.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.support import Account
from kai.db.tables import Job, JobState
from kai.jobs.context import JobContext
from kai.jobs.environment import JobEnvironment, create_job_environment
from kai.jobs.events import list_events
from kai.jobs.leases import claim_job, new_lease_owner
from kai.jobs.runner import run_claimed_job
from kai.runtime import Runtime
from kai.storage.gc import collect_garbage
from models.model_factories import SIZE_PX, TINY_ARCHITECTURE, save_state_dict, tiny_model

pytestmark = pytest.mark.db

MODELS = "/api/admin/models"
DATASETS = "/api/admin/datasets"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COLOURS = {"ceramic": (200, 60, 40), "stone": (120, 120, 120), "wood": (140, 90, 30)}


def image_bytes(colour: tuple[int, int, int], seed: int) -> bytes:
    image = Image.new("RGB", (SIZE_PX, SIZE_PX), colour)
    image.putpixel((seed % SIZE_PX, seed // SIZE_PX % SIZE_PX), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def dataset_zip(classes: dict[str, tuple[int, int, int]]) -> bytes:
    """Three training and two test images per class."""
    buffer = io.BytesIO()
    seed = 0
    with zipfile.ZipFile(buffer, "w") as archive:
        for label, colour in classes.items():
            for split, count in (("train", 3), ("test", 2)):
                for index in range(count):
                    seed += 1
                    archive.writestr(f"{split}/{label}/{index}.png", image_bytes(colour, seed))
    return buffer.getvalue()


def run_here(runtime: Runtime, job_id: int) -> dict[str, Any]:
    """Run a queued import job's handler in this process."""
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
def env(runtime: Runtime) -> Iterator[JobEnvironment]:
    environment = create_job_environment(runtime.settings, runtime.registry)
    yield environment
    environment.close()


def upload_dataset(
    client: TestClient, runtime: Runtime, account: Account, classes: dict[str, Any]
) -> int:
    files = {"file": ("tiles.zip", dataset_zip(classes), "application/zip")}
    response = client.post(f"{DATASETS}/upload", files=files, headers=account.headers)
    assert response.status_code == 202, response.text
    run_here(runtime, response.json()["jobId"])
    return int(response.json()["id"])


def upload_model(client: TestClient, runtime: Runtime, account: Account, tmp_path: Path) -> int:
    weights = save_state_dict(tiny_model(num_classes=3), tmp_path / "tiles.pth").read_bytes()
    fields = {
        "name": "tiles",
        "architecture": TINY_ARCHITECTURE,
        "inputSize": str(SIZE_PX),
        "classNames": json.dumps(["Ceramic", "marble", "stone"]),
    }
    files = {"file": ("tiles.pth", weights, "application/octet-stream")}
    response = client.post(f"{MODELS}/upload", files=files, data=fields, headers=account.headers)
    assert response.status_code == 202, response.text
    run_here(runtime, response.json()["jobId"])
    return int(response.json()["id"])


def test_evaluation_job_scores_the_shared_classes_and_routes_show_it(
    client: TestClient,
    editor: Account,
    viewer: Account,
    runtime: Runtime,
    env: JobEnvironment,
    tmp_path: Path,
) -> None:
    dataset_id = upload_dataset(client, runtime, editor, COLOURS)
    model_id = upload_model(client, runtime, editor, tmp_path)
    body = {"datasetId": dataset_id}
    refused = client.post(f"{MODELS}/{model_id}/evaluations", json=body, headers=viewer.headers)
    assert refused.status_code == 403

    started = client.post(f"{MODELS}/{model_id}/evaluations", json=body, headers=editor.headers)
    assert started.status_code == 202, started.text
    plan = started.json()
    assert (plan["split"], plan["numSamples"]) == ("test", 4)
    assert plan["evaluatedClasses"] == ["Ceramic", "stone"]
    assert plan["unmappedDatasetClasses"] == ["wood"]

    claim = claim_job(env.db, owner=new_lease_owner(), lease_seconds=60, job_id=plan["jobId"])
    assert claim is not None
    assert run_claimed_job(env, claim) is JobState.SUCCEEDED
    with runtime.db.session() as session:
        stages = {e.payload.get("stage") for e in list_events(session, plan["jobId"])}
        job = session.get(Job, plan["jobId"])
        assert job is not None and job.result is not None
        evaluation_id = job.result["evaluationId"]
    assert {"load", "predict", "evaluate", "done"} <= stages

    listing = client.get(f"{MODELS}/{model_id}/evaluations", headers=viewer.headers).json()
    assert listing["total"] == 1
    summary = listing["items"][0]
    assert (summary["id"], summary["modelVersion"], summary["datasetVersion"]) == (
        evaluation_id,
        1,
        1,
    )
    assert summary["split"] == "test" and summary["numSamples"] == 4
    assert 0.0 <= summary["accuracy"] <= 1.0 and summary["ece"] is not None

    full = client.get(f"/api/admin/evaluations/{evaluation_id}", headers=viewer.headers).json()
    metrics = full["metrics"]
    assert metrics["classNames"] == ["Ceramic", "stone"]
    assert metrics["classMapping"]["unmappedDatasetClasses"] == ["wood"]
    assert metrics["classMapping"]["unmappedModelClasses"] == ["marble"]
    assert sum(sum(row) for row in metrics["confusionMatrix"]["counts"]) == 4
    test_ids = sample_ids(client, viewer, dataset_id, labels={"ceramic", "stone"})
    cell_ids = [i for cell in metrics["confusionMatrix"]["cells"] for i in cell["sampleIds"]]
    assert sorted(cell_ids) == sorted(test_ids)

    collect_garbage(runtime.db, runtime.blobs, grace_seconds=0)  # the plots are referenced
    for kind in ("confusion-matrix", "reliability-diagram"):
        plot = client.get(
            f"/api/admin/evaluations/{evaluation_id}/plots/{kind}", headers=viewer.headers
        )
        assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
        assert plot.content.startswith(PNG_MAGIC)
        Image.open(io.BytesIO(plot.content)).verify()


def sample_ids(
    client: TestClient, account: Account, dataset_id: int, labels: set[str]
) -> list[str]:
    url = f"{DATASETS}/{dataset_id}/samples?pageSize=100"
    items = client.get(url, headers=account.headers).json()["items"]
    return [s["id"] for s in items if s["split"] == "test" and s["label"] in labels]


def test_no_shared_class_is_a_clear_422(
    client: TestClient, editor: Account, runtime: Runtime, tmp_path: Path
) -> None:
    dataset_id = upload_dataset(
        client, runtime, editor, {"brick": (150, 50, 50), "grass": (40, 160, 40)}
    )
    model_id = upload_model(client, runtime, editor, tmp_path)

    response = client.post(
        f"{MODELS}/{model_id}/evaluations", json={"datasetId": dataset_id}, headers=editor.headers
    )

    assert response.status_code == 422, response.text
    assert "None of the dataset's classes" in response.json()["error"]["message"]
    with runtime.db.session() as session:
        assert session.query(Job).filter(Job.type == "model.evaluate").count() == 0


def test_missing_evaluation_and_plot_kind_are_4xx(client: TestClient, viewer: Account) -> None:
    assert client.get("/api/admin/evaluations/999", headers=viewer.headers).status_code == 404
    plot = client.get("/api/admin/evaluations/999/plots/histogram", headers=viewer.headers)
    assert plot.status_code == 422
