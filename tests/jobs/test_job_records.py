"""Submitting, reading, listing and cancelling job records."""

from __future__ import annotations

import threading

import pytest
from jobs_testing import hook_events, read_events, read_job, submit

from kai.db.engine import Database
from kai.db.tables import JobState
from kai.errors import Conflict, InvalidInput, NotFound
from kai.jobs.environment import JobEnvironment
from kai.jobs.hooks import run_pending_failure_hooks
from kai.jobs.leases import claim_job, new_lease_owner
from kai.jobs.records import get_job, list_jobs, request_cancel, submit_job

pytestmark = pytest.mark.db


def test_submit_job_queues_it(database: Database) -> None:
    with database.session() as session:
        job = submit_job(session, job_type="test.succeed", config={"value": 1}, max_attempts=2)

    stored = read_job(database, job.id)
    assert stored.state is JobState.QUEUED
    assert stored.config == {"value": 1}
    assert (stored.attempts, stored.max_attempts) == (0, 2)
    assert stored.lease_owner is None


def test_repeated_idempotency_key_returns_first_job(database: Database) -> None:
    first = submit(database, "test.succeed", config={"value": 1}, idempotency_key="import-7")
    again = submit(database, "test.succeed", config={"value": 2}, idempotency_key="import-7")
    other = submit(database, "test.succeed", idempotency_key="import-8")

    assert again == first
    assert other != first
    assert read_job(database, first).config == {"value": 1}
    with database.session() as session:
        assert list_jobs(session)[1] == 2


def test_idempotency_key_of_another_job_type_is_a_conflict(database: Database) -> None:
    submit(database, "test.succeed", idempotency_key="key-1")

    with pytest.raises(Conflict, match="key-1"):
        submit(database, "test.crash", idempotency_key="key-1")


def test_concurrent_submissions_with_one_key_make_one_job(database: Database) -> None:
    barrier = threading.Barrier(4)
    job_ids: list[int] = []

    def submit_after_barrier() -> None:
        barrier.wait()
        job_ids.append(submit(database, "test.succeed", idempotency_key="race"))

    threads = [threading.Thread(target=submit_after_barrier) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(job_ids) == 4
    assert len(set(job_ids)) == 1
    with database.session() as session:
        assert list_jobs(session)[1] == 1


def test_submit_rejects_missing_dependency_and_bad_attempts(database: Database) -> None:
    with pytest.raises(InvalidInput, match=r"\[999\]"):
        submit(database, "test.succeed", depends_on=[999])
    with pytest.raises(InvalidInput, match="max_attempts"):
        submit(database, "test.succeed", max_attempts=0)


def test_get_job_of_unknown_id_raises_not_found(database: Database) -> None:
    with database.session() as session, pytest.raises(NotFound, match="Job 404"):
        get_job(session, 404)


def test_list_jobs_pages_newest_first_and_filters(database: Database) -> None:
    ids = [submit(database, "test.succeed") for _ in range(5)]
    crash_id = submit(database, "test.crash")
    with database.session() as session:
        request_cancel(session, ids[0])

    with database.session() as session:
        page, total = list_jobs(session, page=1, page_size=2)
        assert total == 6
        assert [job.id for job in page] == [crash_id, ids[4]]
        page, _ = list_jobs(session, page=3, page_size=2)
        assert [job.id for job in page] == [ids[1], ids[0]]
        crashes, total = list_jobs(session, job_type="test.crash")
        assert ([job.id for job in crashes], total) == ([crash_id], 1)
        cancelled, total = list_jobs(session, state="cancelled")
        assert ([job.id for job in cancelled], total) == ([ids[0]], 1)
        with pytest.raises(InvalidInput, match="done"):
            list_jobs(session, state="done")
        with pytest.raises(InvalidInput, match="pageSize"):
            list_jobs(session, page_size=0)


def test_cancelling_a_queued_job_cancels_it_at_once(env: JobEnvironment) -> None:
    job_id = submit(env.db, "test.succeed")

    with env.db.session() as session:
        job = request_cancel(session, job_id)

    assert job.state is JobState.CANCELLED
    assert job.finished_at is not None
    [event] = read_events(env.db, job_id)
    assert event.type == "error"
    assert event.payload["state"] == "cancelled"
    assert "cancelled" in event.payload["error"]
    assert claim_job(env.db, owner=new_lease_owner(), lease_seconds=5) is None

    assert run_pending_failure_hooks(env) == 1
    assert run_pending_failure_hooks(env) == 0
    [hook] = hook_events(env.db, job_id)
    assert "cancelled" in hook.payload["message"]


def test_cancelling_a_running_job_requests_it(database: Database) -> None:
    job_id = submit(database, "test.succeed")
    claim = claim_job(database, owner=new_lease_owner(), lease_seconds=5)
    assert claim is not None

    with database.session() as session:
        job = request_cancel(session, job_id)

    assert job.state is JobState.RUNNING
    assert job.cancel_requested is True


def test_cancelling_a_finished_job_is_a_conflict(database: Database) -> None:
    job_id = submit(database, "test.succeed")
    with database.session() as session:
        request_cancel(session, job_id)

    with database.session() as session, pytest.raises(Conflict, match="already cancelled"):
        request_cancel(session, job_id)
