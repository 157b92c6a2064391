"""Blobs stored once under the SHA-256 of their bytes.

Writes are atomic: bytes stream into a temporary file while being hashed,
the file is flushed and fsynced, then renamed to its address. A reader
never sees a partial blob, and a crash leaves only a temporary file that
garbage collection removes later.

Layout: ``<root>/ab/abcd...`` for blobs and ``<root>/tmp/`` for streamed
writes in progress. A batch of small blobs stages each one as
``<root>/ab/.<random>.part`` beside its address instead: a rename within
one folder does not take the file system's cross-folder rename lock, and
threads creating files in different folders do not queue on one folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import fsspec

from kai.errors import NotFound

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
# Staged writes end with this; no blob address does.
PART_SUFFIX = ".part"


class BlobWriter(Protocol):
    """A blob being written; ``commit`` makes it visible under its hash."""

    def write(self, data: bytes) -> None:
        """Append bytes."""

    def commit(self) -> str:
        """Finish the write and return the SHA-256 address."""

    def abort(self) -> None:
        """Drop what was written."""


class BlobBatch(Protocol):
    """Many small writes that become durable and visible together.

    Syncing every file on its own dominates the cost of storing thousands of
    small images, so a batch writes temporaries without syncing, then syncs
    the file system once, renames them all to their addresses, and syncs once
    more. A blob is visible under its address only after its bytes are on disk.
    """

    def put_bytes(self, data: bytes) -> str:
        """Stage ``data`` and return its SHA-256; safe to call from several threads."""

    def flush(self) -> None:
        """Make every staged blob durable and visible; call before referencing them."""

    def abort(self) -> None:
        """Drop every staged blob that was not flushed."""


class BlobStore(Protocol):
    """Content-addressed storage."""

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its SHA-256."""

    def put_file(self, path: Path) -> str:
        """Store the file at ``path`` and return its SHA-256."""

    def writer(self) -> BlobWriter:
        """Start a streaming write."""

    def batch(self) -> BlobBatch:
        """Start a batch of writes made durable together by ``BlobBatch.flush``."""

    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""

    def open(self, sha256: str) -> IO[bytes]:
        """Open the blob for reading; raises NotFound if it is missing."""

    def read_bytes(self, sha256: str) -> bytes:
        """The blob's bytes."""

    def size(self, sha256: str) -> int:
        """The blob's size in bytes."""

    def local_path(self, sha256: str) -> Path | None:
        """A local path to the blob when the store is local, else None."""

    def delete(self, sha256: str) -> None:
        """Remove the blob if present."""

    def iter_hashes(self) -> Iterator[tuple[str, float]]:
        """Every stored blob with its modification time (seconds since the epoch)."""

    def remove_stale_temporaries(self, older_than_seconds: float, *, dry_run: bool = False) -> int:
        """Remove unfinished writes older than the given age (only count them if ``dry_run``)."""


def open_blob_store(url: str) -> BlobStore:
    """Open the blob store for a path or an fsspec URL such as ``s3://bucket/prefix``."""
    if "://" not in url or url.startswith("file://"):
        return LocalBlobStore(Path(url.removeprefix("file://")))
    return RemoteBlobStore(url)


def _check_address(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise NotFound(f"Blob address {sha256!r} is not a SHA-256 hex digest")
    return sha256


class _LocalWriter:
    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        self._hash = hashlib.sha256()
        self._size = 0
        self._tmp = store.tmp_dir / f"{secrets.token_hex(16)}.part"
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit or abort

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._size += len(data)
        self._file.write(data)

    def commit(self) -> str:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        sha256 = self._hash.hexdigest()
        target = self._store.path_for(sha256)
        if target.exists():
            # A fresh mtime tells garbage collection that an import is re-using this blob.
            os.utime(target)
            self._tmp.unlink(missing_ok=True)
            return sha256
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, target)
        return sha256

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class _LocalBatch:
    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._staged: dict[str, Path] = {}
        self._folders: set[Path] = set()

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        with self._lock:
            if sha256 in self._staged:
                return sha256
        target = self._store.path_for(sha256)
        folder = target.parent
        if folder not in self._folders:
            folder.mkdir(exist_ok=True)
            self._folders.add(folder)
        tmp = folder / f".{secrets.token_hex(16)}{PART_SUFFIX}"
        _write_new_file(tmp, data)
        with self._lock:
            if sha256 in self._staged:
                tmp.unlink(missing_ok=True)
            else:
                self._staged[sha256] = tmp
        return sha256

    def flush(self) -> None:
        with self._lock:
            staged, self._staged = self._staged, {}
        if not staged:
            return
        _sync_file_system(self._store.tmp_dir)
        # Replacing a blob that already exists swaps in identical bytes and refreshes its
        # modification time, which keeps garbage collection away from it.
        for sha256, tmp in staged.items():
            os.replace(tmp, self._store.path_for(sha256))
        _sync_file_system(self._store.root)

    def abort(self) -> None:
        with self._lock:
            staged, self._staged = self._staged, {}
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def _write_new_file(path: Path, data: bytes) -> None:
    """Create ``path``, which must not exist, holding ``data`` (one open, no buffer copy)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _sync_file_system(path: Path) -> None:
    """Flush the file system holding ``path`` (syncfs on Linux, else a global sync)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "syncfs"):
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


class LocalBlobStore:
    """Blobs in a local folder.

    Args:
        root: The folder; created when missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        """The path a blob lives at (whether or not it exists)."""
        _check_address(sha256)
        return self.root / sha256[:2] / sha256

    def writer(self) -> BlobWriter:
        return _LocalWriter(self)

    def batch(self) -> BlobBatch:
        return _LocalBatch(self)

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path_for(sha256)
        if target.exists():
            os.utime(target)
            return sha256
        writer = self.writer()
        writer.write(data)
        return writer.commit()

    def put_file(self, path: Path) -> str:
        writer = self.writer()
        try:
            with open(path, "rb") as source:
                while chunk := source.read(CHUNK_BYTES):
                    writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open(self, sha256: str) -> IO[bytes]:
        try:
            return open(self.path_for(sha256), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"Blob {sha256} is not stored") from exc

    def read_bytes(self, sha256: str) -> bytes:
        with self.open(sha256) as source:
            return source.read()

    def size(self, sha256: str) -> int:
        try:
            return self.path_for(sha256).stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(f"Blob {sha256} is not stored") from exc

    def local_path(self, sha256: str) -> Path | None:
        return self.path_for(sha256)

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    def _temporaries(self) -> Iterator[Path]:
        """Streamed writes in ``tmp/`` and batch writes staged beside their addresses."""
        yield from self.tmp_dir.iterdir()
        for first in self.root.iterdir():
            if len(first.name) == 2 and first.is_dir():
                yield from first.glob(f".*{PART_SUFFIX}")

    def iter_hashes(self) -> Iterator[tuple[str, float]]:
        for first in self.root.iterdir():
            if len(first.name) != 2 or not first.is_dir():
                continue
            for path in first.iterdir():
                if len(path.name) == 64:
                    yield path.name, path.stat().st_mtime

    def remove_stale_temporaries(self, older_than_seconds: float, *, dry_run: bool = False) -> int:
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in self._temporaries():
            if path.stat().st_mtime < cutoff:
                if not dry_run:
                    path.unlink(missing_ok=True)
                removed += 1
        return removed


class _RemoteWriter:
    """Stages the bytes in a local temporary file, then uploads them once."""

    def __init__(self, store: RemoteBlobStore) -> None:
        self._store = store
        self._local = _LocalWriter(store.staging)

    def write(self, data: bytes) -> None:
        self._local.write(data)

    def commit(self) -> str:
        sha256 = self._local.commit()
        staged = self._store.staging.path_for(sha256)
        try:
            # Uploading again even when the object exists refreshes its modification
            # time, which keeps garbage collection away from a blob an import re-uses.
            self._store.upload(staged, sha256)
        finally:
            staged.unlink(missing_ok=True)
        return sha256

    def abort(self) -> None:
        self._local.abort()


class _RemoteBatch:
    """Uploads at once: an object store makes each upload durable by itself."""

    def __init__(self, store: RemoteBlobStore) -> None:
        self._store = store

    def put_bytes(self, data: bytes) -> str:
        return self._store.put_bytes(data)

    def flush(self) -> None:
        return None

    def abort(self) -> None:
        return None


class RemoteBlobStore:
    """Blobs in any fsspec filesystem, such as an S3-compatible bucket.

    Uploads go to a temporary key first and are then moved to their address,
    so a reader of the address never sees a partial object.

    Args:
        url: ``protocol://bucket/prefix``.
        storage_options: Passed to fsspec (endpoint, credentials).
        staging_dir: Local scratch for streaming writes.
    """

    def __init__(
        self,
        url: str,
        *,
        storage_options: dict[str, Any] | None = None,
        staging_dir: Path | None = None,
    ) -> None:
        self.fs, self.prefix = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.prefix = self.prefix.rstrip("/")
        staging = staging_dir or Path(os.environ.get("KAI_DATA_DIR", "./kai-data")) / "staging"
        self.staging = LocalBlobStore(staging)

    def _key(self, sha256: str) -> str:
        _check_address(sha256)
        return f"{self.prefix}/{sha256[:2]}/{sha256}"

    def upload(self, path: Path, sha256: str) -> None:
        """Upload a local file to the blob's address through a temporary key."""
        tmp_key = f"{self.prefix}/tmp/{secrets.token_hex(16)}"
        self.fs.put_file(str(path), tmp_key)
        try:
            self.fs.mv(tmp_key, self._key(sha256))
        except BaseException:
            self.fs.rm_file(tmp_key)
            raise

    def writer(self) -> BlobWriter:
        return _RemoteWriter(self)

    def batch(self) -> BlobBatch:
        return _RemoteBatch(self)

    def put_bytes(self, data: bytes) -> str:
        writer = self.writer()
        writer.write(data)
        return writer.commit()

    def put_file(self, path: Path) -> str:
        writer = self.writer()
        try:
            with open(path, "rb") as source:
                while chunk := source.read(CHUNK_BYTES):
                    writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def exists(self, sha256: str) -> bool:
        return bool(self.fs.exists(self._key(sha256)))

    def open(self, sha256: str) -> IO[bytes]:
        try:
            handle: IO[bytes] = self.fs.open(self._key(sha256), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"Blob {sha256} is not stored") from exc
        return handle

    def read_bytes(self, sha256: str) -> bytes:
        with self.open(sha256) as source:
            return source.read()

    def size(self, sha256: str) -> int:
        try:
            return int(self.fs.size(self._key(sha256)))
        except FileNotFoundError as exc:
            raise NotFound(f"Blob {sha256} is not stored") from exc

    def local_path(self, sha256: str) -> Path | None:
        return None

    def delete(self, sha256: str) -> None:
        key = self._key(sha256)
        if self.fs.exists(key):
            self.fs.rm_file(key)

    def iter_hashes(self) -> Iterator[tuple[str, float]]:
        for key, info in self.fs.find(self.prefix, detail=True).items():
            name = key.rsplit("/", 1)[-1]
            if len(name) == 64 and "/tmp/" not in key:
                yield name, _modified_seconds(info)

    def remove_stale_temporaries(self, older_than_seconds: float, *, dry_run: bool = False) -> int:
        cutoff = time.time() - older_than_seconds
        removed = self.staging.remove_stale_temporaries(older_than_seconds, dry_run=dry_run)
        tmp_prefix = f"{self.prefix}/tmp"
        if not self.fs.exists(tmp_prefix):
            return removed
        for key, info in self.fs.find(tmp_prefix, detail=True).items():
            if _modified_seconds(info) < cutoff:
                if not dry_run:
                    self.fs.rm_file(key)
                removed += 1
        return removed


def _modified_seconds(info: dict[str, Any]) -> float:
    modified = info.get("LastModified") or info.get("mtime") or info.get("created")
    if modified is None:
        return time.time()
    if isinstance(modified, int | float):
        return float(modified)
    return float(modified.timestamp())
