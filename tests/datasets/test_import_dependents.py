"""A job started right after an import call returns waits for it, or fails with its reason.

Clients start training as soon as the import route answers; training does
not exist yet, so a stand-in job kind that reads the dataset takes its place.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dataset_factories import class_files, make_zip
from dataset_job_handlers import TRAIN_JOB, create_registry

from kai.config import Settings
from kai.datasets import ImportSource, SourceKind, start_import
from kai.db.engine import Database
from kai.db.tables import Dataset, DatasetStatus, Job, JobState
from kai.jobs.environment import JobEnvironment, create_job_environment
from kai.jobs.events import list_events
from kai.jobs.leases import claim_job, new_lease_owner
from kai.jobs.records import submit_job
from kai.jobs.runner import run_claimed_job

pytestmark = pytest.mark.db


@pytest.fixture
def env(settings: Settings, database: Database) -> Iterator[JobEnvironment]:
    environment = create_job_environment(settings, create_registry())
    yield environment
    environment.close()


def start_import_then_training(database: Database, archive: Path) -> tuple[int, int, int]:
    """What a client does: the import call, then at once the training call on its dataset."""
    source = ImportSource(kind=SourceKind.ZIP, archive_path=str(archive), original_name="t.zip")
    with database.session() as session:
        dataset, import_job = start_import(session, name="tiles", description="", source=source)
        dataset_id, import_id = dataset.id, import_job.id
    with database.session() as session:
        training = submit_job(
            session, job_type=TRAIN_JOB, config={"datasetId": dataset_id}, depends_on=[import_id]
        )
        return dataset_id, import_id, training.id


def claim_and_run(env: JobEnvironment, job_id: int | None = None) -> int | None:
    claim = claim_job(
        env.db, owner=new_lease_owner(), lease_seconds=env.settings.lease_seconds, job_id=job_id
    )
    if claim is None:
        return None
    run_claimed_job(env, claim)
    return claim.id


def read_job(database: Database, job_id: int) -> Job:
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def read_dataset(database: Database, dataset_id: int) -> Dataset:
    with database.session() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        return dataset


def test_training_on_a_failed_import_fails_with_the_imports_reason(
    tmp_path: Path, env: JobEnvironment, database: Database
) -> None:
    archive = make_zip(tmp_path / "t.zip", class_files({"stone": 4}))  # one class is too few
    dataset_id, import_id, training_id = start_import_then_training(database, archive)

    assert claim_and_run(env, training_id) is None  # it waits while the import is queued
    assert claim_and_run(env) == import_id
    assert claim_and_run(env) is None

    imported, training = read_job(database, import_id), read_job(database, training_id)
    assert imported.state is JobState.FAILED and imported.error
    assert training.state is JobState.FAILED
    assert training.error == f"Waiting for job {import_id} failed: {imported.error}"
    assert (training.attempts, training.started_at, training.result) == (0, None, None)
    with database.session() as session:
        last = list_events(session, training_id)[-1]
    assert (last.type, last.payload["error"]) == ("error", training.error)
    dataset = read_dataset(database, dataset_id)
    assert (dataset.status, dataset.error) == (DatasetStatus.FAILED, imported.error)


def test_training_waits_for_the_import_and_sees_its_version(
    tmp_path: Path, env: JobEnvironment, database: Database
) -> None:
    archive = make_zip(tmp_path / "t.zip", class_files({"stone": 4, "wood": 5}))
    _, import_id, training_id = start_import_then_training(database, archive)

    assert claim_and_run(env, training_id) is None
    assert read_job(database, training_id).state is JobState.QUEUED
    assert claim_and_run(env) == import_id
    assert claim_and_run(env) == training_id

    training = read_job(database, training_id)
    assert training.state is JobState.SUCCEEDED
    assert training.result == {"status": "ready", "version": 1, "sampleCount": 9}
