"""Fixtures for premade source tests: private hub caches and a way to run the import job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dataset_factories import job_context
from premade_runs import RunPremade

from kai.config import Settings
from kai.datasets.sources import PremadeOptions, resolve_request
from kai.datasets.sources.premade import run_premade_import, start_premade_import
from kai.db.engine import Database
from kai.db.tables import Dataset
from kai.errors import KaiError
from kai.storage.blobs import LocalBlobStore


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face hub cache used by the client, with the hub unreachable."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # Nothing listens on port 9: the client meets a refused connection, as with no network.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    return cache


@pytest.fixture
def kaggle_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty kagglehub cache, with Kaggle's API pointed at a closed local port."""
    cache = tmp_path / "kagglehub"
    cache.mkdir()
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    return cache


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """Scratch space for the clients."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def run_premade(settings: Settings, database: Database, blobs: LocalBlobStore) -> RunPremade:
    """Queue a premade import and run its job here; returns (dataset id, result, error)."""

    def run(
        source_dataset_id: str, **options: Any
    ) -> tuple[int, dict[str, Any] | None, str | None]:
        request = resolve_request(source_dataset_id, PremadeOptions(**options))
        with database.session() as session:
            dataset, job = start_premade_import(session, request=request)
            dataset_id, job_id = dataset.id, job.id
        ctx = job_context(settings, database, blobs, job_id)
        try:
            return dataset_id, run_premade_import(ctx), None
        except KaiError as exc:
            from kai.datasets.handlers import fail_import

            fail_import(ctx, exc.message)
            with database.session() as session:
                failed = session.get(Dataset, dataset_id)
                assert failed is not None and failed.error == exc.message
            return dataset_id, None, exc.message

    return run
