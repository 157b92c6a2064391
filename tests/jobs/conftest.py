"""Fixtures for the jobs tests: a registry of sample kinds and a worker environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sample_job_handlers

from kai.config import Settings
from kai.db.engine import Database
from kai.jobs.environment import JobEnvironment, create_job_environment
from kai.jobs.registry import JobRegistry


@pytest.fixture
def registry() -> JobRegistry:
    return sample_job_handlers.create_registry()


@pytest.fixture
def env(settings: Settings, database: Database, registry: JobRegistry) -> Iterator[JobEnvironment]:
    environment = create_job_environment(settings, registry)
    yield environment
    environment.close()


@pytest.fixture
def marker_dir(tmp_path: Path) -> Path:
    path = tmp_path / "markers"
    path.mkdir()
    return path
