"""Deterministic stratified splits, grouped when the data names groups.

Samples of one group (one physical tile photographed several times, say)
always land in the same split, so validation never sees a near copy of a
training image. Samples without a group are groups of one. Within each class
the groups are ordered by a seeded shuffle of their sorted keys, so the same
data and seed give the same split whatever order the files arrived in.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from kai.db.tables import Split
from kai.errors import InvalidInput

SPLIT_ORDER = (Split.TRAIN, Split.VAL, Split.TEST)


@dataclass(frozen=True)
class SplitItem:
    """What the splitter needs of a sample: a stable key, its class and its group."""

    key: str
    label: str
    group: str | None = None


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate train, val and test fractions; they must be non-negative and sum to 1."""
    if len(fractions) != len(SPLIT_ORDER) or any(f < 0 for f in fractions):
        raise InvalidInput(f"Split fractions {tuple(fractions)} must be three numbers >= 0")
    if abs(sum(fractions) - 1.0) > 1e-6 or fractions[0] <= 0:
        raise InvalidInput(
            f"Split fractions {tuple(fractions)} must sum to 1 with a positive train share"
        )
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def assign_splits(
    items: Sequence[SplitItem],
    *,
    seed: int,
    fractions: Sequence[float],
) -> dict[str, Split]:
    """Assign each item a split, stratified by class and grouped by group.

    Args:
        items: The samples to split; keys must be unique.
        seed: The shuffle seed.
        fractions: Train, val and test shares, summing to 1.

    Returns:
        The split of each item by key.
    """
    shares = check_fractions(fractions)
    groups = _groups(items)
    strata: dict[str, list[str]] = defaultdict(list)
    for group_key, members in groups.items():
        strata[_majority_label(members)].append(group_key)
    assigned: dict[str, Split] = {}
    for label in sorted(strata):
        order = sorted(strata[label])
        random.Random(f"{seed}:{label}").shuffle(order)  # noqa: S311 - reproducible, not secret
        for group_key, split in _fill(order, groups, shares).items():
            for item in groups[group_key]:
                assigned[item.key] = split
    return assigned


def _groups(items: Sequence[SplitItem]) -> dict[str, list[SplitItem]]:
    groups: dict[str, list[SplitItem]] = defaultdict(list)
    for item in items:
        # Prefixes keep a named group apart from a file that happens to share its name.
        group_key = f"g:{item.group}" if item.group else f"k:{item.key}"
        groups[group_key].append(item)
    return groups


def _majority_label(members: list[SplitItem]) -> str:
    counts = Counter(item.label for item in members)
    return min(counts, key=lambda label: (-counts[label], label))


def _fill(
    order: list[str],
    groups: dict[str, list[SplitItem]],
    shares: tuple[float, float, float],
) -> dict[str, Split]:
    """Deal groups to splits, each to the split furthest below its target size."""
    total = sum(len(groups[key]) for key in order)
    targets = [share * total for share in shares]
    filled = [0, 0, 0]
    result: dict[str, Split] = {}
    # Largest groups first pack best; the sort is stable, so the shuffle breaks ties.
    remaining = sorted(order, key=lambda key: -len(groups[key]))
    # With enough groups every split with a positive share gets at least one (the smallest).
    wanted = [i for i in (1, 2) if shares[i] > 0]
    if len(remaining) > len(wanted):
        for index in wanted:
            key = remaining.pop()
            result[key] = SPLIT_ORDER[index]
            filled[index] += len(groups[key])
    candidates = [i for i in range(3) if shares[i] > 0]
    for key in remaining:
        index = max(candidates, key=lambda i: (targets[i] - filled[i], -i))
        result[key] = SPLIT_ORDER[index]
        filled[index] += len(groups[key])
    return result
