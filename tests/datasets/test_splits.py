"""Stratified splits are deterministic, follow the fractions and keep groups together."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from kai.datasets.splits import SplitItem, assign_splits
from kai.db.tables import Split
from kai.errors import InvalidInput

FRACTIONS = (0.8, 0.1, 0.1)


def items(per_class: int, *, group_size: int = 0) -> list[SplitItem]:
    result = []
    for label in ("stone", "wood"):
        for index in range(per_class):
            group = f"{label}-g{index // group_size}" if group_size else None
            result.append(SplitItem(f"{label}/{index}.jpg", label, group))
    return result


def test_split_is_stratified_and_follows_fractions() -> None:
    splits = assign_splits(items(50), seed=42, fractions=FRACTIONS)
    for label in ("stone", "wood"):
        counts = Counter(s for key, s in splits.items() if key.startswith(label))
        assert counts == {Split.TRAIN: 40, Split.VAL: 5, Split.TEST: 5}


def test_split_is_deterministic_whatever_the_input_order() -> None:
    data = items(20)
    shuffled = list(data)
    random.Random(7).shuffle(shuffled)
    assert assign_splits(data, seed=3, fractions=FRACTIONS) == assign_splits(
        shuffled, seed=3, fractions=FRACTIONS
    )
    assert assign_splits(data, seed=3, fractions=FRACTIONS) != assign_splits(
        data, seed=4, fractions=FRACTIONS
    )


def test_small_classes_still_get_val_and_test() -> None:
    splits = assign_splits(items(4), seed=1, fractions=FRACTIONS)
    stone = Counter(s for key, s in splits.items() if key.startswith("stone"))
    assert stone[Split.VAL] == 1 and stone[Split.TEST] == 1 and stone[Split.TRAIN] == 2


def test_groups_stay_in_one_split() -> None:
    data = items(40, group_size=4)
    splits = assign_splits(data, seed=42, fractions=FRACTIONS)
    by_group: dict[str, set[Split]] = {}
    for item in data:
        assert item.group is not None
        by_group.setdefault(item.group, set()).add(splits[item.key])
    assert all(len(found) == 1 for found in by_group.values())
    assert set(splits.values()) == {Split.TRAIN, Split.VAL, Split.TEST}


def test_bad_fractions_are_refused() -> None:
    with pytest.raises(InvalidInput, match="sum to 1"):
        assign_splits(items(3), seed=1, fractions=(0.5, 0.1, 0.1))
