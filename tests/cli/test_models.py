"""``kai model``: upload with --wait on a stopped server's data dir, then read it back."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kai.cli.main import app
from kai.config import Settings
from kai.db.engine import Database
from models.model_factories import garbage_file, linear_onnx_graph

pytestmark = pytest.mark.db


def kai(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {"KAI_DATA_DIR": str(settings.data_dir), "KAI_POLL_SECONDS": "0.1"}
    if settings.database_url:
        env["KAI_DATABASE_URL"] = settings.database_url
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_upload_waits_for_the_import_and_the_model_reads_back(
    tmp_path: Path, settings: Settings, database: Database
) -> None:
    path = tmp_path / "linear.onnx"
    path.write_bytes(linear_onnx_graph(3).SerializeToString())
    names = tmp_path / "classes.txt"
    names.write_text("stone\ntile\nwood\n")
    code, out, err = kai(
        settings, "model", "upload", str(path), "--name", "tiles", "--class-names", str(names)
    )
    assert code == 0, err
    model_id = out.strip().splitlines()[-1]
    assert path.exists()  # the user's file is copied, never moved or deleted

    code, out, _ = kai(settings, "model", "list")
    assert code == 0 and "tiles" in out and "onnx" in out
    code, out, _ = kai(settings, "model", "show", model_id)
    assert code == 0 and "ready" in out and "onnx" in out
    code, out, _ = kai(settings, "model", "versions", model_id)
    assert code == 0 and "uploaded" in out
    code, out, _ = kai(settings, "model", "card", model_id, "--raw")
    assert code == 0 and "# tiles (version 1)" in out and "stone, tile, wood" in out

    card = tmp_path / "card.md"
    card.write_text("# Tiles\n\nOur own words.\n")
    code, out, _ = kai(settings, "model", "card", model_id, "--set", str(card), "--raw")
    assert code == 0 and "Our own words." in out


def test_upload_of_garbage_fails_with_the_reason(tmp_path: Path, settings: Settings) -> None:
    path = garbage_file(tmp_path / "weights.onnx")
    code, _, err = kai(settings, "model", "upload", str(path))
    assert code == 1 and "not a model Kai can read" in err


def test_compare_shows_versions_side_by_side(
    tmp_path: Path, settings: Settings, database: Database
) -> None:
    path = tmp_path / "linear.onnx"
    path.write_bytes(linear_onnx_graph(3).SerializeToString())
    code, out, err = kai(settings, "model", "upload", str(path), "--classes", "stone,tile,wood")
    assert code == 0, err
    model_id = out.strip().splitlines()[-1]
    wider = tmp_path / "wider.onnx"
    wider.write_bytes(linear_onnx_graph(4).SerializeToString())
    code, _, err = kai(
        settings,
        "model",
        "upload",
        str(wider),
        "--model-id",
        model_id,
        "--classes",
        "stone,tile,oak,slate",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
    )
    assert code == 0, err

    code, out, err = kai(settings, "model", "compare", model_id, "1,2")

    assert code == 0, err
    assert "numClasses *" in out and "mean *" in out and "format " in out
    assert "version 2: classes added ['oak', 'slate'], removed ['wood']" in out
    code, _, err = kai(settings, "model", "compare", model_id, "1")
    assert code == 1 and "Compare 2 to 10 different versions" in err
