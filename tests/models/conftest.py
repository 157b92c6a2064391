"""Fixtures for model registry tests: importing a file through the real job, and a plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from model_factories import ImportModel, run_model_job

from kai.config import Settings
from kai.db.engine import Database
from kai.models import ModelSource, SourceKind, start_model_import
from kai.models.formats import ImportOptions
from kai.storage.blobs import LocalBlobStore

PLUGIN_SOURCE_DIR = Path(__file__).parent / "plugin_npz"


@pytest.fixture
def import_model(settings: Settings, database: Database, blobs: LocalBlobStore) -> ImportModel:
    """Queue an import of ``path`` and run its job here; returns (model id, result, error)."""

    def run(
        path: Path, *, model_id: int | None = None, name: str = "tiles", **options: Any
    ) -> tuple[int, dict[str, Any] | None, str | None]:
        source = ModelSource(kind=SourceKind.UPLOAD, path=str(path), original_name=path.name)
        with database.session() as session:
            model, job = start_model_import(
                session,
                name=name,
                description="",
                source=source,
                options=ImportOptions(**options),
                model_id=model_id,
            )
            found_id, job_id, config = model.id, job.id, dict(job.config)
        result, error = run_model_job(settings, database, blobs, job_id, config)
        return found_id, result, error

    return run


@pytest.fixture
def npz_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Install the test plugin as a distribution declaring a ``kai.model_formats`` entry point."""
    site = tmp_path / "site"
    dist_info = site / "kai_npz_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: kai-npz-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[kai.model_formats]\nnpz_linear = kai_npz_linear:NpzLinearFormat\n"
    )
    monkeypatch.syspath_prepend(str(PLUGIN_SOURCE_DIR))
    monkeypatch.syspath_prepend(str(site))
    return "npz_linear"
