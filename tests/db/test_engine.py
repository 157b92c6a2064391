"""The metadata database: migrations under a lock, and SQLite under concurrent writers."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from kai.config import Settings
from kai.db.engine import Database
from kai.db.migrate import migrate
from kai.db.tables import Setting


def _migrate_in_child(url: str) -> None:
    migrate(Database(url))


def _write_settings_in_child(url: str, prefix: str, count: int) -> None:
    db = Database(url)
    for index in range(count):
        with db.session() as session:
            session.add(Setting(key=f"{prefix}-{index}", value="x"))
    db.dispose()


@pytest.mark.db
def test_migrations_create_every_table(database: Database) -> None:
    names = set(inspect(database.engine).get_table_names())

    assert {"users", "jobs", "job_events", "datasets", "dataset_versions", "samples"} <= names
    assert "alembic_version" in names


def test_concurrent_processes_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kai.db'}"
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_migrate_in_child, args=(url,)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)

    assert [child.exitcode for child in children] == [0, 0, 0]
    db = Database(url)
    with db.engine.connect() as connection:
        versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    assert len(versions) == 1


def test_sqlite_serialises_concurrent_writers_without_lock_errors(settings: Settings) -> None:
    url = settings.resolved_database_url
    migrate(Database(url))
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_write_settings_in_child, args=(url, f"p{n}", 40)) for n in range(2)
    ]
    threads_db = Database(url)
    errors: list[BaseException] = []

    def write_in_thread(prefix: str) -> None:
        try:
            for index in range(40):
                with threads_db.session() as session:
                    count = session.scalar(select(func.count()).select_from(Setting))
                    session.add(Setting(key=f"{prefix}-{index}", value=str(count)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write_in_thread, args=(f"t{n}",)) for n in range(4)]
    for worker in [*processes, *threads]:
        worker.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.join(120)

    assert errors == []
    assert [process.exitcode for process in processes] == [0, 0]
    with threads_db.session() as session:
        assert session.scalar(select(func.count()).select_from(Setting)) == 6 * 40
