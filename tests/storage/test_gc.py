"""Garbage collection keeps what rows and jobs need and removes the rest."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Blob, Dataset, DatasetVersion, Job, JobState, Sample, Split
from kai.storage import gc
from kai.storage.blobs import LocalBlobStore, RemoteBlobStore
from kai.storage.gc import BLOB_REFERENCES, collect_garbage

pytestmark = pytest.mark.db

DAY = 24 * 3600.0


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def old_blob(blobs: LocalBlobStore, data: bytes) -> str:
    address = blobs.put_bytes(data)
    age(blobs.path_for(address), 2 * DAY)
    return address


def add_sample(database: Database, original: str, reduced: str) -> None:
    with database.session() as session:
        dataset = Dataset(name="tiles")
        session.add(dataset)
        session.flush()
        version = DatasetVersion(dataset_id=dataset.id, number=1)
        session.add(version)
        session.flush()
        session.add(
            Sample(
                version_id=version.id,
                uid="s1",
                blob_sha256=original,
                reduced_sha256=reduced,
                label="ceramic",
                split=Split.TRAIN,
                original_name="ceramic/a.jpg",
                width=32,
                height=32,
                format="jpeg",
            )
        )
        for address in {original, reduced}:
            session.add(Blob(sha256=address, size_bytes=1))


def add_job(database: Database, state: JobState, config: dict[str, str]) -> int:
    with database.session() as session:
        job = Job(type="dataset_import", config=config, state=state)
        session.add(job)
        session.flush()
        return job.id


def test_references_cover_both_sample_columns() -> None:
    assert {column.key for column in BLOB_REFERENCES} == {"blob_sha256", "reduced_sha256"}


def test_referenced_blobs_survive_and_unreferenced_old_blobs_go(
    database: Database, blobs: LocalBlobStore
) -> None:
    original = old_blob(blobs, b"original photo")
    reduced = old_blob(blobs, b"reduced copy")
    orphan = old_blob(blobs, b"from a deleted dataset")
    with database.session() as session:
        session.add(Blob(sha256=orphan, size_bytes=22))
    add_sample(database, original, reduced)

    report = collect_garbage(database, blobs, grace_seconds=DAY)

    assert blobs.exists(original) and blobs.exists(reduced)
    assert not blobs.exists(orphan)
    assert (report.blobs_deleted, report.blobs_referenced) == (1, 2)
    assert report.blob_bytes_freed == len(b"from a deleted dataset")
    with database.session() as session:
        assert session.get(Blob, orphan) is None
        assert session.get(Blob, original) is not None


def test_young_blobs_are_kept_by_the_grace_period(
    database: Database, blobs: LocalBlobStore
) -> None:
    in_flight = blobs.put_bytes(b"import not committed yet")
    old = old_blob(blobs, b"long forgotten")

    report = collect_garbage(database, blobs, grace_seconds=DAY)

    assert blobs.exists(in_flight)
    assert not blobs.exists(old)
    assert (report.blobs_young, report.blobs_deleted) == (1, 1)


def test_many_blobs_are_handled_in_batches(
    database: Database, blobs: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gc, "BATCH_SIZE", 3)
    kept = old_blob(blobs, b"kept")
    add_sample(database, kept, kept)
    orphans = [old_blob(blobs, f"orphan {i}".encode()) for i in range(10)]

    report = collect_garbage(database, blobs, grace_seconds=DAY)

    assert report.blobs_deleted == len(orphans)
    assert [address for address, _ in blobs.iter_hashes()] == [kept]


def test_stale_temporaries_go(database: Database, blobs: LocalBlobStore) -> None:
    stale = blobs.tmp_dir / "crashed.part"
    live = blobs.tmp_dir / "writing.part"
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    age(stale, 2 * DAY)

    report = collect_garbage(database, blobs, grace_seconds=DAY)

    assert report.temporaries_removed == 1
    assert not stale.exists()
    assert live.exists()


def test_scratch_entries_of_active_jobs_are_kept(
    database: Database, blobs: LocalBlobStore, settings: Settings
) -> None:
    uploads, work = settings.uploads_dir, settings.work_dir
    entries = {
        "claimed upload": uploads / "1f2e",
        "abandoned upload": uploads / "9c8d",
        "fresh upload": uploads / "77aa",
        "stray file": uploads / "partial.zip",
        "dead job work": work / "41",
    }
    for path in entries.values():
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * 10)
        else:
            path.mkdir(parents=True)
            (path / "file.zip").write_bytes(b"x" * 100)
    add_job(database, JobState.QUEUED, {"upload_dir": str(entries["claimed upload"])})
    running = add_job(database, JobState.RUNNING, {})
    add_job(database, JobState.FAILED, {"upload_dir": str(entries["abandoned upload"])})
    running_work = work / str(running)
    running_work.mkdir()
    (running_work / "checkpoint.pt").write_bytes(b"x")
    for path in [*entries.values(), running_work]:
        if path.name != "77aa":
            for item in [path, *path.rglob("*")]:
                age(item, 2 * DAY)

    report = collect_garbage(database, blobs, grace_seconds=DAY, uploads_dir=uploads, work_dir=work)

    assert entries["claimed upload"].exists()
    assert entries["fresh upload"].exists()
    assert running_work.exists()
    assert not entries["abandoned upload"].exists()
    assert not entries["stray file"].exists()
    assert not entries["dead job work"].exists()
    assert report.scratch_removed == 3
    assert report.scratch_bytes_freed == 100 + 10 + 100
    assert report.bytes_freed == report.scratch_bytes_freed


def test_missing_scratch_folders_are_fine(
    database: Database, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    report = collect_garbage(
        database,
        blobs,
        grace_seconds=DAY,
        uploads_dir=tmp_path / "no-uploads",
        work_dir=tmp_path / "no-work",
    )

    assert report.scratch_removed == 0


def test_collects_from_a_remote_store(database: Database, remote: RemoteBlobStore) -> None:
    kept = remote.put_bytes(b"referenced")
    orphan = remote.put_bytes(b"unreferenced")
    add_sample(database, kept, kept)

    young = collect_garbage(database, remote, grace_seconds=DAY)
    time.sleep(1.1)  # S3 keeps modification times to the second
    report = collect_garbage(database, remote, grace_seconds=0)

    assert (young.blobs_young, young.blobs_deleted) == (2, 0)
    assert (report.blobs_deleted, report.blobs_referenced) == (1, 1)
    assert report.blob_bytes_freed == len(b"unreferenced")
    assert remote.exists(kept)
    assert not remote.exists(orphan)
