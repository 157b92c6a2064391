"""Job kinds for dataset tests that run jobs in real child processes.

Spawned job processes import this module by name, so it holds only
module-level functions.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from kai.datasets import IMPORT_JOB, latest_version, register_job_handlers
from kai.datasets.handlers import fail_import, run_import
from kai.db.tables import Dataset
from kai.jobs.context import JobContext
from kai.jobs.registry import JobRegistry
from kai.storage.blobs import BlobWriter, LocalBlobStore

TRAIN_JOB = "test.train"
STALL_AFTER_WRITES = 60
GATE_NAME = "ingest-stalls-while-this-exists"


def create_registry() -> JobRegistry:
    """Kai's dataset kinds and a stand-in for training that reads the dataset it waited for."""
    registry = JobRegistry()
    register_job_handlers(registry)
    registry.register(TRAIN_JOB, describe_dataset)
    return registry


def create_stalling_registry() -> JobRegistry:
    """The real import, on a blob store that hangs after a few writes while the gate file exists.

    The gate is ``<data dir>/ingest-stalls-while-this-exists``; a test holds an
    attempt in the middle of its ingest with it, as a hung disk would.
    """
    registry = JobRegistry()
    registry.register(IMPORT_JOB, stalling_import, on_failure=fail_import)
    return registry


def describe_dataset(ctx: JobContext) -> dict[str, Any]:
    """What a training job would find: the dataset's status and latest version."""
    dataset_id = int(ctx.config["datasetId"])
    with ctx.db.session() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        version = latest_version(session, dataset_id)
        return {
            "status": dataset.status.value,
            "version": version.number if version else None,
            "sampleCount": version.sample_count if version else 0,
        }


def stalling_import(ctx: JobContext) -> dict[str, Any]:
    assert isinstance(ctx.blobs, LocalBlobStore)
    gate = ctx.settings.resolved_data_dir / GATE_NAME
    blobs = _StallingBlobStore(ctx.blobs.root, gate)
    return run_import(dataclasses.replace(ctx, blobs=blobs))


class _StallingBlobStore(LocalBlobStore):
    """A real local store whose writers stall before committing while the gate exists."""

    def __init__(self, root: Path, gate: Path) -> None:
        super().__init__(root)
        self.gate = gate
        self._commits = 0
        self._lock = threading.Lock()

    def writer(self) -> BlobWriter:
        return _StallingWriter(super().writer(), self)

    def stall_if_gated(self) -> None:
        with self._lock:
            self._commits += 1
            stall = self._commits > STALL_AFTER_WRITES
        while stall and self.gate.exists():
            time.sleep(0.05)


class _StallingWriter:
    def __init__(self, inner: BlobWriter, store: _StallingBlobStore) -> None:
        self._inner = inner
        self._store = store

    def write(self, data: bytes) -> None:
        self._inner.write(data)

    def commit(self) -> str:
        # The bytes wait in a temporary file, as a hung disk would leave them.
        self._store.stall_if_gated()
        return self._inner.commit()

    def abort(self) -> None:
        self._inner.abort()
