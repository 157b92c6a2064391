"""Diffs between two versions of a dataset, matched by sample uid.

A sample is added when only the newer version has its uid, removed when only
the older one has it, relabelled when its label changed and moved when its
split changed (a sample can be both). Counts come from the database; the
listed samples stop at ``limit`` per kind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session, aliased

from kai.datasets.versions import get_version
from kai.db.tables import Sample

DEFAULT_LIMIT = 1000


@dataclass
class ChangeSet:
    """One kind of change: how many, per class, and the first samples."""

    count: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class VersionDiff:
    """What changed from one version to another."""

    from_version: int
    to_version: int
    added: ChangeSet
    removed: ChangeSet
    relabelled: ChangeSet
    moved: ChangeSet


def compute_diff(
    session: Session,
    dataset_id: int,
    from_number: int,
    to_number: int,
    *,
    limit: int = DEFAULT_LIMIT,
) -> VersionDiff:
    """The diff from version ``from_number`` to ``to_number`` (either order works)."""
    old = get_version(session, dataset_id, from_number)
    new = get_version(session, dataset_id, to_number)
    return VersionDiff(
        from_version=old.number,
        to_version=new.number,
        added=_only_in(session, new.id, old.id, limit),
        removed=_only_in(session, old.id, new.id, limit),
        relabelled=_changed(session, old.id, new.id, "label", limit),
        moved=_changed(session, old.id, new.id, "split", limit),
    )


def _only_in(session: Session, version_id: int, other_id: int, limit: int) -> ChangeSet:
    mine, theirs = aliased(Sample), aliased(Sample)
    query = (
        select(mine.uid, mine.label, mine.split, mine.original_name)
        .outerjoin(theirs, and_(theirs.uid == mine.uid, theirs.version_id == other_id))
        .where(mine.version_id == version_id, theirs.id.is_(None))
    )
    return _collect(session, query, limit, changed=None)


def _changed(session: Session, old_id: int, new_id: int, column: str, limit: int) -> ChangeSet:
    old, new = aliased(Sample), aliased(Sample)
    before, after = getattr(old, column), getattr(new, column)
    query = (
        select(new.uid, new.label, new.split, new.original_name, before, after)
        .join(old, and_(old.uid == new.uid, old.version_id == old_id))
        .where(new.version_id == new_id, before != after)
    )
    return _collect(session, query, limit, changed=column)


def _collect(
    session: Session, query: Select[*tuple[Any, ...]], limit: int, *, changed: str | None
) -> ChangeSet:
    result = ChangeSet()
    by_class: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for row in session.execute(query.order_by(query.selected_columns[0])):
        label = row[1]
        entry = {"id": row[0], "label": label, "split": str(row[2]), "originalName": row[3]}
        if changed is None:
            by_class[label] += 1
        else:
            before, after = str(row[4]), str(row[5])
            entry["from"], entry["to"] = before, after
            pairs[(before, after)] += 1
            by_class[before if changed == "label" else label] += 1
        result.count += 1
        if len(result.samples) < limit:
            result.samples.append(entry)
    result.by_class = dict(sorted(by_class.items()))
    result.changes = [
        {"from": before, "to": after, "count": count}
        for (before, after), count in sorted(pairs.items())
    ]
    return result
