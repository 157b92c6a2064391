"""Running a job in its own process: outcomes, crashes, cancellation and heartbeats."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from jobs_testing import (
    hook_events,
    read_events,
    read_job,
    read_runs,
    run_until_idle,
    submit,
    wait_until,
)

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import JobState
from kai.jobs.environment import JobEnvironment, create_job_environment
from kai.jobs.leases import claim_job, new_lease_owner
from kai.jobs.reconciler import reconcile_expired_leases
from kai.jobs.records import request_cancel
from kai.jobs.registry import JobRegistry
from kai.jobs.runner import exit_reason, run_claimed_job

pytestmark = pytest.mark.db


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_returning_handler_succeeds_with_its_events(env: JobEnvironment) -> None:
    job_id = submit(env.db, "test.succeed", config={"value": 7})

    assert run_until_idle(env) == 1

    job = read_job(env.db, job_id)
    assert job.state is JobState.SUCCEEDED
    assert job.result is not None and job.result["answer"] == 7
    assert (job.attempts, job.lease_owner, job.progress) == (1, None, 0.5)
    events = read_events(env.db, job_id)
    assert [e.type for e in events] == ["progress", "metrics", "completed"]
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].payload == {
        "progress": 0.5,
        "stage": "halfway",
        "currentEpoch": 1,
        "totalEpochs": 2,
    }
    assert events[2].payload == {"results": job.result}
    assert not Path(job.result["workDir"]).exists()


def test_a_kai_error_fails_the_job_with_its_message(env: JobEnvironment) -> None:
    job_id = submit(env.db, "test.invalid")

    run_until_idle(env)

    job = read_job(env.db, job_id)
    assert (job.state, job.error, job.attempts) == (
        JobState.FAILED,
        "The archive holds no images",
        1,
    )
    error_event = read_events(env.db, job_id)[0]
    assert error_event.type == "error"
    assert error_event.payload["error"] == "The archive holds no images"
    [hook] = hook_events(env.db, job_id)
    assert hook.payload["message"] == "failure hook: The archive holds no images"


def test_an_unexpected_exception_is_an_internal_error(env: JobEnvironment) -> None:
    job_id = submit(env.db, "test.bug")

    run_until_idle(env)

    job = read_job(env.db, job_id)
    assert job.state is JobState.FAILED
    assert job.error == "Internal error: ValueError: unexpected value 7"


def test_an_unknown_job_type_fails_with_the_known_types(env: JobEnvironment) -> None:
    job_id = submit(env.db, "test.missing")

    run_until_idle(env)

    job = read_job(env.db, job_id)
    assert job.state is JobState.FAILED
    assert job.error is not None and "Unknown job type 'test.missing'" in job.error


def test_a_crashing_process_is_retried_then_failed_with_its_exit_code(
    env: JobEnvironment, marker_dir: Path
) -> None:
    job_id = submit(env.db, "test.crash", config={"marker_dir": str(marker_dir)}, max_attempts=2)

    assert run_until_idle(env) == 2

    job = read_job(env.db, job_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 2)
    assert job.error == "the job's process exited with code 3 (gave up after 2 attempts)"
    assert len(set(read_runs(marker_dir, job_id))) == 2
    events = read_events(env.db, job_id)
    assert [e.type for e in events] == ["log", "error", "log"]
    assert "Attempt 1 ended: the job's process exited with code 3" in events[0].payload["message"]
    assert len(hook_events(env.db, job_id)) == 1


def test_exit_reason_names_the_signal() -> None:
    assert exit_reason(3) == "the job's process exited with code 3"
    assert exit_reason(-9).startswith("the job's process was killed by SIGKILL")


def test_cancelling_a_running_job_terminates_its_process(
    env: JobEnvironment, marker_dir: Path
) -> None:
    job_id = submit(env.db, "test.sleep", config={"marker_dir": str(marker_dir), "seconds": 60})
    claim = claim_job(env.db, owner=new_lease_owner(), lease_seconds=5)
    assert claim is not None

    def cancel_once_started() -> None:
        wait_until(lambda: bool(read_runs(marker_dir, job_id)), what="the job to start")
        with env.db.session() as session:
            request_cancel(session, job_id)

    canceller = threading.Thread(target=cancel_once_started)
    canceller.start()
    state = run_claimed_job(env, claim)
    canceller.join()

    assert state is JobState.CANCELLED
    [pid] = read_runs(marker_dir, job_id)
    assert not is_alive(pid)
    job = read_job(env.db, job_id)
    assert (job.state, job.error) == (JobState.CANCELLED, f"Job {job_id} was cancelled")
    assert [e.type for e in read_events(env.db, job_id)] == ["error", "log"]
    assert len(hook_events(env.db, job_id)) == 1


def test_a_handler_that_sees_its_cancellation_ends_cancelled(env: JobEnvironment) -> None:
    job_id = submit(env.db, "test.cooperative")
    claim = claim_job(env.db, owner=new_lease_owner(), lease_seconds=5)
    assert claim is not None
    with env.db.session() as session:
        request_cancel(session, job_id)

    assert run_claimed_job(env, claim) is JobState.CANCELLED
    assert read_job(env.db, job_id).state is JobState.CANCELLED


def test_a_stopping_worker_requeues_its_job_without_using_an_attempt(
    env: JobEnvironment, marker_dir: Path
) -> None:
    job_id = submit(env.db, "test.sleep", config={"marker_dir": str(marker_dir)}, max_attempts=1)
    claim = claim_job(env.db, owner=new_lease_owner(), lease_seconds=5)
    assert claim is not None
    stop = threading.Event()
    threading.Thread(
        target=lambda: (wait_until(lambda: bool(read_runs(marker_dir, job_id))), stop.set())
    ).start()

    assert run_claimed_job(env, claim, stop=stop) is JobState.QUEUED

    [pid] = read_runs(marker_dir, job_id)
    assert not is_alive(pid)
    job = read_job(env.db, job_id)
    assert (job.state, job.attempts, job.lease_owner) == (JobState.QUEUED, 0, None)


def test_heartbeats_keep_a_long_jobs_lease(
    settings: Settings, database: Database, registry: JobRegistry
) -> None:
    short = settings.model_copy(update={"lease_seconds": 2.0, "heartbeat_seconds": 0.2})
    env = create_job_environment(short, registry)
    job_id = submit(env.db, "test.succeed", config={"seconds": 2 * short.lease_seconds})
    claim = claim_job(env.db, owner=new_lease_owner(), lease_seconds=short.lease_seconds)
    assert claim is not None
    done = threading.Event()
    reconciled: list[int] = []

    def reconcile_until_done() -> None:
        while not done.wait(0.1):
            reconciled.append(reconcile_expired_leases(env.db))

    reconciler = threading.Thread(target=reconcile_until_done)
    reconciler.start()
    try:
        state = run_claimed_job(env, claim)
    finally:
        done.set()
        reconciler.join()
        env.close()

    assert state is JobState.SUCCEEDED
    assert sum(reconciled) == 0
    assert len(reconciled) > 10
    assert read_job(database, job_id).attempts == 1
