"""Checks on embeddings: label errors, outliers, embedding near duplicates, and their edge cases.

The checks are judged on hand-made embeddings with a known answer; the
pipeline around them (backbone, cache, index) runs with a tiny random timm
backbone on 32-pixel images, and once, marked slow, with the real Lite0.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from quality_factories import TINTS, encode, texture

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import IssueType, Split
from kai.embeddings import (
    EmbeddingCache,
    Neighbours,
    VectorIndex,
    load_random_backbone,
    normalise_rows,
    open_index,
)
from kai.quality import analyse_samples
from kai.quality.analysis import inspect_samples, judge
from kai.quality.backbones import resolve_embedder
from kai.quality.duplicates import find_embedding_pairs
from kai.quality.features import Embedder, Features
from kai.quality.findings import Thresholds
from kai.quality.label_errors import LabelErrorReport, find_label_errors
from kai.quality.outliers import OutlierReport, find_outliers
from kai.quality.samples import Inspected, SampleRecord
from kai.storage.blobs import LocalBlobStore

THRESHOLDS = Thresholds()


def record(uid: str, label: str, sha: str = "0" * 64) -> SampleRecord:
    return SampleRecord(uid, label, Split.TRAIN, None, sha, sha, 32, 32)


def features_of(vectors: NDArray[np.float32]) -> Features:
    unit = normalise_rows(vectors)
    index = VectorIndex(unit, [str(i) for i in range(len(unit))])
    return Features(list(range(len(unit))), unit, index.search_all(10), "hand-made")


def clusters(
    per_class: int, num_classes: int, dims: int = 16, seed: int = 0
) -> tuple[NDArray[np.float32], list[int]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dims)) * 4
    truth = [c for c in range(num_classes) for _ in range(per_class)]
    vectors = centres[truth] + rng.normal(size=(len(truth), dims))
    return vectors.astype(np.float32), truth


def test_flipped_labels_are_found_with_their_true_label_suggested() -> None:
    vectors, truth = clusters(40, 3)
    names = ["brick", "grass", "gravel"]
    flipped = {3: 1, 50: 2, 90: 0, 101: 0}
    given = [names[flipped.get(i, t)] for i, t in enumerate(truth)]
    inspected = [Inspected(record(f"s{i}", label), None) for i, label in enumerate(given)]
    report = find_label_errors(inspected, features_of(vectors), THRESHOLDS)
    assert isinstance(report, LabelErrorReport)
    found = {f.sample_uid: f.evidence for f in report.findings}
    assert set(found) == {f"s{i}" for i in flipped}
    for i in flipped:
        assert found[f"s{i}"]["suggestedLabel"] == names[truth[i]]
        assert found[f"s{i}"]["probability"] > 0.5
    assert report.metrics["model"] == "logisticRegression"


def test_thousands_of_classes_switch_to_class_means_without_crashing() -> None:
    vectors, truth = clusters(3, 1500, dims=32)
    inspected = [Inspected(record(f"s{i}", f"c{t}"), None) for i, t in enumerate(truth)]
    report = find_label_errors(inspected, features_of(vectors), THRESHOLDS)
    assert isinstance(report, LabelErrorReport)
    assert report.metrics["model"] == "nearestClassMean"
    assert report.metrics["folds"] == 3
    assert report.metrics["outOfSampleAccuracy"] > 0.9


@pytest.mark.parametrize(
    ("labels", "vectors", "reason"),
    [
        (["a"] * 30, np.eye(30, 8, dtype=np.float32), "two classes"),
        (["a", "b", "c", "d"], np.eye(4, 8, dtype=np.float32), "two classes"),
        (["a", "b"] * 10, np.ones((20, 8), dtype=np.float32), "looks the same"),
    ],
    ids=["one-class", "one-image-per-class", "identical"],
)
def test_label_errors_explain_when_they_cannot_run(
    labels: list[str], vectors: NDArray[np.float32], reason: str
) -> None:
    inspected = [Inspected(record(f"s{i}", label), None) for i, label in enumerate(labels)]
    assert reason in str(find_label_errors(inspected, features_of(vectors), THRESHOLDS))


def test_an_image_far_from_all_others_is_the_outlier() -> None:
    vectors, truth = clusters(30, 2)
    vectors = np.vstack([vectors, -40 * np.ones((1, vectors.shape[1]), dtype=np.float32)])
    inspected = [Inspected(record(f"s{i}", "x"), None) for i in range(len(vectors))]
    report = find_outliers(inspected, features_of(vectors), THRESHOLDS)
    assert isinstance(report, OutlierReport)
    assert [f.sample_uid for f in report.findings] == [f"s{len(truth)}"]
    assert report.findings[0].evidence["neighbourDistance"] > report.metrics["cutDistance"]


def test_outliers_need_enough_images_and_spread() -> None:
    few = [Inspected(record(f"s{i}", "x"), None) for i in range(5)]
    assert "at least" in str(
        find_outliers(few, features_of(np.eye(5, dtype=np.float32)), THRESHOLDS)
    )
    same = [Inspected(record(f"s{i}", "x"), None) for i in range(25)]
    report = find_outliers(same, features_of(np.ones((25, 4), dtype=np.float32)), THRESHOLDS)
    assert isinstance(report, OutlierReport) and report.findings == []


def test_embedding_neighbours_add_near_duplicates_the_hashes_miss(blobs: LocalBlobStore) -> None:
    shas = [blobs.put_bytes(encode(texture(seed, TINTS["stone"]))) for seed in range(4)]
    records = [record(f"s{i}", "stone", sha) for i, sha in enumerate(shas)]
    inspected = inspect_samples(records, blobs)
    vectors = np.eye(4, 8, dtype=np.float32)
    vectors[3] = vectors[1] + 0.01
    analysis = judge(inspected, THRESHOLDS, features_of(vectors))
    near = [f for f in analysis.findings if f.issue_type is IssueType.NEAR_DUPLICATE]
    assert len(near) == 1 and {near[0].sample_uid, near[0].evidence["duplicateOf"]} == {"s1", "s3"}
    assert near[0].evidence["embeddingSimilarity"] > 0.99
    without = judge(inspected, THRESHOLDS, "no backbone")
    assert "near_duplicate" not in without.issue_counts


def test_a_backbone_that_cannot_load_leaves_a_report_that_says_why(
    settings: Settings, database: Database, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    broken = settings.model_copy(update={"embedding_backbone": "random:no_such_network"})
    embedder = resolve_embedder(broken, database, blobs, version_id=1, work_dir=tmp_path)
    assert isinstance(embedder, str) and "no_such_network" in embedder
    sha = blobs.put_bytes(encode(texture(1, TINTS["stone"])))
    analysis = analyse_samples([record("a", "stone", sha)], blobs, embedder=embedder)
    assert analysis.metrics["embeddings"] == {"ran": False, "reason": embedder}
    families = {row["family"]: row for row in analysis.score_breakdown["families"]}
    assert families["labelErrors"]["ran"] is False
    assert "did not run" in str(families["outliers"]["reason"])
    missing = settings.model_copy(update={"embedding_backbone": "model:999"})
    assert "999" in str(resolve_embedder(missing, database, blobs, version_id=1, work_dir=tmp_path))


def small_embedder(data_dir: Path, index: Path | None = None) -> Embedder:
    backbone = load_random_backbone("test_efficientnet", image_size_px=32)
    return Embedder(backbone, EmbeddingCache(data_dir, backbone.identity), index)


@pytest.mark.parametrize("case", ["one-image", "identical", "one-class", "tiny-and-huge"])
def test_degenerate_versions_get_a_report_with_embeddings(
    case: str, blobs: LocalBlobStore, data_dir: Path
) -> None:
    stone = blobs.put_bytes(encode(texture(7, TINTS["stone"])))
    records = {
        "one-image": [record("a", "stone", stone)],
        "identical": [record(f"s{i}", "ab"[i % 2], stone) for i in range(25)],
        "one-class": [
            record(f"s{i}", "stone", blobs.put_bytes(encode(texture(i, TINTS["stone"]))))
            for i in range(25)
        ],
        "tiny-and-huge": [
            record("tiny", "a", blobs.put_bytes(encode(Image.new("RGB", (1, 1), "red")))),
            record("wide", "b", blobs.put_bytes(encode(Image.new("RGB", (512, 8), "blue")))),
        ],
    }[case]
    analysis = analyse_samples(records, blobs, embedder=small_embedder(data_dir))
    assert 0 <= analysis.score <= 100
    assert analysis.metrics["embeddings"]["ran"] is True


def test_the_analysis_writes_the_versions_similarity_index(
    blobs: LocalBlobStore, data_dir: Path
) -> None:
    shas = [blobs.put_bytes(encode(texture(seed, TINTS["ceramic"]))) for seed in range(6)]
    records = [record(f"s{i}", "ceramic", sha) for i, sha in enumerate(shas)]
    path = data_dir / "indexes" / "version-1.npy"
    analyse_samples(records, blobs, embedder=small_embedder(data_dir, path))
    index = open_index(path)
    assert index.keys == [r.uid for r in records]
    assert np.allclose(np.linalg.norm(np.asarray(index.matrix), axis=1), 1.0, atol=1e-4)


@pytest.mark.slow
def test_lite0_finds_a_flipped_texture_label(blobs: LocalBlobStore, data_dir: Path) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    from kai.embeddings import load_lite0_backbone

    photos = {"brick": skimage_data.brick(), "grass": skimage_data.grass()}
    records = []
    for label, photo in photos.items():
        for i in range(24):
            y, x = divmod(i, 6)
            crop = photo[y * 60 : y * 60 + 128, x * 60 : x * 60 + 128]
            buffer = io.BytesIO()
            Image.fromarray(crop).convert("RGB").save(buffer, "PNG")
            given = "grass" if (label, i) == ("brick", 5) else label
            records.append(record(f"{label}{i}", given, blobs.put_bytes(buffer.getvalue())))
    backbone = load_lite0_backbone(image_size_px=128)
    embedder = Embedder(backbone, EmbeddingCache(data_dir, backbone.identity))
    analysis = analyse_samples(records, blobs, embedder=embedder)
    errors = {
        f.sample_uid: f.evidence for f in analysis.findings if f.issue_type is IssueType.LABEL_ERROR
    }
    assert set(errors) == {"brick5"}
    assert errors["brick5"]["suggestedLabel"] == "brick"


def test_copies_of_one_file_stay_exact_when_a_near_copy_joins_their_cluster(
    blobs: LocalBlobStore,
) -> None:
    shas = [blobs.put_bytes(encode(texture(seed, TINTS["stone"]))) for seed in range(8)]
    records = [record("a", "stone", shas[0]), record("a2", "stone", shas[0])]
    bigger = SampleRecord("b", "stone", Split.TRAIN, None, shas[1], shas[1], 64, 64)
    records += [bigger, *(record(f"o{i}", "stone", sha) for i, sha in enumerate(shas[2:]))]
    vectors = np.eye(9, 9, dtype=np.float32)
    vectors[1] = vectors[0]
    vectors[2] = vectors[0] + 0.01
    analysis = judge(inspect_samples(records, blobs), THRESHOLDS, features_of(vectors))
    found = {f.sample_uid: f for f in analysis.findings if f.issue_type.value.endswith("duplicate")}
    assert set(found) == {"a", "a2"}
    exact = next(f for f in found.values() if f.issue_type is IssueType.EXACT_DUPLICATE)
    near = next(f for f in found.values() if f.issue_type is IssueType.NEAR_DUPLICATE)
    assert {exact.sample_uid, exact.evidence["duplicateOf"]} == {"a", "a2"}
    assert near.evidence["duplicateOf"] == "b"


def _pairs_of(vectors: NDArray[np.float32], k: int = 6) -> set[frozenset[int]]:
    neighbours = VectorIndex(normalise_rows(vectors), [str(i) for i in range(len(vectors))])
    found = find_embedding_pairs(neighbours.search_all(k), THRESHOLDS)
    return {frozenset(pair) for pair in found}


def _around(
    centre: NDArray[np.float32], spread: float, count: int, seed: int
) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((count, centre.size)).astype(np.float32)
    return centre + spread * noise / np.sqrt(centre.size)


def test_copies_standing_apart_from_look_alikes_are_found_and_the_look_alikes_are_not() -> None:
    rng = np.random.default_rng(3)
    dim = 256
    centre = rng.standard_normal(dim).astype(np.float32)
    # Look-alikes: one material photographed many times, all about equally alike.
    look_alikes = _around(centre, 0.9, 30, seed=4)
    # Copies a little way off: too far for the rule relative to the usual neighbour,
    # but well inside the gap to the look-alikes.
    copy = _around(look_alikes[0], 0.8, 1, seed=5)
    twins = _around(look_alikes[1], 0.75, 2, seed=6)

    pairs = _pairs_of(np.vstack([look_alikes, copy, twins]).astype(np.float32))

    # The copy of image 0, and both copies of image 1: two copies do not hide each other.
    assert pairs == {frozenset({0, 30}), frozenset({1, 31}), frozenset({1, 32})}


def test_the_ratio_test_needs_a_next_neighbour_and_passes_over_exact_copies() -> None:
    close = np.array([[1.0, 0.0], [0.96, 0.28]], dtype=np.float32)
    # Two images only: nothing to compare the pair's distance with, and it is not close
    # in absolute terms.
    assert _pairs_of(close, k=3) == set()

    # Row 0 has an exact copy first and a near copy behind it; the other rows are
    # ordinary images whose neighbours are all about equally far.
    indices = np.array([[1, 2, 3, 4], [2, 3, 4, 0], [3, 4, 0, 1], [4, 0, 1, 2], [0, 1, 2, 3]])
    ordinary = [0.80, 0.79, 0.78, 0.77]
    similarities = np.array([[1.0, 0.91, 0.80, 0.79], *[ordinary] * 4], dtype=np.float32)
    found = set(find_embedding_pairs(Neighbours(indices, similarities), THRESHOLDS))
    assert found == {(0, 1), (0, 2)}
