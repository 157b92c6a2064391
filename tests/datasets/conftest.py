"""Fixtures for dataset service tests: a runtime-free way to run the dataset jobs."""

from __future__ import annotations

from typing import Any

import pytest
from dataset_factories import RunImport, job_context

from kai.config import Settings
from kai.datasets import ImportSource, start_import
from kai.datasets.handlers import run_import
from kai.db.engine import Database
from kai.storage.blobs import LocalBlobStore


@pytest.fixture
def run_dataset_import(settings: Settings, database: Database, blobs: LocalBlobStore) -> RunImport:
    """Start an import of ``source`` and run its handler here; returns (dataset id, result)."""

    def run(source: ImportSource, *, name: str = "tiles") -> tuple[int, dict[str, Any]]:
        with database.session() as session:
            dataset, job = start_import(session, name=name, description="", source=source)
            dataset_id, job_id = dataset.id, job.id
        return dataset_id, run_import(job_context(settings, database, blobs, job_id))

    return run
