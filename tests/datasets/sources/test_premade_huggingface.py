"""Hugging Face sources read through the real clients from a hub cache made here."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_caches import COMMIT, make_hf_imagefolder_repo, make_hf_parquet_repo, png_bytes
from premade_runs import RunPremade

from kai.datasets.sources.huggingface import download_snapshot
from kai.datasets.sources.references import parse_source_id
from kai.db.engine import Database
from kai.db.tables import DatasetStatus, DatasetVersion, Sample, Split
from kai.errors import NotFound

pytestmark = pytest.mark.db

CLASSES = ("brick", "grass", "gravel")


def rows(count: int, *, start: int = 0, label: int | None = None) -> list[dict[str, object]]:
    return [
        {
            "image": png_bytes(start + i),
            "label": label if label is not None else i % len(CLASSES),
            "photographer": f"p{i}",
        }
        for i in range(count)
    ]


def textures_repo(cache: Path, work: Path, repo_id: str = "kai-test/textures") -> str:
    make_hf_parquet_repo(
        cache,
        repo_id,
        class_names=CLASSES,
        rows={"train": rows(9), "validation": rows(3, start=100), "test": rows(3, start=200)},
        work=work,
    )
    return repo_id


def test_snapshot_comes_from_the_cache_when_the_hub_is_unreachable(
    hf_cache: Path, work_dir: Path
) -> None:
    textures_repo(hf_cache, work_dir)
    folder = download_snapshot(parse_source_id("huggingface:kai-test/textures"))
    assert folder.name == COMMIT
    assert (folder / "data" / "train-00000-of-00001.parquet").is_file()


def test_parquet_dataset_imports_with_its_classes_and_splits(
    hf_cache: Path, work_dir: Path, run_premade: RunPremade, database: Database
) -> None:
    textures_repo(hf_cache, work_dir)
    dataset_id, result, error = run_premade("huggingface:kai-test/textures", include_metadata=True)
    assert error is None and result is not None
    assert result["sampleCount"] == 15
    with database.session() as session:
        version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
        assert version.classes == list(CLASSES)
        assert version.metadata_["splitCounts"] == {"train": 9, "val": 3, "test": 3}
        provenance = version.metadata_["provenance"]
        assert provenance["repository"] == "huggingface"
        assert provenance["revision"] == COMMIT
        assert provenance["sourceLabelColumn"] == "label"
        assert version.metadata_["importReport"]["splitSource"] == "source"
        sample = session.query(Sample).filter_by(version_id=version.id).first()
        assert sample is not None and sample.metadata_["photographer"].startswith("p")


def test_offline_mode_reads_the_cache_too(
    hf_cache: Path, work_dir: Path, run_premade: RunPremade, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    textures_repo(hf_cache, work_dir)
    _, result, error = run_premade("huggingface:kai-test/textures", max_samples_per_class=1)
    assert error is None and result is not None
    # One image per class in each of the three splits.
    assert result["sampleCount"] == 9


def test_image_folder_repository_imports(
    hf_cache: Path, run_premade: RunPremade, database: Database
) -> None:
    files = {
        f"train/{label}/{label}_{i}.png": png_bytes(i * 7 + n)
        for n, label in enumerate(("oak", "slate"))
        for i in range(3)
    }
    make_hf_imagefolder_repo(hf_cache, "kai-test/folders", files)
    dataset_id, result, error = run_premade("huggingface:kai-test/folders")
    assert error is None and result is not None and result["sampleCount"] == 6
    with database.session() as session:
        version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
        assert version.classes == ["oak", "slate"]


def test_selected_classes_and_cap_apply_per_split(
    hf_cache: Path, work_dir: Path, run_premade: RunPremade, database: Database
) -> None:
    textures_repo(hf_cache, work_dir)
    dataset_id, _, error = run_premade(
        "huggingface:kai-test/textures",
        selected_classes=["brick", "gravel"],
        max_samples_per_class=2,
    )
    assert error is None
    with database.session() as session:
        version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
        counts = version.metadata_["classCounts"]
    assert sorted(counts) == ["brick", "gravel"]
    assert counts["brick"] == {"train": 2, "val": 1, "test": 1, "total": 4}


def test_unknown_class_fails_the_job_listing_the_valid_ones(
    hf_cache: Path, work_dir: Path, run_premade: RunPremade, database: Database
) -> None:
    textures_repo(hf_cache, work_dir)
    dataset_id, _, error = run_premade(
        "huggingface:kai-test/textures", selected_classes=["brick", "marble"]
    )
    assert error is not None and "'marble'" in error and "brick, grass, gravel" in error
    with database.session() as session:
        assert session.query(DatasetVersion).filter_by(dataset_id=dataset_id).count() == 0


def test_missing_revision_fails_naming_it(
    hf_cache: Path, work_dir: Path, run_premade: RunPremade
) -> None:
    textures_repo(hf_cache, work_dir)
    _, _, error = run_premade("huggingface:kai-test/textures@v9")
    assert error is not None and "'v9'" in error and "holds revisions ['main']" in error


def test_uncached_dataset_fails_naming_the_cache_and_the_fix(
    hf_cache: Path, run_premade: RunPremade, database: Database
) -> None:
    dataset_id, _, error = run_premade("huggingface:kai-test/absent")
    assert error is not None
    assert "'kai-test/absent'" in error and str(hf_cache) in error
    assert "hf download kai-test/absent --repo-type dataset" in error
    with database.session() as session:
        from kai.db.tables import Dataset

        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None and dataset.status is DatasetStatus.FAILED


def test_dataset_without_image_column_fails(
    hf_cache: Path, work_dir: Path, run_premade: RunPremade
) -> None:
    import datasets

    table = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})
    parquet = work_dir / "text.parquet"
    table.to_parquet(str(parquet))
    from hub_caches import add_hf_file, set_hf_ref

    add_hf_file(
        hf_cache, "kai-test/text", "data/train-00000-of-00001.parquet", parquet.read_bytes()
    )
    set_hf_ref(hf_cache, "kai-test/text")
    _, _, error = run_premade("huggingface:kai-test/text")
    assert error is not None and "no image column" in error and "text (Value)" in error


def test_dataset_without_labels_is_not_classification(
    hf_cache: Path, work_dir: Path, run_premade: RunPremade
) -> None:
    make_hf_parquet_repo(
        hf_cache,
        "kai-test/captions",
        class_names=(),
        rows={"train": [{"image": png_bytes(i), "caption": f"c{i}"} for i in range(3)]},
        work=work_dir,
        label_column=None,
    )
    _, _, error = run_premade("huggingface:kai-test/captions")
    assert error is not None and "not an image-classification dataset" in error


def test_unlabelled_rows_are_skipped_with_a_reason(
    hf_cache: Path, work_dir: Path, run_premade: RunPremade, database: Database
) -> None:
    make_hf_parquet_repo(
        hf_cache,
        "kai-test/partly",
        class_names=CLASSES,
        rows={"train": rows(6), "test": rows(2, start=50, label=-1)},
        work=work_dir,
    )
    dataset_id, result, error = run_premade("huggingface:kai-test/partly")
    assert error is None and result is not None
    assert result["sampleCount"] == 6 and result["skippedCount"] == 2
    with database.session() as session:
        version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
        report = version.metadata_["importReport"]
        assert report["skippedByReason"] == {"the row has no label": 2}
        splits = {s.split for s in session.query(Sample).filter_by(version_id=version.id)}
        assert splits == {Split.TRAIN}


def test_gated_or_missing_repository_is_not_found_offline(hf_cache: Path) -> None:
    with pytest.raises(NotFound, match="not in the Hugging Face cache"):
        download_snapshot(parse_source_id("huggingface:ILSVRC/imagenet-1k"))
