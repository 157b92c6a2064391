"""Garbage collection: blobs nothing refers to, unfinished writes and stale scratch files.

A blob may go once no column in :data:`BLOB_REFERENCES` names it and it is
older than the grace period. The grace period protects work in flight: an
import stores its blobs first and commits the rows that refer to them
later, so a young blob without references is normal. (This relies on the
store giving a blob a fresh modification time whenever a write stores it,
including a write that finds it already there.)

Every column that holds a blob address is listed in :data:`BLOB_REFERENCES`;
a new one (model files, exports) is added there, or its blobs will be
collected.

Scratch space is swept too: a top-level entry of the uploads or work folder
is removed when no queued or running job claims it and nothing in it
changed within the grace period. A job claims ``work/<job id>`` and any path
its configuration names, such as the upload folder an import reads.

A dry run finds and counts the same things and removes nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from kai.db.engine import Database
from kai.db.tables import Blob, EvaluationPlot, Job, JobState, ModelArtifact, Sample
from kai.errors import NotFound
from kai.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

BLOB_REFERENCES: tuple[InstrumentedAttribute[str], ...] = (
    Sample.blob_sha256,
    Sample.reduced_sha256,
    ModelArtifact.blob_sha256,
    EvaluationPlot.blob_sha256,
)
"""Every column whose values are blob addresses."""

BATCH_SIZE = 500
_ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


@dataclass
class GcReport:
    """What one collection found and removed.

    Attributes:
        blobs_deleted: Unreferenced blobs past the grace period, removed.
        blob_bytes_freed: Their total size.
        blobs_referenced: Blobs past the grace period kept because a row names them.
        blobs_young: Blobs kept because they are within the grace period.
        temporaries_removed: Unfinished writes removed from the store.
        scratch_removed: Stale top-level entries removed from the uploads and work folders.
        scratch_bytes_freed: Their total size.
        dry_run: Whether nothing was removed: the counts say what a collection would remove.
    """

    blobs_deleted: int = 0
    blob_bytes_freed: int = 0
    blobs_referenced: int = 0
    blobs_young: int = 0
    temporaries_removed: int = 0
    scratch_removed: int = 0
    scratch_bytes_freed: int = 0
    dry_run: bool = False

    @property
    def bytes_freed(self) -> int:
        """Bytes freed in the store and the scratch folders together."""
        return self.blob_bytes_freed + self.scratch_bytes_freed


def collect_garbage(
    db: Database,
    blobs: BlobStore,
    *,
    grace_seconds: float,
    uploads_dir: Path | None = None,
    work_dir: Path | None = None,
    dry_run: bool = False,
) -> GcReport:
    """Remove unreferenced old blobs, stale temporary writes and stale scratch files.

    Args:
        db: The metadata database, source of blob references and active jobs.
        blobs: The blob store to sweep.
        grace_seconds: Anything younger than this is kept
            (``KAI_BLOB_GRACE_SECONDS``).
        uploads_dir: The uploads folder to sweep, if any.
        work_dir: The jobs' work folder to sweep, if any.
        dry_run: Count what would be removed without removing it.

    Returns:
        Counts and bytes of what was kept and removed.
    """
    report = GcReport(dry_run=dry_run)
    cutoff = time.time() - grace_seconds
    for batch in _batched(_old_blobs(blobs, cutoff, report), BATCH_SIZE):
        _delete_unreferenced(db, blobs, batch, report)
    report.temporaries_removed = blobs.remove_stale_temporaries(grace_seconds, dry_run=dry_run)

    job_ids, claimed = _active_jobs(db)
    if work_dir is not None:
        claimed |= {work_dir.resolve() / str(job_id) for job_id in job_ids}
    for folder in (uploads_dir, work_dir):
        if folder is not None and folder.is_dir():
            _sweep_scratch(folder, cutoff, claimed, report)
    _log_summary(report)
    return report


def _log_summary(report: GcReport) -> None:
    logger.info(
        "Garbage collection %s %d blobs (%d bytes), %d temporaries and %d scratch entries "
        "(%d bytes); kept %d referenced and %d young blobs",
        "(dry run) would remove" if report.dry_run else "removed",
        report.blobs_deleted,
        report.blob_bytes_freed,
        report.temporaries_removed,
        report.scratch_removed,
        report.scratch_bytes_freed,
        report.blobs_referenced,
        report.blobs_young,
        extra={
            "blobs_deleted": report.blobs_deleted,
            "bytes_freed": report.bytes_freed,
            "dry_run": report.dry_run,
        },
    )


# Blobs.


def _old_blobs(blobs: BlobStore, cutoff: float, report: GcReport) -> Iterator[str]:
    for sha256, modified in blobs.iter_hashes():
        if modified < cutoff:
            yield sha256
        else:
            report.blobs_young += 1


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _delete_unreferenced(
    db: Database, blobs: BlobStore, batch: list[str], report: GcReport
) -> None:
    """Delete the batch's unreferenced blobs inside the transaction that found them unreferenced.

    On SQLite that transaction holds the write lock, so no row naming a blob
    can be committed between the check and the deletion.
    """
    with db.session() as session:
        referenced = _referenced(session, batch)
        report.blobs_referenced += len(referenced)
        unreferenced = [sha256 for sha256 in batch if sha256 not in referenced]
        report.blobs_deleted += len(unreferenced)
        for sha256 in unreferenced:
            report.blob_bytes_freed += _size_or_zero(blobs, sha256)
            if not report.dry_run:
                blobs.delete(sha256)
                logger.debug("Deleted unreferenced blob %s", sha256)
        if unreferenced and not report.dry_run:
            session.execute(delete(Blob).where(Blob.sha256.in_(unreferenced)))


def _referenced(session: Session, hashes: list[str]) -> set[str]:
    found: set[str] = set()
    for column in BLOB_REFERENCES:
        found.update(session.scalars(select(column).where(column.in_(hashes)).distinct()))
    return found


def _size_or_zero(blobs: BlobStore, sha256: str) -> int:
    try:
        return blobs.size(sha256)
    except NotFound:
        return 0


# Scratch folders.


def _active_jobs(db: Database) -> tuple[set[int], set[Path]]:
    """The ids of queued and running jobs, and every path their configurations name."""
    job_ids: set[int] = set()
    paths: set[Path] = set()
    with db.session() as session:
        rows = session.execute(select(Job.id, Job.config).where(Job.state.in_(_ACTIVE_STATES)))
        for job_id, config in rows:
            job_ids.add(job_id)
            paths.update(Path(value).resolve() for value in _strings(config) if "/" in value)
    return job_ids, paths


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _sweep_scratch(folder: Path, cutoff: float, claimed: set[Path], report: GcReport) -> None:
    for entry in folder.resolve().iterdir():
        if any(path == entry or entry in path.parents for path in claimed):
            continue
        newest, num_bytes = _newest_and_size(entry)
        if newest >= cutoff:
            continue
        if not report.dry_run:
            _remove(entry)
            logger.info("Removed stale scratch entry %s", entry, extra={"bytes": num_bytes})
        report.scratch_removed += 1
        report.scratch_bytes_freed += num_bytes


def _newest_and_size(entry: Path) -> tuple[float, int]:
    """The latest modification time in a file or folder tree, and its size in bytes."""
    stat = entry.lstat()
    if not entry.is_dir() or entry.is_symlink():
        return stat.st_mtime, stat.st_size
    newest, num_bytes = stat.st_mtime, 0
    for directory, folders, files in os.walk(entry):
        for name in folders:
            newest = max(newest, os.lstat(os.path.join(directory, name)).st_mtime)
        for name in files:
            child = os.lstat(os.path.join(directory, name))
            newest, num_bytes = max(newest, child.st_mtime), num_bytes + child.st_size
    return newest, num_bytes


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink(missing_ok=True)
