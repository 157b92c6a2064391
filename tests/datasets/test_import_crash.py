"""An import whose process is killed in the middle of its ingest leaves no version behind.

The import is real (a ZIP of a few hundred JPEGs, the dataset handler, a
child process started by the job runner); only its blob store writes slowly
while a gate file exists, so the test can act in the middle of the ingest.
It reads the child's pid from the runner's "Job started" log record and
kills it with SIGKILL, as the kernel's out-of-memory killer would.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dataset_factories import class_files, make_zip
from dataset_job_handlers import GATE_NAME, create_slow_disk_registry
from sqlalchemy import func, select

from kai.config import Settings
from kai.datasets import ImportSource, SourceKind, start_import
from kai.db.engine import Database
from kai.db.tables import Dataset, DatasetStatus, DatasetVersion, Job, JobEvent, JobState, Sample
from kai.jobs.environment import JobEnvironment, create_job_environment
from kai.jobs.leases import claim_job, new_lease_owner
from kai.jobs.runner import run_claimed_job
from kai.storage.blobs import LocalBlobStore
from kai.storage.gc import collect_garbage

pytestmark = [pytest.mark.db, pytest.mark.slow]

IMAGES_PER_CLASS = 100
CLASSES = ("ceramic", "stone", "wood")
WAIT_SECONDS = 60.0


@pytest.fixture
def env(settings: Settings, database: Database) -> Iterator[JobEnvironment]:
    environment = create_job_environment(settings, create_slow_disk_registry())
    yield environment
    environment.close()


@pytest.fixture
def gate(settings: Settings) -> Path:
    """While this file exists, the import's blob writes are slow."""
    path = settings.resolved_data_dir / GATE_NAME
    path.touch()
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    members = class_files(dict.fromkeys(CLASSES, IMAGES_PER_CLASS))
    return make_zip(tmp_path / "tiles.zip", members)


def start(database: Database, archive: Path, *, name: str, max_attempts: int) -> tuple[int, int]:
    source = ImportSource(kind=SourceKind.ZIP, archive_path=str(archive), original_name=name)
    with database.session() as session:
        dataset, job = start_import(
            session, name=name, description="", source=source, max_attempts=max_attempts
        )
        return dataset.id, job.id


def run_job(env: JobEnvironment, job_id: int) -> JobState | None:
    claim = claim_job(
        env.db, owner=new_lease_owner(), lease_seconds=env.settings.lease_seconds, job_id=job_id
    )
    assert claim is not None, f"job {job_id} is not claimable"
    return run_claimed_job(env, claim)


def kill_mid_ingest(
    env: JobEnvironment, job_id: int, caplog: pytest.LogCaptureFixture
) -> JobState | None:
    """Run the job in a thread, SIGKILL its process once it reports ingest progress."""
    caplog.set_level(logging.INFO, logger="kai.jobs.runner")
    ended: list[JobState | None] = []
    runner = threading.Thread(target=lambda: ended.append(run_job(env, job_id)))
    runner.start()
    try:
        progress = wait_for_ingest_progress(env.db, job_id)
        pid = job_pid(caplog, job_id)
        assert os.getpid() in ancestors_of(pid), "the recorded pid is not the job's process"
        os.kill(pid, signal.SIGKILL)
    finally:
        runner.join(WAIT_SECONDS)
    assert not runner.is_alive() and len(ended) == 1
    assert 0 < progress["done"] < progress["total"] == len(CLASSES) * IMAGES_PER_CLASS
    return ended[0]


def wait_for_ingest_progress(db: Database, job_id: int) -> dict[str, Any]:
    """The first progress event of the ingest stage strictly between 0 and 1."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        with db.session() as session:
            payloads = session.scalars(
                select(JobEvent.payload)
                .where(JobEvent.job_id == job_id, JobEvent.type == "progress")
                .order_by(JobEvent.seq)
            )
            ingest: list[dict[str, Any]] = [
                p for p in payloads if p.get("stage") == "ingest" and 0 < p["progress"] < 1
            ]
            state = session.scalar(select(Job.state).where(Job.id == job_id))
        if ingest:
            return ingest[0]
        assert state in (JobState.QUEUED, JobState.RUNNING), f"the import ended {state} early"
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} reported no ingest progress in {WAIT_SECONDS} s")


def job_pid(caplog: pytest.LogCaptureFixture, job_id: int) -> int:
    for record in caplog.records:
        if record.getMessage() == "Job started" and getattr(record, "job_id", None) == job_id:
            return int(record.__dict__["pid"])
    raise AssertionError(f"the runner logged no pid for job {job_id}")


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def ancestors_of(pid: int) -> list[int]:
    """The job's parents up to init: the worker, through the fork server if there is one."""
    ancestors = []
    while pid > 1:
        pid = parent_of(pid)
        ancestors.append(pid)
    return ancestors


def versions_and_samples(database: Database, dataset_id: int) -> tuple[list[DatasetVersion], int]:
    with database.session() as session:
        versions = list(
            session.scalars(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id))
        )
        version_ids = [version.id for version in versions]
        num_samples = session.scalar(
            select(func.count()).select_from(Sample).where(Sample.version_id.in_(version_ids))
        )
        return versions, num_samples or 0


def read_dataset(database: Database, dataset_id: int) -> Dataset:
    with database.session() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        return dataset


def read_job(database: Database, job_id: int) -> Job:
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_a_killed_import_is_queued_again_and_its_retry_writes_one_version(
    env: JobEnvironment,
    database: Database,
    archive: Path,
    gate: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dataset_id, job_id = start(database, archive, name="tiles", max_attempts=2)

    assert kill_mid_ingest(env, job_id, caplog) is JobState.QUEUED

    assert versions_and_samples(database, dataset_id) == ([], 0)
    assert read_dataset(database, dataset_id).status is DatasetStatus.IMPORTING
    assert read_job(database, job_id).attempts == 1

    gate.unlink()
    assert run_job(env, job_id) is JobState.SUCCEEDED

    versions, num_samples = versions_and_samples(database, dataset_id)
    assert [(v.number, v.sample_count) for v in versions] == [(1, len(CLASSES) * IMAGES_PER_CLASS)]
    assert num_samples == len(CLASSES) * IMAGES_PER_CLASS
    assert read_dataset(database, dataset_id).status is DatasetStatus.READY
    assert read_job(database, job_id).attempts == 2


def test_garbage_collection_removes_what_a_killed_import_wrote_and_keeps_other_datasets(
    env: JobEnvironment,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    archive: Path,
    gate: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kept_members = class_files({"stone": 5, "wood": 5}, start=10_000)
    kept_members |= class_files({"ceramic": 1})  # also the killed import's first image
    gate.unlink()
    kept_zip = make_zip(tmp_path / "kept.zip", kept_members)
    kept_id, kept_job = start(database, kept_zip, name="kept", max_attempts=1)
    assert run_job(env, kept_job) is JobState.SUCCEEDED
    kept_files = files_in(blobs.root)
    gate.touch()

    dataset_id, job_id = start(database, archive, name="killed", max_attempts=1)
    assert kill_mid_ingest(env, job_id, caplog) is JobState.FAILED

    job = read_job(database, job_id)
    assert job.error is not None and "SIGKILL" in job.error
    dataset = read_dataset(database, dataset_id)
    assert (dataset.status, dataset.error) == (DatasetStatus.FAILED, job.error)
    assert versions_and_samples(database, dataset_id) == ([], 0)
    written = files_in(blobs.root) - kept_files
    assert written, "the killed attempt wrote nothing to the blob store"

    report = collect_garbage(
        database,
        blobs,
        grace_seconds=0,
        uploads_dir=settings.uploads_dir,
        work_dir=settings.work_dir,
    )

    assert files_in(blobs.root) == kept_files
    assert report.blobs_deleted + report.temporaries_removed == len(written)
    assert report.blobs_referenced == len(kept_files)
    versions, num_samples = versions_and_samples(database, kept_id)
    assert len(versions) == 1 and num_samples == len(kept_members)
    with database.session() as session:
        kept_hashes = set(session.scalars(select(Sample.blob_sha256)))
    assert all(blobs.exists(sha256) for sha256 in kept_hashes)


def files_in(root: Path) -> set[Path]:
    """Every file in a blob store: stored blobs and unfinished writes."""
    return {path for path in root.rglob("*") if path.is_file()}
