"""Fixtures of the training tests: a job environment with every job kind registered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kai.config import Settings
from kai.db.engine import Database
from kai.jobs.environment import JobEnvironment, create_job_environment
from kai.jobs.registry import JobRegistry
from kai.registrations import register_job_handlers


@pytest.fixture
def env(settings: Settings, database: Database) -> Iterator[JobEnvironment]:
    registry = JobRegistry()
    register_job_handlers(registry)
    environment = create_job_environment(settings, registry)
    yield environment
    environment.close()
