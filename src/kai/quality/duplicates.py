"""Exact and near duplicates, duplicates with different labels, and leakage across splits.

Exact duplicates share the original's blob hash. Near duplicates (resized,
recompressed or slightly cropped copies) have perceptual hashes a few bits
apart, confirmed by the difference hash and a close mean colour, so flat
images of different colours never match. Copies form clusters; each cluster
keeps its best copy (readable, most pixels, sharpest) and the rest are
duplicates of it.

Leakage is judged on wider components that also join samples of one named
group. A component spread over several splits has a home split (the one
holding most of it, train first on ties); its members elsewhere leak, and
moving them home removes the leak.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from kai.db.tables import IssueSeverity, IssueType, Split
from kai.embeddings import Neighbours
from kai.quality.features import Features
from kai.quality.findings import Finding, Thresholds
from kai.quality.hashes import find_close_pairs, hamming
from kai.quality.images import ImageStats
from kai.quality.samples import Inspected

MAX_LISTED = 10
# The ratio test finds at most this many copies of one image.
MAX_COPIES_BEFORE_GAP = 4
_SAME_FILE_DISTANCE = 1e-6
_SPLIT_RANK = {Split.TRAIN: 0, Split.VAL: 1, Split.TEST: 2}
# The difference hash may stray further than the DCT hash on a small crop.
_DHASH_SLACK_BITS = 10


class _Components:
    """Union-find over sample indices."""

    def __init__(self, size: int) -> None:
        self._parent = list(range(size))

    def find(self, index: int) -> int:
        while self._parent[index] != index:
            self._parent[index] = self._parent[self._parent[index]]
            index = self._parent[index]
        return index

    def join(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self._parent[max(root_a, root_b)] = min(root_a, root_b)

    def groups(self) -> list[list[int]]:
        members: dict[int, list[int]] = defaultdict(list)
        for index in range(len(self._parent)):
            members[self.find(index)].append(index)
        return [group for group in members.values() if len(group) > 1]


@dataclass(frozen=True)
class DuplicateReport:
    """What the duplicate and leakage checks found, with counts for the metrics."""

    findings: list[Finding]
    exact_clusters: int
    near_clusters: int
    leaking_components: int


def find_duplicate_issues(
    samples: Sequence[Inspected], thresholds: Thresholds, features: Features | None = None
) -> DuplicateReport:
    """Duplicates, label conflicts among copies, and exact, near and group leakage.

    Near copies come from the perceptual hashes and, when ``features`` are given,
    from embeddings too; a pair either finder sees counts.
    """
    exact_pairs = list(_exact_pairs(samples))
    near_pairs = sorted(
        {*find_near_pairs(samples, thresholds), *_embedding_pairs(samples, features, thresholds)}
    )
    copies = _Components(len(samples))
    for a, b in [*exact_pairs, *near_pairs]:
        copies.join(a, b)
    clusters = copies.groups()
    findings: list[Finding] = []
    for cluster in clusters:
        findings.extend(_duplicate_findings(samples, cluster, features))
        findings.extend(_conflict_findings(samples, cluster))
    leaking = 0
    for component in _leak_components(samples, [*exact_pairs, *near_pairs]):
        found = list(_leakage_findings(samples, component))
        leaking += bool(found)
        findings.extend(found)
    exact_groups = {samples[i].record.blob_sha256 for pair in exact_pairs for i in pair}
    return DuplicateReport(findings, len(exact_groups), len(clusters), leaking)


def find_near_pairs(
    samples: Sequence[Inspected], thresholds: Thresholds
) -> Iterator[tuple[int, int]]:
    """Index pairs of readable samples that are near copies but not the same file."""
    readable = [i for i, sample in enumerate(samples) if sample.stats is not None]
    hashes = [_stats(samples[i]).phash for i in readable]
    for a, b in find_close_pairs(hashes, max_distance=thresholds.near_duplicate_bits):
        first, second = samples[readable[a]], samples[readable[b]]
        if first.record.blob_sha256 == second.record.blob_sha256:
            continue
        if _confirmed(first, second, thresholds):
            yield readable[a], readable[b]


def find_embedding_pairs(
    neighbours: Neighbours, thresholds: Thresholds
) -> Iterator[tuple[int, int]]:
    """Row pairs whose embeddings are close and stand apart from everything else.

    A pair must be at least ``embedding_duplicate_similarity`` alike and then
    either much closer than the dataset's usual nearest neighbour
    (``embedding_duplicate_share`` of it), or fairly close
    (``embedding_duplicate_gap_share`` of it) with the few copies of an image
    much closer to it than its next neighbour (a ratio test): a crop, a mirror
    or a re-encoding moves an embedding a little, while the next distinct image
    is markedly further. Both rules are relative, so a set of look-alike photos
    (crops of one material), whose distances are small and rise smoothly,
    never turns into one cluster of copies.
    """
    similarities = neighbours.similarities
    if similarities.size == 0:
        return
    distances = 1.0 - similarities.astype(np.float64)
    # Copies of one file sit at distance zero; the usual distance is that of distinct images.
    nearest = distances[:, 0]
    distinct = nearest[(nearest > _SAME_FILE_DISTANCE) & np.isfinite(nearest)]
    usual = float(np.median(distinct)) if distinct.size else 1.0
    alike = distances <= 1.0 - thresholds.embedding_duplicate_similarity
    close = distances <= thresholds.embedding_duplicate_share * usual
    apart = (distances <= thresholds.embedding_duplicate_gap_share * usual) & _before_gap(
        distances, thresholds
    )
    for row, column in zip(*np.nonzero(alike & (close | apart)), strict=True):
        yield int(row), int(neighbours.indices[row, column])


def _before_gap(distances: NDArray[np.float64], thresholds: Thresholds) -> NDArray[np.bool_]:
    """Per row, the neighbours before the first gap (a distance at most ``gap`` of the next).

    Only the first ``MAX_COPIES_BEFORE_GAP`` neighbours can be copies, the next
    neighbour must exist, and exact copies (distance zero) never end the run.
    """
    count = min(MAX_COPIES_BEFORE_GAP, distances.shape[1] - 1)
    if count < 1:
        return np.zeros(distances.shape, dtype=bool)
    here, after = distances[:, :count], distances[:, 1 : count + 1]
    gaps = (
        (here <= thresholds.embedding_duplicate_gap * after)
        & (here > _SAME_FILE_DISTANCE)
        & np.isfinite(after)
    )
    # Every column up to the first gap; none in a row without one.
    first = np.where(gaps.any(axis=1), gaps.argmax(axis=1), -1)
    marked: NDArray[np.bool_] = np.arange(distances.shape[1])[None, :] <= first[:, None]
    return marked


def _embedding_pairs(
    samples: Sequence[Inspected], features: Features | None, thresholds: Thresholds
) -> Iterator[tuple[int, int]]:
    if features is None:
        return
    for row, other in find_embedding_pairs(features.neighbours, thresholds):
        a, b = features.positions[row], features.positions[other]
        if samples[a].record.blob_sha256 != samples[b].record.blob_sha256:
            yield min(a, b), max(a, b)


def _confirmed(first: Inspected, second: Inspected, thresholds: Thresholds) -> bool:
    a, b = _stats(first), _stats(second)
    if hamming(a.dhash, b.dhash) > thresholds.near_duplicate_bits + _DHASH_SLACK_BITS:
        return False
    colour_gap = max(abs(x - y) for x, y in zip(a.mean_rgb, b.mean_rgb, strict=True))
    return colour_gap <= thresholds.near_duplicate_colour


def _exact_pairs(samples: Sequence[Inspected]) -> Iterator[tuple[int, int]]:
    first_of: dict[str, int] = {}
    for index, sample in enumerate(samples):
        earlier = first_of.setdefault(sample.record.blob_sha256, index)
        if earlier != index:
            yield earlier, index


def _keeper(samples: Sequence[Inspected], cluster: list[int]) -> int:
    def quality(index: int) -> tuple[int, int, float, int, str]:
        sample = samples[index]
        pixels = sample.record.width * sample.record.height
        sharpness = sample.stats.laplacian_var if sample.stats else 0.0
        rank = _SPLIT_RANK[sample.record.split]
        return (sample.stats is not None, pixels, sharpness, -rank, sample.record.uid)

    return max(cluster, key=quality)


def _duplicate_findings(
    samples: Sequence[Inspected], cluster: list[int], features: Features | None
) -> Iterator[Finding]:
    """Each copy but the keeper: exact, of its file's best copy, or near, of the keeper."""
    keeper = _keeper(samples, cluster)
    by_file: dict[str, list[int]] = defaultdict(list)
    for index in cluster:
        by_file[samples[index].record.blob_sha256].append(index)
    for index in cluster:
        if index == keeper:
            continue
        twins = by_file[samples[index].record.blob_sha256]
        best_twin = keeper if keeper in twins else _keeper(samples, twins)
        if best_twin != index:
            yield _duplicate(samples, index, best_twin, len(cluster), None, exact=True)
        else:
            yield _duplicate(samples, index, keeper, len(cluster), features, exact=False)


def _duplicate(
    samples: Sequence[Inspected],
    index: int,
    original: int,
    cluster_size: int,
    features: Features | None,
    *,
    exact: bool,
) -> Finding:
    sample, kept = samples[index], samples[original]
    evidence: dict[str, object] = {"duplicateOf": kept.record.uid, "clusterSize": cluster_size}
    if not exact and sample.stats and kept.stats:
        evidence["hashDistanceBits"] = hamming(sample.stats.phash, kept.stats.phash)
    similarity = features.similarity(index, original) if features else None
    if not exact and similarity is not None:
        evidence["embeddingSimilarity"] = round(similarity, 4)
    issue_type = IssueType.EXACT_DUPLICATE if exact else IssueType.NEAR_DUPLICATE
    return Finding(sample.record.uid, issue_type, IssueSeverity.LOW, evidence)


def _conflict_findings(samples: Sequence[Inspected], cluster: list[int]) -> Iterator[Finding]:
    labels = Counter(samples[i].record.label for i in cluster)
    if len(labels) < 2:
        return
    (top, top_count), (_, second_count) = labels.most_common(2)
    suggested = top if top_count > second_count else None
    for index in cluster:
        sample = samples[index]
        others = [
            {"id": samples[i].record.uid, "label": samples[i].record.label}
            for i in cluster
            if i != index and samples[i].record.label != sample.record.label
        ]
        evidence: dict[str, object] = {"labels": dict(labels), "otherCopies": others[:MAX_LISTED]}
        if suggested is not None and suggested != sample.record.label:
            evidence["suggestedLabel"] = suggested
            evidence["probability"] = round(top_count / len(cluster), 4)
        yield Finding(sample.record.uid, IssueType.LABEL_CONFLICT, IssueSeverity.HIGH, evidence)


def _leak_components(
    samples: Sequence[Inspected], copy_pairs: Iterable[tuple[int, int]]
) -> list[list[int]]:
    components = _Components(len(samples))
    for a, b in copy_pairs:
        components.join(a, b)
    first_of_group: dict[str, int] = {}
    for index, sample in enumerate(samples):
        if sample.record.group:
            components.join(first_of_group.setdefault(sample.record.group, index), index)
    return components.groups()


def _leakage_findings(samples: Sequence[Inspected], component: list[int]) -> Iterator[Finding]:
    splits = Counter(samples[i].record.split for i in component)
    if len(splits) < 2:
        return
    home = min(splits, key=lambda split: (-splits[split], _SPLIT_RANK[split]))
    at_home = [samples[i] for i in component if samples[i].record.split is home]
    for index in component:
        sample = samples[index]
        if sample.record.split is home:
            continue
        yield _leak_finding(sample, at_home, home)


def _leak_finding(sample: Inspected, at_home: list[Inspected], home: Split) -> Finding:
    same_file = [s for s in at_home if s.record.blob_sha256 == sample.record.blob_sha256]
    same_group = [
        s for s in at_home if sample.record.group and s.record.group == sample.record.group
    ]
    if same_file:
        issue_type, partners = IssueType.EXACT_LEAKAGE, same_file
    elif same_group:
        issue_type, partners = IssueType.GROUP_LEAKAGE, same_group
    else:
        issue_type, partners = IssueType.NEAR_LEAKAGE, at_home
    evidence: dict[str, object] = {
        "split": sample.record.split.value,
        "homeSplit": home.value,
        "leaksWith": [s.record.uid for s in partners[:MAX_LISTED]],
    }
    if issue_type is IssueType.GROUP_LEAKAGE:
        evidence["group"] = sample.record.group
    return Finding(sample.record.uid, issue_type, IssueSeverity.HIGH, evidence)


def _stats(sample: Inspected) -> ImageStats:
    assert sample.stats is not None
    return sample.stats
