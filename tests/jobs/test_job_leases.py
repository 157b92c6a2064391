"""Claiming, renewing, finishing and releasing leases; dependencies and attempt caps."""

from __future__ import annotations

import threading

import pytest
from jobs_testing import read_events, read_job, submit

from kai.db.engine import Database
from kai.db.tables import JobState
from kai.jobs.leases import (
    ClaimedJob,
    claim_job,
    fail_blocked_jobs,
    finish_job,
    new_lease_owner,
    release_job,
    release_leases_of,
    renew_lease,
)
from kai.jobs.records import request_cancel

pytestmark = pytest.mark.db


def claim(db: Database, *, owner: str | None = None, job_id: int | None = None) -> ClaimedJob:
    claimed = claim_job(db, owner=owner or new_lease_owner(), lease_seconds=5, job_id=job_id)
    assert claimed is not None
    return claimed


def test_claim_takes_the_oldest_job_and_records_the_lease(database: Database) -> None:
    first = submit(database, "test.succeed", config={"n": 1})
    submit(database, "test.succeed")

    claimed = claim(database, owner="worker-a")

    assert (claimed.id, claimed.attempt, claimed.config) == (first, 1, {"n": 1})
    job = read_job(database, first)
    assert job.state is JobState.RUNNING
    assert (job.lease_owner, job.attempts) == ("worker-a", 1)
    assert job.lease_expires_at is not None
    assert job.started_at is not None


def test_each_job_is_claimed_by_exactly_one_of_many_claimers(database: Database) -> None:
    job_ids = [submit(database, "test.succeed") for _ in range(12)]
    barrier = threading.Barrier(4)
    claims: list[ClaimedJob] = []

    def claim_all() -> None:
        barrier.wait()
        while (
            claimed := claim_job(database, owner=new_lease_owner(), lease_seconds=5)
        ) is not None:
            claims.append(claimed)

    threads = [threading.Thread(target=claim_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(c.id for c in claims) == job_ids
    assert len({c.owner for c in claims}) == len(claims)
    assert {read_job(database, job_id).lease_owner for job_id in job_ids} == {
        c.owner for c in claims
    }


def test_two_claimers_of_one_job_one_wins(database: Database) -> None:
    job_id = submit(database, "test.succeed")

    winner = claim_job(database, owner="a", lease_seconds=5, job_id=job_id)
    loser = claim_job(database, owner="b", lease_seconds=5, job_id=job_id)

    assert winner is not None and winner.owner == "a"
    assert loser is None
    assert read_job(database, job_id).lease_owner == "a"


def test_heartbeat_renews_only_the_owners_lease(database: Database) -> None:
    job_id = submit(database, "test.succeed")
    claimed = claim(database, owner="owner")
    before = read_job(database, job_id).lease_expires_at

    assert renew_lease(database, job_id, owner="owner", lease_seconds=60).held
    assert not renew_lease(database, job_id, owner="intruder", lease_seconds=600).held

    after = read_job(database, job_id).lease_expires_at
    assert before is not None and after is not None
    assert after > before
    assert claimed.id == job_id


def test_heartbeat_reports_a_cancellation_request(database: Database) -> None:
    job_id = submit(database, "test.succeed")
    claim(database, owner="owner")
    with database.session() as session:
        request_cancel(session, job_id)

    beat = renew_lease(database, job_id, owner="owner", lease_seconds=5)

    assert beat.held and beat.cancel_requested


def test_finishing_writes_the_outcome_only_for_the_owner(database: Database) -> None:
    job_id = submit(database, "test.succeed")
    claim(database, owner="owner")

    assert not finish_job(database, job_id, owner="other", state=JobState.SUCCEEDED, result={})
    assert finish_job(database, job_id, owner="owner", state=JobState.SUCCEEDED, result={"a": 1})
    assert not finish_job(database, job_id, owner="owner", state=JobState.FAILED, error="late")

    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED
    assert job.result == {"a": 1}
    assert (job.lease_owner, job.lease_expires_at) == (None, None)
    assert job.finished_at is not None
    [event] = read_events(database, job_id)
    assert (event.type, event.payload) == ("completed", {"results": {"a": 1}})


def test_a_job_waits_for_its_dependencies_to_succeed(database: Database) -> None:
    first = submit(database, "test.succeed")
    second = submit(database, "test.succeed", depends_on=[first])

    claimed = claim(database, owner="owner")
    assert claimed.id == first
    assert claim_job(database, owner="x", lease_seconds=5) is None

    finish_job(database, first, owner="owner", state=JobState.SUCCEEDED, result={})
    assert claim(database).id == second


def test_a_failed_dependency_fails_the_waiting_job_with_the_reason(database: Database) -> None:
    first = submit(database, "test.succeed")
    second = submit(database, "test.succeed", depends_on=[first])
    third = submit(database, "test.succeed", depends_on=[second])
    claim(database, owner="owner")
    finish_job(database, first, owner="owner", state=JobState.FAILED, error="disk full")

    assert claim_job(database, owner="x", lease_seconds=5) is None
    assert claim_job(database, owner="x", lease_seconds=5) is None

    assert read_job(database, second).error == f"Waiting for job {first} failed: disk full"
    waiting = read_job(database, third)
    assert waiting.state is JobState.FAILED
    assert waiting.error is not None
    assert waiting.error.startswith(f"Waiting for job {second} failed: Waiting for job {first}")
    [event] = read_events(database, second)
    assert event.type == "error"
    assert event.payload["error"] == f"Waiting for job {first} failed: disk full"


def test_a_cancelled_dependency_fails_the_waiting_job(database: Database) -> None:
    first = submit(database, "test.succeed")
    second = submit(database, "test.succeed", depends_on=[first])
    with database.session() as session:
        request_cancel(session, first)

    assert claim_job(database, owner="x", lease_seconds=5) is None

    job = read_job(database, second)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert job.error.startswith(f"Waiting for job {first} failed:")
    assert "cancelled" in job.error


def test_released_jobs_are_retried_until_attempts_run_out(database: Database) -> None:
    job_id = submit(database, "test.succeed", max_attempts=2)

    first = claim(database)
    assert release_job(database, job_id, owner=first.owner, reason="boom") is JobState.QUEUED
    second = claim(database)
    assert second.attempt == 2
    assert release_job(database, job_id, owner=second.owner, reason="boom") is JobState.FAILED

    job = read_job(database, job_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 2)
    assert job.error == "boom (gave up after 2 attempts)"
    assert claim_job(database, owner="x", lease_seconds=5) is None
    assert [e.type for e in read_events(database, job_id)] == ["log", "error"]


def test_release_without_counting_keeps_the_attempt(database: Database) -> None:
    job_id = submit(database, "test.succeed", max_attempts=1)
    claimed = claim(database)

    state = release_job(database, job_id, owner=claimed.owner, reason="stop", count_attempt=False)

    assert state is JobState.QUEUED
    assert read_job(database, job_id).attempts == 0
    assert claim(database).attempt == 1


def test_release_of_a_job_asked_to_cancel_cancels_it(database: Database) -> None:
    job_id = submit(database, "test.succeed")
    claimed = claim(database)
    with database.session() as session:
        request_cancel(session, job_id)

    assert release_job(database, job_id, owner=claimed.owner, reason="x") is JobState.CANCELLED


def test_release_leases_of_a_gone_worker(database: Database) -> None:
    kept = submit(database, "test.succeed")
    gone = submit(database, "test.succeed")
    claim(database, owner="host:1:aaaa", job_id=kept)
    claim(database, owner="host:2:bbbb", job_id=gone)

    assert release_leases_of(database, "host:2:", reason="worker killed") == [gone]

    assert read_job(database, gone).state is JobState.QUEUED
    assert read_job(database, kept).lease_owner == "host:1:aaaa"


def test_fail_blocked_jobs_fails_only_jobs_whose_dependency_failed(database: Database) -> None:
    running = submit(database, "test.succeed")
    doomed = submit(database, "test.succeed")
    waiting = submit(database, "test.succeed", depends_on=[running])
    blocked = submit(database, "test.succeed", depends_on=[doomed])
    claim(database, owner="a", job_id=running)
    claim(database, owner="b", job_id=doomed)
    finish_job(database, doomed, owner="b", state=JobState.FAILED, error="bad file")

    assert fail_blocked_jobs(database) == [blocked]

    assert read_job(database, waiting).state is JobState.QUEUED
    assert read_job(database, blocked).error == f"Waiting for job {doomed} failed: bad file"
    assert read_job(database, blocked).failure_hook_pending
