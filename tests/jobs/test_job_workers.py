"""Local worker processes: they poll, run jobs in order of dependencies and stop cleanly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs_testing import read_job, read_runs, submit, wait_for_state, wait_until

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import JobState
from kai.jobs.registry import JobRegistry
from kai.jobs.workers import LocalWorkerPool

pytestmark = [pytest.mark.db, pytest.mark.slow]


@pytest.fixture
def pool(
    settings: Settings, database: Database, registry: JobRegistry
) -> Iterator[LocalWorkerPool]:
    workers = LocalWorkerPool(settings, registry, num_workers=2)
    workers.start()
    try:
        yield workers
    finally:
        workers.stop()


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_run_submitted_jobs_after_their_dependencies(
    pool: LocalWorkerPool, database: Database, marker_dir: Path
) -> None:
    config = {"marker_dir": str(marker_dir)}
    first = submit(database, "test.succeed", config=config)
    second = submit(database, "test.succeed", config=config, depends_on=[first])
    failing = submit(database, "test.invalid")
    blocked = submit(database, "test.succeed", depends_on=[failing])

    for job_id in (first, second):
        assert wait_for_state(database, job_id, JobState.SUCCEEDED, JobState.FAILED).state is (
            JobState.SUCCEEDED
        )
    assert read_job(database, second).started_at >= read_job(database, first).finished_at
    blocked_job = wait_for_state(database, blocked, JobState.FAILED)
    assert blocked_job.error == f"Waiting for job {failing} failed: The archive holds no images"
    assert len(read_runs(marker_dir, first)) == len(read_runs(marker_dir, second)) == 1


def test_stopping_the_pool_requeues_running_jobs(
    settings: Settings, database: Database, registry: JobRegistry, marker_dir: Path
) -> None:
    pool = LocalWorkerPool(settings, registry, num_workers=1)
    pool.start()
    job_id = submit(database, "test.sleep", config={"marker_dir": str(marker_dir)})
    wait_until(lambda: bool(read_runs(marker_dir, job_id)), what="the job to start")

    pool.stop()

    assert not pool.is_running
    [pid] = read_runs(marker_dir, job_id)
    assert not is_alive(pid)
    job = read_job(database, job_id)
    assert (job.state, job.lease_owner, job.attempts) == (JobState.QUEUED, None, 0)
