"""Bad input gets a sensible report: one class, one image, identical images, unreadable blobs."""

from __future__ import annotations

import pytest
from quality_factories import TINTS, encode, texture

from kai.db.tables import IssueType, Split
from kai.quality import analyse_samples
from kai.quality.hashes import compute_phash, find_close_pairs, hamming
from kai.quality.images import decode_rgb
from kai.quality.samples import SampleRecord
from kai.storage.blobs import LocalBlobStore


def record(uid: str, sha: str, label: str = "stone", split: Split = Split.TRAIN) -> SampleRecord:
    return SampleRecord(uid, label, split, None, sha, sha, 32, 32)


def test_a_single_image_of_a_single_class_gets_a_report(blobs: LocalBlobStore) -> None:
    sha = blobs.put_bytes(encode(texture(1, TINTS["stone"])))
    analysis = analyse_samples([record("a", sha)], blobs)
    assert 0 <= analysis.score <= 100
    assert analysis.metrics["classes"]["tooFewImagesCount"] == 1


def test_identical_images_are_all_duplicates_of_one(blobs: LocalBlobStore) -> None:
    sha = blobs.put_bytes(encode(texture(2, TINTS["stone"])))
    records = [record(f"s{i}", sha, label="ab"[i % 2]) for i in range(20)]
    analysis = analyse_samples(records, blobs)
    assert analysis.issue_counts["exact_duplicate"] == 19
    assert analysis.issue_counts["label_conflict"] == 20
    assert analysis.needs_improvement


def test_a_missing_or_corrupt_copy_is_unreadable_not_a_crash(blobs: LocalBlobStore) -> None:
    good = blobs.put_bytes(encode(texture(3, TINTS["stone"])))
    corrupt = blobs.put_bytes(encode(texture(4, TINTS["stone"]))[:60])
    records = [record("good", good), record("corrupt", corrupt), record("gone", "0" * 64)]
    analysis = analyse_samples(records, blobs)
    unreadable = {f.sample_uid for f in analysis.findings if f.issue_type is IssueType.UNREADABLE}
    assert unreadable == {"corrupt", "gone"}


def test_flat_images_of_different_colours_are_not_near_duplicates(blobs: LocalBlobStore) -> None:
    from PIL import Image

    red = blobs.put_bytes(encode(Image.new("RGB", (32, 32), (200, 30, 30))))
    blue = blobs.put_bytes(encode(Image.new("RGB", (32, 32), (30, 30, 200))))
    analysis = analyse_samples([record("r", red), record("b", blue)], blobs)
    assert "near_duplicate" not in analysis.issue_counts
    assert analysis.issue_counts["low_information"] == 2


def test_phash_survives_recompression_and_tells_textures_apart() -> None:
    image = texture(5, TINTS["ceramic"])
    original = decode_rgb(encode(image)).mean(axis=2)
    again = decode_rgb(encode(image, "JPEG", quality=60)).mean(axis=2)
    other = decode_rgb(encode(texture(6, TINTS["ceramic"]))).mean(axis=2)
    assert hamming(compute_phash(original), compute_phash(again)) <= 6
    assert hamming(compute_phash(original), compute_phash(other)) > 12


def test_close_pairs_come_from_the_band_index() -> None:
    hashes = [0, 0b111, 1 << 63, (1 << 64) - 1]
    assert set(find_close_pairs(hashes, max_distance=3)) == {(0, 1), (0, 2)}
    with pytest.raises(ValueError, match="max_distance"):
        list(find_close_pairs(hashes, max_distance=8))
