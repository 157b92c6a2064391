"""``kai gc``: a dry run shows what would go, a run removes it, and running jobs are protected."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kai.cli.main import app
from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Job, JobState
from kai.jobs.collector import claim_collection
from kai.storage.blobs import LocalBlobStore

pytestmark = pytest.mark.db

DAY = 24 * 3600.0


def kai(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {"KAI_DATA_DIR": str(settings.data_dir)}
    if settings.database_url:
        env["KAI_DATABASE_URL"] = settings.database_url
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def old_orphan(blobs: LocalBlobStore, data: bytes) -> Path:
    path = blobs.path_for(blobs.put_bytes(data))
    past = time.time() - 2 * DAY
    os.utime(path, (past, past))
    return path


def test_dry_run_then_collect(
    settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    orphan = old_orphan(blobs, b"x" * 2000)
    young = blobs.path_for(blobs.put_bytes(b"stored a moment ago"))

    code, out, err = kai(settings, "gc", "--dry-run")
    assert code == 0, err
    assert "Would remove" in out and "unreferenced blobs │ 1" in out and "2.0 kB" in out
    assert orphan.exists()

    code, out, err = kai(settings, "gc")
    assert code == 0, err
    assert "Removed" in out and "unreferenced blobs │ 1" in out
    assert "Kept 0 referenced and 1 young blobs; 2.0 kB freed" in out
    assert not orphan.exists() and young.exists()

    code, out, err = kai(settings, "gc", "--grace-hours", "0")
    assert code == 0, err
    assert not young.exists()


def test_short_grace_is_refused_while_jobs_run_unless_forced(
    settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    in_flight = blobs.path_for(blobs.put_bytes(b"an import's blob, not committed yet"))
    with database.session() as session:
        session.add(Job(type="dataset.import", config={}, state=JobState.RUNNING))

    code, _, err = kai(settings, "gc", "--grace-hours", "0")
    assert code == 1
    assert "1 job(s) are running" in err and "--force" in err
    assert in_flight.exists()

    code, out, err = kai(settings, "gc", "--grace-hours", "0", "--dry-run")
    assert code == 0 and "unreferenced blobs │ 1" in out and in_flight.exists()

    code, _, err = kai(settings, "gc", "--grace-hours", "0", "--force")
    assert code == 0, err
    assert not in_flight.exists()


def test_refused_while_a_worker_collects(settings: Settings, database: Database) -> None:
    assert claim_collection(
        database, owner="tiles-host:77:beef", lease_seconds=60, interval_seconds=DAY, force=True
    )

    code, _, err = kai(settings, "gc")

    assert code == 1
    assert "already running in tiles-host:77:beef" in err
