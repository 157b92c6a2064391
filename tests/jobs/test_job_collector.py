"""Periodic garbage collection: on schedule, by one process at a time, in the workers."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from jobs_testing import wait_until

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import utcnow
from kai.errors import Conflict
from kai.jobs.collector import (
    PeriodicCollector,
    claim_collection,
    collect_now,
    end_collection,
    read_collector_lease,
    renew_collection,
)
from kai.jobs.environment import JobEnvironment, create_job_environment
from kai.jobs.registry import JobRegistry
from kai.jobs.workers import LocalWorkerPool
from kai.storage.blobs import LocalBlobStore

pytestmark = pytest.mark.db

HOUR = 3600.0


def claim(db: Database, owner: str, **options: object) -> bool:
    return claim_collection(
        db,
        owner=owner,
        lease_seconds=60,
        interval_seconds=HOUR,
        **options,  # type: ignore[arg-type]
    )


def old_orphan(blobs: LocalBlobStore, data: bytes) -> Path:
    path = blobs.path_for(blobs.put_bytes(data))
    past = time.time() - 2 * HOUR
    os.utime(path, (past, past))
    return path


def test_first_check_schedules_the_first_collection_one_interval_ahead(
    database: Database,
) -> None:
    assert not claim(database, "worker-a")

    lease = read_collector_lease(database)
    assert lease is not None and lease.owner is None
    due_in = (lease.next_run_at - utcnow()).total_seconds()
    assert HOUR - 60 < due_in <= HOUR
    assert not claim(database, "worker-b")
    assert claim(database, "worker-b", now=lease.next_run_at)


def test_one_owner_at_a_time_and_the_next_run_follows_the_end(database: Database) -> None:
    claim(database, "worker-a")
    due = read_collector_lease(database).next_run_at  # type: ignore[union-attr]

    assert claim(database, "worker-a", now=due)
    assert not claim(database, "worker-b", now=due + timedelta(seconds=30))
    assert renew_collection(database, owner="worker-a", lease_seconds=60)
    assert not renew_collection(database, owner="worker-b", lease_seconds=60)

    end_collection(database, owner="worker-a", next_run_in_seconds=2 * HOUR)
    lease = read_collector_lease(database)
    assert lease is not None and lease.owner is None
    assert not claim(database, "worker-b", now=due + timedelta(seconds=61))
    assert claim(database, "worker-b", now=lease.next_run_at)


def test_an_expired_lease_is_taken_over(database: Database) -> None:
    claim(database, "worker-a")
    due = read_collector_lease(database).next_run_at  # type: ignore[union-attr]
    assert claim(database, "worker-a", now=due)

    assert claim(database, "worker-b", now=due + timedelta(seconds=61))
    assert not renew_collection(database, owner="worker-a", lease_seconds=60)
    end_collection(database, owner="worker-a", next_run_in_seconds=HOUR)
    assert read_collector_lease(database).owner == "worker-b"  # type: ignore[union-attr]


def test_force_skips_the_schedule_but_not_a_live_lease(database: Database) -> None:
    assert claim(database, "admin", force=True)
    assert not claim(database, "worker-b", force=True)


@pytest.mark.parametrize("row_exists", [False, True], ids=["first-claim", "due-claim"])
def test_concurrent_claims_give_the_lease_to_one(
    settings: Settings, database: Database, row_exists: bool
) -> None:
    if row_exists:
        claim_collection(database, owner="setup", lease_seconds=60, interval_seconds=0)
    num_claimers = 6
    barrier = threading.Barrier(num_claimers)
    outcomes: dict[int, bool] = {}

    def contend(index: int) -> None:
        db = Database(settings.resolved_database_url)
        try:
            barrier.wait()
            outcomes[index] = claim_collection(
                db, owner=f"worker-{index}", lease_seconds=60, interval_seconds=0, force=True
            )
        finally:
            db.dispose()

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(num_claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [index for index, won in outcomes.items() if won]
    assert len(outcomes) == num_claimers and len(winners) == 1
    lease = read_collector_lease(database)
    assert lease is not None and lease.owner == f"worker-{winners[0]}"


def test_collect_now_refuses_while_another_process_collects(
    settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    orphan = old_orphan(blobs, b"orphan")
    assert claim(database, "kai-host:4242:ab12", force=True)

    with pytest.raises(Conflict, match="already running in kai-host:4242:ab12"):
        collect_now(database, blobs, settings, grace_seconds=HOUR)
    assert orphan.exists()

    end_collection(database, owner="kai-host:4242:ab12", next_run_in_seconds=HOUR)
    report = collect_now(database, blobs, settings, grace_seconds=HOUR)
    assert report.blobs_deleted == 1 and not orphan.exists()
    lease = read_collector_lease(database)
    assert lease is not None and lease.owner is None
    assert lease.next_run_at > utcnow() + timedelta(seconds=settings.gc_interval_seconds - 60)


def test_a_dry_run_needs_no_lease(
    settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    orphan = old_orphan(blobs, b"orphan")
    assert claim(database, "busy-worker", force=True)

    report = collect_now(database, blobs, settings, grace_seconds=HOUR, dry_run=True)

    assert report.blobs_deleted == 1 and orphan.exists()


def test_tick_collects_when_due_in_a_thread_and_schedules_the_next(
    settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    fast = settings.model_copy(update={"gc_interval_seconds": 0.2, "blob_grace_seconds": HOUR})
    env = create_job_environment(fast, JobRegistry())
    orphan = old_orphan(blobs, b"orphan")
    kept = blobs.path_for(blobs.put_bytes(b"young: an import may not have committed it yet"))
    try:
        collector = PeriodicCollector(env)
        assert not collector.tick()  # the first check only schedules
        time.sleep(0.3)
        assert collector.tick()
        wait_until(lambda: not collector.running, what="the collection to end")
    finally:
        env.close()

    assert not orphan.exists() and kept.exists()
    lease = read_collector_lease(database)
    assert lease is not None and lease.owner is None and lease.next_run_at > utcnow()


def test_interval_zero_turns_periodic_collection_off(
    settings: Settings, database: Database
) -> None:
    env: JobEnvironment = create_job_environment(
        settings.model_copy(update={"gc_interval_seconds": 0}), JobRegistry()
    )
    try:
        assert not PeriodicCollector(env).tick()
    finally:
        env.close()
    assert read_collector_lease(database) is None


@pytest.mark.slow
def test_local_workers_collect_garbage_periodically(
    settings: Settings, database: Database, blobs: LocalBlobStore, registry: JobRegistry
) -> None:
    fast = settings.model_copy(update={"gc_interval_seconds": 0.5, "blob_grace_seconds": HOUR})
    orphans = [old_orphan(blobs, f"orphan {i}".encode()) for i in range(3)]
    pool = LocalWorkerPool(fast, registry, num_workers=2)
    pool.start()
    try:
        wait_until(lambda: not any(p.exists() for p in orphans), what="the workers to collect")
        wait_until(lambda: collection_ended(database), what="the collection to end")
    finally:
        pool.stop()


def collection_ended(database: Database) -> bool:
    lease = read_collector_lease(database)
    return lease is not None and lease.owner is None
