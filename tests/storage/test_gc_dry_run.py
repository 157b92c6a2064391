"""A dry run of garbage collection counts what a collection would remove and removes nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Blob
from kai.storage.blobs import LocalBlobStore, RemoteBlobStore
from kai.storage.gc import GcReport, collect_garbage

DAY = 24 * 3600.0


def age(path: Path, seconds: float = 2 * DAY) -> None:
    past = time.time() - seconds
    for item in [path, *path.rglob("*")]:
        os.utime(item, (past, past))


def litter(blobs: LocalBlobStore, settings: Settings, database: Database) -> list[Path]:
    """An old orphan blob with its row, a stale temporary and a stale upload folder."""
    orphan = blobs.put_bytes(b"nothing refers to me")
    with database.session() as session:
        session.add(Blob(sha256=orphan, size_bytes=20))
    temporary = blobs.tmp_dir / "crashed.part"
    temporary.write_bytes(b"half")
    upload = settings.uploads_dir / "abandoned"
    upload.mkdir(parents=True)
    (upload / "tiles.zip").write_bytes(b"z" * 50)
    paths = [blobs.path_for(orphan), temporary, upload]
    for path in paths:
        age(path)
    return paths


def collect(
    database: Database, blobs: LocalBlobStore, settings: Settings, *, dry_run: bool = False
) -> GcReport:
    return collect_garbage(
        database, blobs, grace_seconds=DAY, uploads_dir=settings.uploads_dir, dry_run=dry_run
    )


@pytest.mark.db
def test_dry_run_counts_what_a_collection_removes_and_keeps_it(
    database: Database, blobs: LocalBlobStore, settings: Settings
) -> None:
    paths = litter(blobs, settings, database)

    dry = collect(database, blobs, settings, dry_run=True)

    assert all(path.exists() for path in paths)
    with database.session() as session:
        assert session.query(Blob).count() == 1
    assert dry.dry_run
    assert (dry.blobs_deleted, dry.blob_bytes_freed) == (1, 20)
    assert (dry.temporaries_removed, dry.scratch_removed, dry.scratch_bytes_freed) == (1, 1, 50)

    real = collect(database, blobs, settings)

    assert not any(path.exists() for path in paths)
    assert not real.dry_run
    assert (real.blobs_deleted, real.blob_bytes_freed, real.bytes_freed) == (1, 20, 70)
    assert (real.temporaries_removed, real.scratch_removed) == (1, 1)
    with database.session() as session:
        assert session.query(Blob).count() == 0


def test_dry_run_leaves_remote_temporaries(remote: RemoteBlobStore) -> None:
    temporary = f"{remote.prefix}/tmp/crashed.part"
    remote.fs.pipe_file(temporary, b"half")
    time.sleep(1.1)  # S3 keeps modification times to the second

    assert remote.remove_stale_temporaries(0, dry_run=True) == 1
    remote.fs.invalidate_cache()
    assert remote.fs.exists(temporary)
    assert remote.remove_stale_temporaries(0) == 1
    remote.fs.invalidate_cache()
    assert not remote.fs.exists(temporary)
