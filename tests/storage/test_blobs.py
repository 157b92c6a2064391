"""Blob stores: atomic, content-addressed writes on a local folder and on an S3 bucket."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from kai.errors import NotFound
from kai.storage.blobs import LocalBlobStore, RemoteBlobStore, open_blob_store


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


# Local store.


def test_put_bytes_stores_under_sha256(blobs: LocalBlobStore) -> None:
    data = b"ceramic tile"

    address = blobs.put_bytes(data)

    assert address == sha(data)
    assert blobs.path_for(address) == blobs.root / address[:2] / address
    assert blobs.exists(address)
    assert blobs.read_bytes(address) == data
    assert blobs.size(address) == len(data)
    with blobs.open(address) as handle:
        assert handle.read() == data


def test_same_bytes_are_stored_once(blobs: LocalBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "a.jpg"
    source.write_bytes(b"porcelain")

    first = blobs.put_bytes(b"porcelain")
    second = blobs.put_file(source)
    writer = blobs.writer()
    writer.write(b"porce")
    writer.write(b"lain")
    third = writer.commit()

    assert first == second == third
    assert [address for address, _ in blobs.iter_hashes()] == [first]
    assert list(blobs.tmp_dir.iterdir()) == []


def test_streaming_write_is_invisible_until_commit(blobs: LocalBlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024)
    writer = blobs.writer()
    writer.write(data[:1024])

    assert not blobs.exists(sha(data))
    assert list(blobs.iter_hashes()) == []

    writer.write(data[1024:])
    address = writer.commit()
    assert address == sha(data)
    assert blobs.read_bytes(address) == data


def test_abort_leaves_nothing(blobs: LocalBlobStore) -> None:
    writer = blobs.writer()
    writer.write(b"half an upload")

    writer.abort()

    assert list(blobs.tmp_dir.iterdir()) == []
    assert list(blobs.iter_hashes()) == []
    assert not blobs.exists(sha(b"half an upload"))


def test_put_file_aborts_on_read_error(blobs: LocalBlobStore, tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        blobs.put_file(tmp_path)

    assert list(blobs.tmp_dir.iterdir()) == []


def test_delete_removes_and_tolerates_missing(blobs: LocalBlobStore) -> None:
    address = blobs.put_bytes(b"stone")

    blobs.delete(address)
    blobs.delete(address)

    assert not blobs.exists(address)
    with pytest.raises(NotFound, match=address):
        blobs.open(address)
    with pytest.raises(NotFound, match=address):
        blobs.size(address)


def test_refuses_addresses_that_are_not_hashes(blobs: LocalBlobStore) -> None:
    with pytest.raises(NotFound, match="not a SHA-256"):
        blobs.open("../../etc/passwd")


def test_iter_hashes_lists_every_blob_with_its_time(blobs: LocalBlobStore) -> None:
    addresses = {blobs.put_bytes(f"sample {i}".encode()) for i in range(5)}
    (blobs.tmp_dir / "unfinished.part").write_bytes(b"x")
    before = time.time()

    listed = dict(blobs.iter_hashes())

    assert set(listed) == addresses
    assert all(before - 60 < modified <= time.time() for modified in listed.values())


def test_remove_stale_temporaries_keeps_young_ones(blobs: LocalBlobStore) -> None:
    old = blobs.tmp_dir / "old.part"
    young = blobs.tmp_dir / "young.part"
    old.write_bytes(b"crashed write")
    young.write_bytes(b"write in progress")
    age(old, 7200)

    assert blobs.remove_stale_temporaries(3600) == 1

    assert not old.exists()
    assert young.exists()


def test_open_blob_store_chooses_by_url(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(str(tmp_path / "a")), LocalBlobStore)
    assert isinstance(open_blob_store(f"file://{tmp_path / 'b'}"), LocalBlobStore)


# Remote store on an S3-compatible server.


def test_remote_put_open_exists_size(remote: RemoteBlobStore, s3_bucket: str) -> None:
    data = os.urandom(100_000)

    address = remote.put_bytes(data)

    assert address == sha(data)
    assert remote.fs.exists(f"{s3_bucket}/blobs/{address[:2]}/{address}")
    assert remote.exists(address)
    assert remote.size(address) == len(data)
    with remote.open(address) as handle:
        assert handle.read() == data
    assert remote.local_path(address) is None
    assert list(remote.staging.tmp_dir.iterdir()) == []


def test_remote_streaming_write_and_dedup(remote: RemoteBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "wood.jpg"
    source.write_bytes(b"oak " * 1000)
    writer = remote.writer()
    writer.write(b"oak " * 500)
    writer.write(b"oak " * 500)

    first = writer.commit()
    second = remote.put_file(source)

    assert first == second == sha(source.read_bytes())
    assert [address for address, _ in remote.iter_hashes()] == [first]


def test_remote_abort_uploads_nothing(remote: RemoteBlobStore) -> None:
    writer = remote.writer()
    writer.write(b"never finished")

    writer.abort()

    assert list(remote.iter_hashes()) == []
    assert list(remote.staging.tmp_dir.iterdir()) == []


def test_remote_delete_and_missing(remote: RemoteBlobStore) -> None:
    address = remote.put_bytes(b"marble")

    remote.delete(address)
    remote.delete(address)

    assert not remote.exists(address)
    with pytest.raises(NotFound):
        remote.open(address)
    with pytest.raises(NotFound):
        remote.size(address)


def test_remote_iter_hashes_skips_temporaries(remote: RemoteBlobStore, s3_bucket: str) -> None:
    addresses = {remote.put_bytes(f"granite {i}".encode()) for i in range(3)}
    remote.fs.pipe(f"{s3_bucket}/blobs/tmp/{'f' * 64}", b"partial upload")
    before = time.time()

    listed = dict(remote.iter_hashes())

    assert set(listed) == addresses
    assert all(before - 300 < modified <= time.time() + 5 for modified in listed.values())


def test_remote_remove_stale_temporaries(remote: RemoteBlobStore, s3_bucket: str) -> None:
    remote.fs.pipe(f"{s3_bucket}/blobs/tmp/abandoned", b"partial upload")
    staged = remote.staging.tmp_dir / "abandoned.part"
    staged.write_bytes(b"partial stage")
    age(staged, 7200)

    assert remote.remove_stale_temporaries(3600) == 1
    assert not staged.exists()
    assert remote.fs.exists(f"{s3_bucket}/blobs/tmp/abandoned")

    time.sleep(1.1)  # S3 keeps modification times to the second
    assert remote.remove_stale_temporaries(0) == 1
    remote.fs.invalidate_cache()
    assert not remote.fs.exists(f"{s3_bucket}/blobs/tmp/abandoned")


def test_local_batch_makes_blobs_visible_only_after_flush(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    batch = store.batch()

    first = batch.put_bytes(b"first image")
    again = batch.put_bytes(b"first image")
    second = batch.put_bytes(b"second image")

    assert first == again == hashlib.sha256(b"first image").hexdigest()
    assert not store.exists(first) and not store.exists(second)
    batch.flush()
    assert store.read_bytes(first) == b"first image"
    assert store.read_bytes(second) == b"second image"
    assert list(store.root.rglob("*.part")) == []


def test_local_batch_reuses_a_blob_already_stored(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    sha256 = store.put_bytes(b"shared")
    batch = store.batch()

    assert batch.put_bytes(b"shared") == sha256
    batch.flush()

    assert store.read_bytes(sha256) == b"shared"
    assert list(store.root.rglob("*.part")) == []


def test_local_batch_stages_beside_the_address_unseen_by_readers(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    batch = store.batch()

    sha256 = batch.put_bytes(b"staged image")

    staged = list(store.root.rglob("*.part"))
    assert [path.parent for path in staged] == [store.path_for(sha256).parent]
    assert list(store.iter_hashes()) == []
    batch.abort()
    assert list(store.root.rglob("*.part")) == []
    assert not store.exists(sha256)


def test_stale_staged_writes_of_a_crashed_batch_are_removed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    kept = store.put_bytes(b"stored before")
    store.batch().put_bytes(b"never flushed")  # the process died before flush or abort
    [staged] = store.root.rglob("*.part")
    os.utime(staged, (time.time() - 7200, time.time() - 7200))

    assert store.remove_stale_temporaries(3600, dry_run=True) == 1
    assert staged.exists()
    assert store.remove_stale_temporaries(3600) == 1
    assert not staged.exists()
    assert store.read_bytes(kept) == b"stored before"
