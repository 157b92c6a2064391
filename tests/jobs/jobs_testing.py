"""Small steps the jobs tests share: submit, read, run and wait for jobs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kai.db.engine import Database
from kai.db.tables import Job, JobEvent, JobState
from kai.jobs.environment import JobEnvironment
from kai.jobs.events import list_events
from kai.jobs.leases import claim_job, new_lease_owner
from kai.jobs.records import submit_job
from kai.jobs.runner import run_claimed_job


def submit(db: Database, job_type: str, **options: Any) -> int:
    """Submit a job in its own transaction and return its id."""
    config = options.pop("config", {})
    with db.session() as session:
        return submit_job(session, job_type=job_type, config=config, **options).id


def read_job(db: Database, job_id: int) -> Job:
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def read_events(db: Database, job_id: int) -> list[JobEvent]:
    with db.session() as session:
        return list_events(session, job_id)


def run_until_idle(env: JobEnvironment) -> int:
    """Claim and run jobs in this process until none is claimable; returns how many ran."""
    ran = 0
    while True:
        claim = claim_job(env.db, owner=new_lease_owner(), lease_seconds=env.settings.lease_seconds)
        if claim is None:
            return ran
        run_claimed_job(env, claim)
        ran += 1


def wait_until(predicate: Callable[[], bool], *, timeout: float = 60.0, what: str = "") -> None:
    """Poll until ``predicate`` holds; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out waiting for {what or predicate}")
        time.sleep(0.05)


def wait_for_state(db: Database, job_id: int, *states: JobState, timeout: float = 60.0) -> Job:
    wait_until(
        lambda: read_job(db, job_id).state in states,
        timeout=timeout,
        what=f"job {job_id} to reach {[s.value for s in states]}",
    )
    return read_job(db, job_id)


def hook_events(db: Database, job_id: int) -> list[JobEvent]:
    return [e for e in read_events(db, job_id) if e.type == "log" and e.payload.get("hook")]


def read_runs(marker_dir: Path, job_id: int) -> list[int]:
    path = marker_dir / f"{job_id}.runs"
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]
