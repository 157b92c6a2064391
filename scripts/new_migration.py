"""Autogenerate an Alembic revision from the difference between tables.py and a fresh schema.

Usage: .venv/bin/python scripts/new_migration.py "what changed" [--rev-id ID]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
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
    _tidy(Path(__file__).resolve().parents[1] / "src" / "kai" / "db" / "migrations" / "versions")


def _tidy(folder: Path) -> None:
    """Format the generated script the way the rest of the code is formatted."""
    ruff = shutil.which("ruff") or str(Path(__file__).resolve().parents[1] / ".venv/bin/ruff")
    subprocess.run([ruff, "check", "--fix", "--quiet", str(folder)], check=False)
    subprocess.run([ruff, "format", "--quiet", str(folder)], check=False)


if __name__ == "__main__":
    main()
