"""Apply Alembic migrations once at start, under a lock.

Several processes may start at once (an API replica, workers, the CLI); the
first to take the lock migrates and the others find nothing left to do.
SQLite uses an exclusive file lock beside the database; PostgreSQL uses an
advisory lock held on the migrating connection.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from kai.db.engine import Database

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PG_MIGRATION_LOCK_ID = 0x4B41494D  # "KAIM"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at Kai's migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def migrate(db: Database) -> None:
    """Bring the schema to the newest revision."""
    with _migration_lock(db), db.engine.connect() as connection:
        command.upgrade(alembic_config(connection), "head")
        connection.commit()
    logger.info("Database schema is current", extra={"database": db.engine.url.render_as_string()})


@contextmanager
def _migration_lock(db: Database) -> Iterator[None]:
    if db.is_sqlite:
        database_path = Path(db.engine.url.database or "kai.db")
        database_path.parent.mkdir(parents=True, exist_ok=True)
        with open(database_path.with_suffix(".migrate.lock"), "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        return
    with db.engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": PG_MIGRATION_LOCK_ID})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": PG_MIGRATION_LOCK_ID})
            connection.commit()
