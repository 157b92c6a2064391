"""``kai dataset catalog`` and ``kai dataset import``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kai.cli.main import app
from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Dataset, DatasetStatus, Job


def kai(settings: Settings, *args: str) -> tuple[int, str, str]:
    """Run the CLI on the test's data dir and database; returns (status, stdout, stderr)."""
    root = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        root += ["--database-url", settings.database_url]
    result = CliRunner().invoke(app, [*root, *args])
    return result.exit_code, result.stdout, result.stderr


def test_catalog_lists_matching_datasets(settings: Settings) -> None:
    status, out, _ = kai(settings, "dataset", "catalog", "--category", "materials")
    assert status == 0
    assert "minc-2500" in out and "fmd" in out and "dtd" not in out


@pytest.mark.db
def test_import_queues_the_premade_job_with_the_options(
    settings: Settings, database: Database
) -> None:
    status, out, _ = kai(
        settings,
        "dataset",
        "import",
        "kai-textures",
        "--classes",
        "brick,gravel",
        "--max-per-class",
        "3",
        "--no-wait",
    )
    assert status == 0, out
    with database.session() as session:
        dataset = session.get(Dataset, int(out.strip().splitlines()[-1]))
        assert dataset is not None and dataset.status is DatasetStatus.IMPORTING
        job = session.get(Job, dataset.import_job_id)
        assert job is not None and job.type == "dataset.import_premade"
        options = job.config["source"]["premade"]["options"]
        assert options["selected_classes"] == ["brick", "gravel"]
        assert options["max_samples_per_class"] == 3


def test_import_refuses_unknown_classes_naming_the_valid_ones(settings: Settings) -> None:
    status, _, err = kai(settings, "dataset", "import", "kai-textures", "--classes", "brick,oak")
    assert status == 1
    assert "'oak'" in err and "brick, grass, gravel" in err
