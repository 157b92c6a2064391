"""Periodic garbage collection in the workers, by one process at a time.

Every worker's maintenance thread calls :meth:`PeriodicCollector.tick`. A
collection is due ``gc_interval_seconds`` after the previous one ended (the
first one, that long after the first worker started). The collector lease
says who is collecting: one row in the ``settings`` table holding its owner,
when the lease expires and when the next collection is due. It is read and
changed inside one write transaction (``BEGIN IMMEDIATE`` on SQLite, a row
lock on PostgreSQL), so however many workers on however many machines find
a collection due, one takes the lease. The holder collects in a thread of its
own, so the reconciler keeps its pace, and renews the lease while it works;
if it dies, the lease expires and another worker collects at its next check.

``kai gc`` takes the same lease without waiting for the schedule, so it never
runs beside a worker's collection. A collection sweeps the uploads and work
folders of the machine it runs on; blobs and database rows are shared.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Setting, utcnow
from kai.errors import Conflict
from kai.jobs.environment import JobEnvironment
from kai.jobs.leases import new_lease_owner
from kai.storage.blobs import BlobStore
from kai.storage.gc import GcReport, collect_garbage

__all__ = [
    "LEASE_KEY",
    "CollectorLease",
    "PeriodicCollector",
    "claim_collection",
    "collect_now",
    "end_collection",
    "read_collector_lease",
    "renew_collection",
]

logger = logging.getLogger(__name__)

LEASE_KEY = "gc.collector"
RETRY_AFTER_FAILURE_SECONDS = 15 * 60.0


@dataclass(frozen=True)
class CollectorLease:
    """The collector lease row.

    Attributes:
        next_run_at: When the next periodic collection is due.
        owner: Who is collecting, or None.
        expires_at: When the owner's lease runs out unless renewed.
    """

    next_run_at: datetime
    owner: str | None = None
    expires_at: datetime | None = None

    def is_held(self, now: datetime) -> bool:
        """Whether someone holds the lease at ``now``."""
        return self.owner is not None and self.expires_at is not None and self.expires_at > now

    def to_json(self) -> str:
        """The row's stored value."""
        expires = self.expires_at.isoformat() if self.expires_at else None
        record = {"nextRunAt": self.next_run_at.isoformat(), "owner": self.owner}
        return json.dumps(record | {"expiresAt": expires})

    @classmethod
    def from_json(cls, value: str) -> CollectorLease:
        """Read a stored value."""
        record = json.loads(value)
        expires = record.get("expiresAt")
        return cls(
            next_run_at=datetime.fromisoformat(record["nextRunAt"]),
            owner=record.get("owner"),
            expires_at=datetime.fromisoformat(expires) if expires else None,
        )


def claim_collection(
    db: Database,
    *,
    owner: str,
    lease_seconds: float,
    interval_seconds: float,
    force: bool = False,
    now: datetime | None = None,
) -> bool:
    """Take the collector lease if a collection is due and nobody holds it.

    The first call on a database only schedules the first collection,
    ``interval_seconds`` from now.

    Args:
        db: The metadata database.
        owner: The taker, from :func:`~kai.jobs.leases.new_lease_owner`.
        lease_seconds: How long the lease lasts unless renewed.
        interval_seconds: The period; schedules the first collection.
        force: Take the lease even if no collection is due yet.
        now: The time to compare with; the current time by default.

    Returns:
        Whether ``owner`` now holds the lease.
    """
    moment = now or utcnow()
    with db.session() as session:
        row = _locked_row(session)
        if row is None:
            first = CollectorLease(next_run_at=moment + timedelta(seconds=interval_seconds))
            taken = _taken(first, owner, moment, lease_seconds) if force else first
            return _insert(session, taken) and force
        lease = CollectorLease.from_json(row.value)
        if lease.is_held(moment) or (not force and moment < lease.next_run_at):
            return False
        row.value = _taken(lease, owner, moment, lease_seconds).to_json()
    logger.debug("Collector lease taken", extra={"owner": owner})
    return True


def renew_collection(db: Database, *, owner: str, lease_seconds: float) -> bool:
    """Extend the lease if ``owner`` still holds it; returns whether it does."""
    moment = utcnow()
    with db.session() as session:
        row = _locked_row(session)
        if row is None:
            return False
        lease = CollectorLease.from_json(row.value)
        if lease.owner != owner:
            return False
        row.value = _taken(lease, owner, moment, lease_seconds).to_json()
    return True


def end_collection(db: Database, *, owner: str, next_run_in_seconds: float) -> None:
    """Give the lease back and schedule the next collection, if ``owner`` still holds it."""
    next_run_at = utcnow() + timedelta(seconds=next_run_in_seconds)
    with db.session() as session:
        row = _locked_row(session)
        if row is None or CollectorLease.from_json(row.value).owner != owner:
            logger.warning("The collector lease was lost before the collection ended")
            return
        row.value = CollectorLease(next_run_at=next_run_at).to_json()


def read_collector_lease(db: Database) -> CollectorLease | None:
    """The collector lease row, or None before the first worker scheduled a collection."""
    with db.session() as session:
        value = session.scalar(select(Setting.value).where(Setting.key == LEASE_KEY))
    return CollectorLease.from_json(value) if value is not None else None


def collect_now(
    db: Database,
    blobs: BlobStore,
    settings: Settings,
    *,
    grace_seconds: float,
    dry_run: bool = False,
) -> GcReport:
    """Collect garbage in this process now, under the collector lease unless ``dry_run``.

    Raises:
        Conflict: Another process is collecting.
    """
    if dry_run:
        return _collect(db, blobs, settings, grace_seconds=grace_seconds, dry_run=True)
    owner = new_lease_owner()
    lease_seconds = settings.lease_seconds
    interval = settings.gc_interval_seconds
    if not claim_collection(
        db, owner=owner, lease_seconds=lease_seconds, interval_seconds=interval, force=True
    ):
        raise Conflict(_busy_message(read_collector_lease(db)))
    return _collect_under_lease(db, blobs, settings, owner=owner, grace_seconds=grace_seconds)


class PeriodicCollector:
    """A worker's share of periodic garbage collection.

    Args:
        env: The worker's collaborators; ``settings.gc_interval_seconds``
            paces collections (0 turns them off) and ``blob_grace_seconds``
            protects young blobs and scratch files.
    """

    def __init__(self, env: JobEnvironment) -> None:
        self._env = env
        self._owner = new_lease_owner()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether this process is collecting now."""
        return self._thread is not None and self._thread.is_alive()

    def tick(self) -> bool:
        """Start a collection in a thread if one is due and this process takes the lease.

        Returns:
            Whether a collection started.
        """
        settings = self._env.settings
        if settings.gc_interval_seconds <= 0 or self.running:
            return False
        claimed = claim_collection(
            self._env.db,
            owner=self._owner,
            lease_seconds=settings.lease_seconds,
            interval_seconds=settings.gc_interval_seconds,
        )
        if not claimed:
            return False
        self._thread = threading.Thread(target=self._collect, name="kai-gc", daemon=True)
        self._thread.start()
        return True

    def _collect(self) -> None:
        env = self._env
        grace_seconds = env.settings.blob_grace_seconds
        try:
            _collect_under_lease(
                env.db, env.blobs, env.settings, owner=self._owner, grace_seconds=grace_seconds
            )
        except Exception:
            # A failed collection must not end the worker; the lease row says when to retry.
            logger.exception("Periodic garbage collection failed")


def _collect_under_lease(
    db: Database,
    blobs: BlobStore,
    settings: Settings,
    *,
    owner: str,
    grace_seconds: float,
) -> GcReport:
    """Collect while a thread renews the lease, then schedule the next collection."""
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew_until,
        args=(db, owner, settings.lease_seconds, stop),
        name="kai-gc-lease",
        daemon=True,
    )
    renewer.start()
    next_run_in = min(settings.gc_interval_seconds, RETRY_AFTER_FAILURE_SECONDS)
    try:
        report = _collect(db, blobs, settings, grace_seconds=grace_seconds, dry_run=False)
        next_run_in = settings.gc_interval_seconds
        return report
    finally:
        stop.set()
        renewer.join()
        end_collection(db, owner=owner, next_run_in_seconds=next_run_in)


def _collect(
    db: Database, blobs: BlobStore, settings: Settings, *, grace_seconds: float, dry_run: bool
) -> GcReport:
    return collect_garbage(
        db,
        blobs,
        grace_seconds=grace_seconds,
        uploads_dir=settings.uploads_dir,
        work_dir=settings.work_dir,
        dry_run=dry_run,
    )


def _renew_until(db: Database, owner: str, lease_seconds: float, stop: threading.Event) -> None:
    while not stop.wait(lease_seconds / 3):
        try:
            held = renew_collection(db, owner=owner, lease_seconds=lease_seconds)
        except SQLAlchemyError as exc:
            # The lease outlives a missed renewal; the next one tells whether it still holds.
            logger.warning("Could not renew the collector lease: %s", exc)
            continue
        if not held:
            logger.warning("The collector lease was taken over; this collection goes on")
            return


def _locked_row(session: Session) -> Setting | None:
    return session.scalar(select(Setting).where(Setting.key == LEASE_KEY).with_for_update())


def _insert(session: Session, lease: CollectorLease) -> bool:
    """Add the lease row; False when another process added it first."""
    try:
        with session.begin_nested():
            session.add(Setting(key=LEASE_KEY, value=lease.to_json()))
    except IntegrityError:
        return False
    return True


def _taken(
    lease: CollectorLease, owner: str, now: datetime, lease_seconds: float
) -> CollectorLease:
    expires_at = now + timedelta(seconds=lease_seconds)
    return CollectorLease(next_run_at=lease.next_run_at, owner=owner, expires_at=expires_at)


def _busy_message(lease: CollectorLease | None) -> str:
    if lease is None or lease.owner is None or lease.expires_at is None:
        return "Another process is collecting garbage; try again in a minute"
    until = lease.expires_at.strftime("%H:%M:%S UTC")
    return (
        f"Garbage collection is already running in {lease.owner} (its lease runs until "
        f"{until} unless renewed); try again when it ends"
    )
