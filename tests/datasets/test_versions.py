"""Edits make child versions, parents stay as they were, and diffs count the changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_factories import RunImport, class_files, make_zip
from sqlalchemy import select

from kai.datasets import (
    ImportSource,
    MergeClasses,
    Move,
    Relabel,
    Remove,
    RenameClass,
    SourceKind,
    apply_edits,
    compute_diff,
    list_samples,
    resolve_version,
)
from kai.db.engine import Database
from kai.db.tables import Sample, Split
from kai.errors import Conflict, InvalidDatasetLayout, NotFound

pytestmark = pytest.mark.db


@pytest.fixture
def dataset_id(tmp_path: Path, run_dataset_import: RunImport) -> int:
    members = class_files({"stone": 5, "wood": 5, "ceramic": 5})
    archive = make_zip(tmp_path / "v.zip", members)
    dataset, _ = run_dataset_import(ImportSource(kind=SourceKind.ZIP, archive_path=str(archive)))
    return dataset


def uids(database: Database, dataset_id: int, label: str, number: int = 1) -> list[str]:
    with database.session() as session:
        version = resolve_version(session, dataset_id, number)
        query = select(Sample.uid).where(Sample.version_id == version.id, Sample.label == label)
        return sorted(session.scalars(query.order_by(Sample.uid)))


def test_edits_make_a_child_and_leave_the_parent_alone(database: Database, dataset_id: int) -> None:
    stone = uids(database, dataset_id, "stone")
    wood = uids(database, dataset_id, "wood")
    with database.session() as session:
        version = apply_edits(
            session,
            dataset_id,
            [
                Relabel(tuple(stone[:2]), "wood"),
                Remove((wood[0],)),
                Move(tuple(stone[2:4]), Split.TEST),
            ],
            message="fix labels",
        )
        assert (version.number, version.message, version.sample_count) == (2, "fix labels", 14)
    assert uids(database, dataset_id, "stone") == stone  # version 1 unchanged
    assert set(stone[:2]) <= set(uids(database, dataset_id, "wood", 2))

    with database.session() as session:
        diff = compute_diff(session, dataset_id, 1, 2)
    assert diff.removed.count == 1 and diff.removed.by_class == {"wood": 1}
    assert diff.relabelled.count == 2
    assert diff.relabelled.changes == [{"from": "stone", "to": "wood", "count": 2}]
    assert diff.added.count == 0
    moved_ids = {s["id"] for s in diff.moved.samples}
    assert moved_ids <= set(stone[2:4]) and diff.moved.by_class.get("stone", 0) == len(moved_ids)


def test_rename_and_merge_classes(database: Database, dataset_id: int) -> None:
    with database.session() as session:
        apply_edits(session, dataset_id, [RenameClass("ceramic", "porcelain")])
        merged = apply_edits(session, dataset_id, [MergeClasses(("porcelain",), "stone")])
        assert merged.classes == ["stone", "wood"] and merged.number == 3
        with pytest.raises(Conflict, match="already exists"):
            apply_edits(session, dataset_id, [RenameClass("stone", "wood")])


def test_invalid_edits_write_nothing(database: Database, dataset_id: int) -> None:
    with pytest.raises(NotFound, match="no samples"), database.session() as session:
        apply_edits(session, dataset_id, [Relabel(("nope",), "wood")])
    with pytest.raises(InvalidDatasetLayout, match="two classes"), database.session() as session:
        apply_edits(session, dataset_id, [MergeClasses(("stone", "ceramic"), "wood")])
    with database.session() as session:
        assert resolve_version(session, dataset_id, None).number == 1


def test_sample_listing_filters_and_pages(database: Database, dataset_id: int) -> None:
    with database.session() as session:
        version = resolve_version(session, dataset_id, None)
        page, total = list_samples(session, version, label="wood", page=1, page_size=2)
        assert total == 5 and len(page) == 2 and {s.label for s in page} == {"wood"}
        rest, _ = list_samples(session, version, label="wood", page=3, page_size=2)
        assert len(rest) == 1
        train, train_total = list_samples(session, version, split=Split.TRAIN, page_size=100)
        assert train_total == len(train) and {s.split for s in train} == {Split.TRAIN}
