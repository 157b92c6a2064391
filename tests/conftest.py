"""Shared fixtures: every test gets its own data dir, database and blob store.

Tests marked ``db`` run on SQLite by default; with ``KAI_TEST_POSTGRES`` set to
a server URL they run on a fresh PostgreSQL database made for the session and
dropped at its end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from kai.config import Settings
from kai.db.engine import Database
from kai.db.migrate import migrate
from kai.storage.blobs import LocalBlobStore

POSTGRES_SERVER = os.environ.get("KAI_TEST_POSTGRES")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test session, or None for SQLite."""
    if not POSTGRES_SERVER:
        yield None
        return
    name = f"kai_test_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_SERVER.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data dir for one test."""
    path = tmp_path / "kai-data"
    path.mkdir()
    return path


@pytest.fixture
def settings(data_dir: Path, postgres_url: str | None, request: pytest.FixtureRequest) -> Settings:
    """Settings pointing at the test's data dir and database."""
    database_url = None
    if postgres_url and request.node.get_closest_marker("db"):
        database_url = postgres_url
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        lease_seconds=5.0,
        heartbeat_seconds=0.5,
        poll_seconds=0.1,
        embedding_backbone="random:test_efficientnet",
        embedding_image_size_px=32,
    )


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    """A migrated database; on PostgreSQL its tables are emptied afterwards."""
    db = Database(settings.resolved_database_url)
    migrate(db)
    try:
        yield db
    finally:
        if not db.is_sqlite:
            _truncate_all(db)
        db.dispose()


@pytest.fixture
def blobs(settings: Settings) -> LocalBlobStore:
    """A local blob store inside the test's data dir."""
    return LocalBlobStore(Path(settings.resolved_storage_url))


def _truncate_all(db: Database) -> None:
    from kai.db.tables import Base

    names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with db.engine.begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
