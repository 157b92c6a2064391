"""``kai dataset``: upload with a progress bar on a stopped server's data dir, then edit."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from kai.cli.main import app
from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Sample

pytestmark = pytest.mark.db


def image_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), ((seed * 41) % 256, (seed * 13) % 256, 7)).save(buffer, "JPEG")
    return buffer.getvalue()


def make_archive(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for offset, label in enumerate(("stone", "wood")):
            for index in range(4):
                archive.writestr(f"{label}/{index}.jpg", image_bytes(offset * 10 + index))
    return path


def kai(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {"KAI_DATA_DIR": str(settings.data_dir), "KAI_POLL_SECONDS": "0.1"}
    if settings.database_url:
        env["KAI_DATABASE_URL"] = settings.database_url
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_upload_runs_the_import_inline_and_edits_work(
    tmp_path: Path, settings: Settings, database: Database
) -> None:
    archive = make_archive(tmp_path / "tiles.zip")
    code, out, err = kai(settings, "dataset", "upload", str(archive), "--name", "tiles")
    assert code == 0, err
    dataset_id = out.strip().splitlines()[-1]
    assert archive.exists()  # the user's file is read, never moved or deleted

    code, out, _ = kai(settings, "dataset", "show", dataset_id)
    assert code == 0 and "tiles" in out and "stone" in out and "8 samples" in out

    with database.session() as session:
        uid = session.scalars(select(Sample.uid).where(Sample.label == "stone")).first()
    assert uid is not None
    code, out, err = kai(
        settings, "dataset", "edit", dataset_id, "--relabel", f"{uid}=wood", "--message", "fix"
    )
    assert code == 0, err
    assert "Version 2" in out

    code, out, _ = kai(settings, "dataset", "diff", dataset_id, "1", "2")
    assert code == 0 and "relabelled" in out
    code, out, _ = kai(settings, "dataset", "versions", dataset_id)
    assert code == 0 and "fix" in out
    code, out, _ = kai(settings, "dataset", "list")
    assert code == 0 and "tiles" in out


def test_upload_of_a_one_class_archive_fails_with_a_message(
    tmp_path: Path, settings: Settings, database: Database
) -> None:
    path = tmp_path / "one.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("stone/a.jpg", image_bytes(1))
    code, _, err = kai(settings, "dataset", "upload", str(path), "--name", "one")
    assert code == 1 and "at least two classes" in err
