"""Metadata database: engine, sessions, ORM tables and migrations."""

from kai.db.engine import Database, create_database

__all__ = ["Database", "create_database"]
