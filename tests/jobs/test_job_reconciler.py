"""The reconciler requeues or fails jobs whose worker stopped renewing the lease."""

from __future__ import annotations

from datetime import timedelta

import pytest
from jobs_testing import read_events, read_job, submit
from sqlalchemy import update

from kai.db.engine import Database
from kai.db.tables import Job, JobState, utcnow
from kai.jobs.leases import claim_job
from kai.jobs.reconciler import reconcile_expired_leases, redispatch_stale_queued

pytestmark = pytest.mark.db


class RecordingDispatcher:
    def __init__(self) -> None:
        self.job_ids: list[int] = []

    def dispatch(self, job_id: int) -> None:
        self.job_ids.append(job_id)


def test_expired_lease_is_requeued_and_dispatched(database: Database) -> None:
    job_id = submit(database, "test.succeed")
    assert claim_job(database, owner="dead-worker", lease_seconds=5) is not None
    dispatcher = RecordingDispatcher()

    later = utcnow() + timedelta(seconds=10)
    assert reconcile_expired_leases(database, now=later, dispatcher=dispatcher) == 1

    job = read_job(database, job_id)
    assert (job.state, job.lease_owner, job.attempts) == (JobState.QUEUED, None, 1)
    assert dispatcher.job_ids == [job_id]
    [event] = read_events(database, job_id)
    assert "dead-worker stopped renewing its lease" in event.payload["message"]
    assert claim_job(database, owner="next", lease_seconds=5) is not None


def test_live_lease_is_left_alone(database: Database) -> None:
    job_id = submit(database, "test.succeed")
    claim_job(database, owner="alive", lease_seconds=5)

    assert reconcile_expired_leases(database) == 0

    assert read_job(database, job_id).lease_owner == "alive"


def test_expired_lease_without_attempts_left_fails_the_job(database: Database) -> None:
    job_id = submit(database, "test.succeed", max_attempts=1)
    claim_job(database, owner="dead-worker", lease_seconds=5)

    assert reconcile_expired_leases(database, now=utcnow() + timedelta(seconds=10)) == 1

    job = read_job(database, job_id)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert "stopped renewing its lease" in job.error
    assert "gave up after 1 attempt)" in job.error
    assert job.failure_hook_pending


def test_stale_queued_jobs_are_re_sent_once_per_period(database: Database) -> None:
    blocker = submit(database, "test.succeed")
    ready = submit(database, "test.succeed")
    waiting = submit(database, "test.succeed", depends_on=[blocker])
    claim_job(database, owner="busy", lease_seconds=5, job_id=blocker)
    with database.session() as session:
        session.execute(update(Job).values(created_at=utcnow() - timedelta(minutes=5)))
    dispatcher = RecordingDispatcher()

    assert redispatch_stale_queued(database, dispatcher, older_than_seconds=60) == 1
    assert redispatch_stale_queued(database, dispatcher, older_than_seconds=60) == 0

    assert dispatcher.job_ids == [ready]
    assert read_job(database, waiting).redispatched_at is None
