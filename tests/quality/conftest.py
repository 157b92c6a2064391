"""Fixtures for quality tests: the planted dataset, imported and analysed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from quality_factories import PlantedSet, import_zip, job_context, planted_set, write_zip

from kai.config import Settings
from kai.db.engine import Database
from kai.quality.jobs import run_analysis
from kai.storage.blobs import LocalBlobStore


@pytest.fixture
def planted() -> PlantedSet:
    """The planted files and which carry which flaw."""
    return planted_set()


@pytest.fixture
def analysed(
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    planted: PlantedSet,
    tmp_path: Path,
) -> tuple[int, dict[str, Any]]:
    """The planted set imported, with the analysis the import queued run here."""
    dataset_id, result = import_zip(
        settings, database, blobs, write_zip(tmp_path / "p.zip", planted.files)
    )
    quality_job_id = int(str(result["qualityJobId"]))
    return dataset_id, run_analysis(job_context(settings, database, blobs, quality_job_id))
