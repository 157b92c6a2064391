"""Import jobs: ZIP, CSV and folder sources become a complete first version, or none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dataset_factories import (
    RunImport,
    bomb_png,
    class_files,
    image_bytes,
    job_context,
    make_folder,
    make_zip,
    pdf_bytes,
    truncated_jpeg,
)
from sqlalchemy import func, select

from kai.config import Settings
from kai.datasets import ImportSource, SourceKind, check_source, start_import
from kai.datasets import ingest as ingest_module
from kai.datasets.handlers import fail_import, run_import
from kai.db.engine import Database
from kai.db.tables import Blob, Dataset, DatasetStatus, DatasetVersion, Sample
from kai.errors import InvalidDatasetLayout, InvalidImage, InvalidInput
from kai.storage.blobs import LocalBlobStore

pytestmark = pytest.mark.db


def zip_source(path: Path) -> ImportSource:
    return ImportSource(kind=SourceKind.ZIP, archive_path=str(path), original_name=path.name)


def version_of(database: Database, dataset_id: int) -> tuple[DatasetVersion, list[Sample]]:
    with database.session() as session:
        version = session.scalars(
            select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id)
        ).one()
        samples = list(session.scalars(select(Sample).where(Sample.version_id == version.id)))
        return version, samples


def count(database: Database, table: Any) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def test_zip_import_writes_a_complete_version(
    tmp_path: Path, database: Database, run_dataset_import: RunImport
) -> None:
    members = class_files({"stone": 10, "wood": 10}, prefix="materials/")
    members["materials/.DS_Store"] = b"junk"
    members["materials/notes.txt"] = b"about the tiles"
    dataset_id, result = run_dataset_import(zip_source(make_zip(tmp_path / "m.zip", members)))

    version, samples = version_of(database, dataset_id)
    assert result["sampleCount"] == 20 and result["version"] == 1
    assert version.classes == ["stone", "wood"] and version.sample_count == 20
    meta = version.metadata_
    assert meta["classCounts"]["stone"] == {"train": 8, "val": 1, "test": 1, "total": 10}
    assert meta["imageStats"]["width"] == {"min": 32, "max": 32, "mean": 32.0}
    assert meta["imageStats"]["formats"] == {"jpeg": 20}
    assert meta["importReport"]["splitSource"] == "stratified"
    skipped = {s["name"]: s["reason"] for s in meta["importReport"]["skipped"]}
    assert "materials/notes.txt" in skipped and "materials/.DS_Store" in skipped
    assert meta["provenance"] == {"kind": "zip", "originalName": "m.zip", "layout": "classes"}
    assert {s.original_name for s in samples} == {n for n in members if n.endswith(".jpg")}
    assert all(s.reduced_sha256 == s.blob_sha256 for s in samples)  # 32 px: already small
    assert len({s.uid for s in samples}) == 20
    with database.session() as session:
        assert session.get(Dataset, dataset_id).status is DatasetStatus.READY  # type: ignore[union-attr]


def test_split_folders_are_kept_and_big_images_get_a_reduced_copy(
    tmp_path: Path, database: Database, run_dataset_import: RunImport
) -> None:
    members = class_files({"stone": 2, "wood": 2}, prefix="train/")
    members |= class_files({"stone": 1, "wood": 1}, prefix="val/", start=50)
    members["train/stone/big.png"] = image_bytes(77, size_px=600, fmt="PNG")
    dataset_id, _ = run_dataset_import(zip_source(make_zip(tmp_path / "s.zip", members)))

    version, samples = version_of(database, dataset_id)
    assert version.metadata_["importReport"]["splitSource"] == "folders"
    assert {s.original_name: s.split.value for s in samples}["val/wood/wood_0.jpg"] == "val"
    big = next(s for s in samples if s.original_name == "train/stone/big.png")
    assert (big.width, big.height) == (600, 600)
    assert big.reduced_sha256 != big.blob_sha256


def test_same_image_twice_is_stored_once(
    tmp_path: Path, database: Database, blobs: LocalBlobStore, run_dataset_import: RunImport
) -> None:
    members = class_files({"stone": 3, "wood": 3})
    members["wood/copy.jpg"] = members["stone/stone_0.jpg"]
    dataset_id, _ = run_dataset_import(zip_source(make_zip(tmp_path / "d.zip", members)))

    _, samples = version_of(database, dataset_id)
    assert len(samples) == 7
    assert len({s.blob_sha256 for s in samples}) == 6
    assert count(database, Blob) == 6
    assert sum(1 for _ in blobs.iter_hashes()) == 6


def test_bad_images_are_skipped_with_reasons_within_the_bound(
    tmp_path: Path, database: Database, run_dataset_import: RunImport
) -> None:
    members = class_files({"stone": 10, "wood": 10})
    members["stone/cut.jpg"] = truncated_jpeg()
    members["wood/paper.png"] = pdf_bytes()
    members["wood/bomb.png"] = bomb_png()
    dataset_id, result = run_dataset_import(zip_source(make_zip(tmp_path / "b.zip", members)))

    version, _ = version_of(database, dataset_id)
    assert result["badCount"] == 3 and version.sample_count == 20
    reasons = {s["name"]: s["reason"] for s in version.metadata_["importReport"]["skipped"]}
    assert set(reasons) == {"stone/cut.jpg", "wood/paper.png", "wood/bomb.png"}
    assert "PDF" in reasons["wood/paper.png"] or "not an image" in reasons["wood/paper.png"]
    assert "pixels" in reasons["wood/bomb.png"]


def test_too_many_bad_images_fail_the_import_and_leave_no_version(
    tmp_path: Path, database: Database, run_dataset_import: RunImport
) -> None:
    members = class_files({"stone": 2, "wood": 2})
    members |= {f"wood/bad{i}.jpg": truncated_jpeg(i) for i in range(3)}
    with pytest.raises(InvalidImage, match="could not be read"):
        run_dataset_import(zip_source(make_zip(tmp_path / "bad.zip", members)))
    assert count(database, DatasetVersion) == 0 and count(database, Sample) == 0


def test_killed_import_leaves_no_version(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    archive = make_zip(tmp_path / "k.zip", class_files({"stone": 5, "wood": 5}))
    real = ingest_module.process_image
    calls = {"n": 0}

    def dies_midway(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "process_image", dies_midway)
    with database.session() as session:
        dataset, job = start_import(session, name="t", description="", source=zip_source(archive))
        dataset_id, job_id = dataset.id, job.id
    ctx = job_context(settings, database, blobs, job_id)
    with pytest.raises(KeyboardInterrupt):
        run_import(ctx)
    assert count(database, DatasetVersion) == 0 and count(database, Sample) == 0

    fail_import(ctx, "The job's process was killed")
    with database.session() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None and dataset.status is DatasetStatus.FAILED
        assert dataset.error == "The job's process was killed"


def test_csv_with_images_zip_and_groups(
    tmp_path: Path, database: Database, run_dataset_import: RunImport
) -> None:
    members = class_files({"stone": 12, "wood": 12}, prefix="pics/")
    archive = make_zip(tmp_path / "images.zip", members)
    lines = ["image;category;group"]
    for index, name in enumerate(sorted(members)):
        lines.append(f"{name.split('/', 1)[1]};{name.split('/')[1]};tile{index // 3}")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    source = ImportSource(
        kind=SourceKind.CSV,
        csv_path=str(csv_path),
        archive_path=str(archive),
        original_name="labels.csv",
        images_name="images.zip",
    )
    dataset_id, _ = run_dataset_import(source)

    version, samples = version_of(database, dataset_id)
    assert version.sample_count == 24 and version.metadata_["provenance"]["kind"] == "csv"
    splits_of_group: dict[str | None, set[str]] = {}
    for sample in samples:
        splits_of_group.setdefault(sample.group, set()).add(sample.split.value)
    assert len(splits_of_group) == 8
    assert all(len(found) == 1 for found in splits_of_group.values())


def test_folder_import_under_a_root(
    tmp_path: Path, settings: Settings, database: Database, run_dataset_import: RunImport
) -> None:
    root = tmp_path / "shares"
    folder = make_folder(root / "tiles", class_files({"stone": 3, "wood": 3}))
    (folder / "wood" / "link.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    (tmp_path / "elsewhere.jpg").write_bytes(image_bytes(5))
    settings.import_roots = [root]
    source = ImportSource(kind=SourceKind.FOLDER, folder_path=str(folder), original_name="tiles")
    dataset_id, _ = run_dataset_import(source)

    version, _ = version_of(database, dataset_id)
    assert version.sample_count == 6
    reasons = {s["name"]: s["reason"] for s in version.metadata_["importReport"]["skipped"]}
    assert "outside the folder" in reasons["wood/link.jpg"]


def test_folder_outside_the_roots_is_refused(tmp_path: Path, settings: Settings) -> None:
    root = tmp_path / "shares"
    root.mkdir()
    outside = make_folder(tmp_path / "private", class_files({"stone": 1, "wood": 1}))
    (root / "sneaky").symlink_to(outside)
    settings.import_roots = [root]
    for path in (str(outside), str(root / "sneaky"), str(root / ".." / "private")):
        source = ImportSource(kind=SourceKind.FOLDER, folder_path=path)
        with pytest.raises(InvalidInput, match="outside the allowed import roots"):
            check_source(source, settings)


def test_one_class_is_refused_before_any_job(tmp_path: Path, settings: Settings) -> None:
    archive = make_zip(tmp_path / "one.zip", class_files({"stone": 3}))
    with pytest.raises(InvalidDatasetLayout, match="at least two classes"):
        check_source(zip_source(archive), settings)
