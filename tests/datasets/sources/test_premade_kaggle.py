"""Kaggle sources read through kagglehub from a cache made here, with Kaggle unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_caches import make_kaggle_dataset, png_bytes
from premade_runs import RunPremade

from kai.datasets.sources.kaggle import latest_cached_version
from kai.db.engine import Database
from kai.db.tables import DatasetVersion

pytestmark = pytest.mark.db


def class_folders(classes: tuple[str, ...], per_class: int, *, start: int = 0) -> dict[str, bytes]:
    return {
        f"tiles/{label}/{label}_{i}.png": png_bytes(start + n * 10 + i)
        for n, label in enumerate(classes)
        for i in range(per_class)
    }


def test_versioned_dataset_imports_from_the_cache(
    kaggle_cache: Path, run_premade: RunPremade, database: Database
) -> None:
    make_kaggle_dataset(kaggle_cache, "kai/tiles", 2, class_folders(("ceramic", "stone"), 3))
    dataset_id, result, error = run_premade("kaggle:kai/tiles/versions/2")
    assert error is None and result is not None and result["sampleCount"] == 6
    with database.session() as session:
        version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
        assert version.classes == ["ceramic", "stone"]
        assert version.metadata_["provenance"]["revision"] == "2"


def test_unversioned_id_reads_the_newest_cached_version_when_offline(
    kaggle_cache: Path, run_premade: RunPremade, database: Database
) -> None:
    make_kaggle_dataset(kaggle_cache, "kai/tiles", 1, class_folders(("ceramic", "stone"), 2))
    make_kaggle_dataset(kaggle_cache, "kai/tiles", 3, class_folders(("ceramic", "wood"), 2))
    assert latest_cached_version("kai/tiles") == 3
    dataset_id, _, error = run_premade("kaggle:kai/tiles")
    assert error is None
    with database.session() as session:
        version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
        assert version.classes == ["ceramic", "wood"]
        assert version.metadata_["provenance"]["revision"] == "3"


def test_csv_inside_the_dataset_maps_files_to_labels(
    kaggle_cache: Path, run_premade: RunPremade, database: Database
) -> None:
    files = {f"images/img_{i}.png": png_bytes(i) for i in range(6)}
    rows = "".join(f"img_{i}.png,{'marble' if i % 2 else 'granite'}\n" for i in range(6))
    files["labels.csv"] = ("file,label\n" + rows).encode()
    make_kaggle_dataset(kaggle_cache, "kai/stones", 1, files)
    dataset_id, result, error = run_premade("kaggle:kai/stones/versions/1")
    assert error is None and result is not None and result["sampleCount"] == 6
    with database.session() as session:
        version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
        assert version.classes == ["granite", "marble"]
        assert version.metadata_["provenance"]["sourceLayout"] == "csv"


def test_dataset_without_classes_fails_saying_what_was_tried(
    kaggle_cache: Path, run_premade: RunPremade
) -> None:
    make_kaggle_dataset(
        kaggle_cache, "kai/flat", 1, {f"img_{i}.png": png_bytes(i) for i in range(3)}
    )
    _, _, error = run_premade("kaggle:kai/flat/versions/1")
    assert error is not None and "neither class folders" in error


def test_uncached_dataset_fails_naming_the_cache(
    kaggle_cache: Path, run_premade: RunPremade
) -> None:
    _, _, error = run_premade("kaggle:kai/absent")
    assert error is not None and "'kai/absent'" in error and str(kaggle_cache) in error
    assert "KAGGLEHUB_CACHE" in error
