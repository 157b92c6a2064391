"""Autogenerate an Alembic revision from the difference between tables.py and a fresh schema.

Usage: .venv/bin/python scripts/new_migration.py "what changed" [--rev-id ID]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alembic import command

from kai.db.engine import Database
from kai.db.migrate import alembic_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("message")
    parser.add_argument("--rev-id", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'schema.db'}")
        with db.engine.connect() as connection:
            config = alembic_config(connection)
            command.upgrade(config, "head")
            command.revision(config, message=args.message, autogenerate=True, rev_id=args.rev_id)
            connection.commit()


if __name__ == "__main__":
    main()
