"""Bad input gets a sensible report: one class, one image, identical images, unreadable blobs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from quality_factories import TINTS, encode, texture

from kai.db.tables import IssueType, Split
from kai.quality import analyse_samples
from kai.quality.analysis import inspect_samples
from kai.quality.findings import Thresholds
from kai.quality.hashes import compute_phash, find_close_pairs, hamming
from kai.quality.images import compute_image_stats, decode_rgb, reblur_retained
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


def _grain(seed: int, size_px: int = 96) -> Image.Image:
    """Coarse gravel-like grain: every pixel differs from its neighbours."""
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size_px, size_px, 3)) * 255).astype(np.uint8))


def _tiles(seed: int, size_px: int = 96) -> Image.Image:
    """Sharp-edged flat tiles: far plainer than grain, yet not blurred at all."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size_px, size_px), (180, 170, 160))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, size_px - 20, 2))
        draw.rectangle((x, y, x + 20, y + 20), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return image


def test_a_sharp_image_plainer_than_its_class_is_not_blurry_and_a_blurred_one_is(
    blobs: LocalBlobStore,
) -> None:
    images = {f"grain{i}": _grain(i) for i in range(8)}
    images["tiles"] = _tiles(1)  # a tile photo filed under gravel by mistake
    images["smeared"] = _grain(99).filter(ImageFilter.GaussianBlur(3))
    records = [
        SampleRecord(uid, "gravel", Split.TRAIN, None, sha, sha, 96, 96)
        for uid, sha in ((uid, blobs.put_bytes(encode(image))) for uid, image in images.items())
    ]

    analysis = analyse_samples(records, blobs)

    blurry = {
        f.sample_uid: f.evidence for f in analysis.findings if f.issue_type is IssueType.BLURRY
    }
    assert set(blurry) == {"smeared"}
    assert blurry["smeared"]["reblurRetained"] >= blurry["smeared"]["reblurMin"]


def test_re_blurring_tells_blur_from_plain_content() -> None:
    def retained(image: Image.Image) -> float:
        return reblur_retained(decode_rgb(encode(image)).mean(axis=2))

    assert retained(_tiles(2)) < 0.3
    assert retained(_grain(3)) < 0.3
    assert retained(_grain(3).filter(ImageFilter.GaussianBlur(3))) > Thresholds().blur_reblur_min
    assert retained(Image.new("L", (64, 64), 90)) == 1.0


def test_many_images_are_inspected_by_worker_processes_with_the_same_results(
    blobs: LocalBlobStore,
) -> None:
    contents = [encode(texture(seed, TINTS["stone"])) for seed in range(240)]
    contents.append(contents[0][:50])  # corrupt
    records = [record(f"s{i}", blobs.put_bytes(data)) for i, data in enumerate(contents)]
    records.append(record("gone", "0" * 64))

    inspected = inspect_samples(records, blobs)

    assert [sample.record.uid for sample in inspected] == [r.uid for r in records]
    for sample, data in zip(inspected[:240], contents, strict=False):
        assert sample.stats == compute_image_stats(data)
    assert inspected[240].stats is None and "decode" in (inspected[240].error or "")
    assert inspected[241].stats is None and inspected[241].error
