"""A real Celery worker over Redis, with jobs in PostgreSQL, runs each job once."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from jobs_testing import read_events, read_runs, submit, wait_for_state, wait_until

from kai.config import Settings
from kai.db.engine import Database
from kai.db.migrate import migrate
from kai.db.tables import JobState
from kai.jobs.celery_app import CeleryDispatcher
from kai.jobs.dispatch import Dispatcher, create_dispatcher

pytestmark = [pytest.mark.services, pytest.mark.slow]

POSTGRES_SERVER = os.environ.get("KAI_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
REDIS_SERVER = "redis://127.0.0.1:6379"
HERE = Path(__file__).parent


@pytest.fixture
def celery_database_url(postgres_url: str | None) -> Iterator[str]:
    """A fresh PostgreSQL database of this test's own, dropped afterwards."""
    name = f"kai_celery_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_SERVER.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def broker_url() -> Iterator[str]:
    """A Redis database picked at random; only keys this test made are deleted."""
    url = f"{REDIS_SERVER}/{random.randint(1, 15)}"
    client = redis.Redis.from_url(url)
    before = set(client.keys("*"))
    try:
        yield url
    finally:
        made = set(client.keys("*")) - before
        if made:
            client.delete(*made)
        client.close()


@pytest.fixture
def celery_settings(data_dir: Path, celery_database_url: str, broker_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=celery_database_url,
        broker_url=broker_url,
        lease_seconds=5.0,
        heartbeat_seconds=0.5,
        poll_seconds=0.1,
    )


@pytest.fixture
def celery_db(celery_settings: Settings) -> Iterator[Database]:
    db = Database(celery_settings.resolved_database_url)
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture
def worker_log(celery_settings: Settings, celery_db: Database, tmp_path: Path) -> Iterator[Path]:
    """Starts ``celery_worker_entry.py`` in its own process; yields its log file."""
    log_path = tmp_path / "worker.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KAI_")}
    environment.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        KAI_DATA_DIR=str(celery_settings.data_dir),
        KAI_DATABASE_URL=celery_db.url,
        KAI_BROKER_URL=str(celery_settings.broker_url),
        KAI_LEASE_SECONDS=str(celery_settings.lease_seconds),
        KAI_HEARTBEAT_SECONDS=str(celery_settings.heartbeat_seconds),
        KAI_POLL_SECONDS=str(celery_settings.poll_seconds),
    )
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(HERE / "celery_worker_entry.py")],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log_path
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def logged_messages(log_path: Path) -> list[dict[str, object]]:
    entries = []
    for line in log_path.read_text().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def dropped_messages_for(log_path: Path, job_id: int) -> int:
    return sum(
        1
        for entry in logged_messages(log_path)
        if entry.get("job_id") == job_id and "message dropped" in str(entry.get("message"))
    )


def test_a_celery_worker_runs_a_job_with_its_events(
    celery_settings: Settings, celery_db: Database, worker_log: Path, marker_dir: Path
) -> None:
    dispatcher: Dispatcher = create_dispatcher(celery_settings)
    assert isinstance(dispatcher, CeleryDispatcher)

    job_id = submit(celery_db, "test.succeed", config={"marker_dir": str(marker_dir)})
    dispatcher.dispatch(job_id)

    job = wait_for_state(celery_db, job_id, JobState.SUCCEEDED, JobState.FAILED, timeout=90)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.result is not None and job.result["answer"] == 42
    events = read_events(celery_db, job_id)
    assert [e.type for e in events] == ["progress", "metrics", "completed"]
    assert [e.seq for e in events] == [1, 2, 3]
    assert len(read_runs(marker_dir, job_id)) == 1


def test_a_redelivered_message_does_not_run_a_job_twice(
    celery_settings: Settings, celery_db: Database, worker_log: Path, marker_dir: Path
) -> None:
    dispatcher = create_dispatcher(celery_settings)
    config = {"marker_dir": str(marker_dir), "seconds": 2.0}
    job_id = submit(celery_db, "test.succeed", config=config)

    dispatcher.dispatch(job_id)
    wait_until(lambda: bool(read_runs(marker_dir, job_id)), timeout=90, what="the job to start")
    dispatcher.dispatch(job_id)
    wait_until(lambda: dropped_messages_for(worker_log, job_id) == 1, what="the redelivery")
    wait_for_state(celery_db, job_id, JobState.SUCCEEDED, timeout=60)

    dispatcher.dispatch(job_id)
    wait_until(lambda: dropped_messages_for(worker_log, job_id) == 2, what="the late copy")

    assert len(read_runs(marker_dir, job_id)) == 1
    assert [e.type for e in read_events(celery_db, job_id)][-1] == "completed"
