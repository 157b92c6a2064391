"""Job kinds for dataset tests that run jobs in real child processes.

Spawned job processes find the handlers by module and name, so they are
module-level functions of this module, which the tests' path makes importable.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from kai.datasets import IMPORT_JOB, latest_version, register_job_handlers
from kai.datasets.handlers import fail_import, run_import
from kai.db.tables import Dataset
from kai.jobs.context import JobContext
from kai.jobs.registry import JobRegistry
from kai.storage.blobs import BlobBatch, LocalBlobStore

TRAIN_JOB = "test.train"
SLOW_WRITE_SECONDS = 0.1
GATE_NAME = "disk-is-slow-while-this-exists"


def create_registry() -> JobRegistry:
    """Kai's dataset kinds and a stand-in for training that reads the dataset it waited for."""
    registry = JobRegistry()
    register_job_handlers(registry)
    registry.register(TRAIN_JOB, describe_dataset)
    return registry


def create_slow_disk_registry() -> JobRegistry:
    """The real import, on a blob store that writes slowly while the gate file exists.

    The gate is ``<data dir>/disk-is-slow-while-this-exists``; with it a test
    has seconds to act in the middle of an ingest, and without it the import
    runs at full speed.
    """
    registry = JobRegistry()
    registry.register(IMPORT_JOB, slow_disk_import, on_failure=fail_import)
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


def slow_disk_import(ctx: JobContext) -> dict[str, Any]:
    assert isinstance(ctx.blobs, LocalBlobStore)
    gate = ctx.settings.resolved_data_dir / GATE_NAME
    return run_import(dataclasses.replace(ctx, blobs=_SlowBlobStore(ctx.blobs.root, gate)))


class _SlowBlobStore(LocalBlobStore):
    """A real local store whose writes pause before they return while the gate exists."""

    def __init__(self, root: Path, gate: Path) -> None:
        super().__init__(root)
        self.gate = gate

    def pause_if_gated(self) -> None:
        if self.gate.exists():
            time.sleep(SLOW_WRITE_SECONDS)

    def batch(self) -> BlobBatch:
        return _SlowBatch(super().batch(), self)


class _SlowBatch:
    def __init__(self, inner: BlobBatch, store: _SlowBlobStore) -> None:
        self._inner = inner
        self._store = store

    def put_bytes(self, data: bytes) -> str:
        sha256 = self._inner.put_bytes(data)
        self._store.pause_if_gated()
        return sha256

    def flush(self) -> None:
        self._inner.flush()
