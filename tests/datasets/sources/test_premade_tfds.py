"""TFDS sources read through tensorflow-datasets from data dirs that TFDS itself prepared."""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow_datasets", reason="needs the tfds extra: pip install -e '.[tfds]'")

from premade_runs import RunPremade
from tfds_builds import TfdsSpec, example_pixels, prepare_tfds_datasets

from kai.db.engine import Database
from kai.db.tables import DatasetVersion, Sample
from kai.storage.blobs import LocalBlobStore

pytestmark = pytest.mark.db

CLASSES = ("ceramic", "stone", "wood")
TILES = TfdsSpec("kai_test_tiles", CLASSES, {"train": 9, "test": 6}, seed=3)
JPEG_TILES = TfdsSpec("kai_test_jpeg_tiles", ("oak", "slate"), {"train": 4}, image_format="jpeg")
# Images and a caption-like text, but nothing to classify them by.
UNLABELLED = TfdsSpec("kai_test_unlabelled", None, {"train": 3})


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir where TFDS prepared the builders, made once for this module."""
    data_dir = tmp_path_factory.mktemp("tfds-data")
    prepare_tfds_datasets(data_dir, [TILES, JPEG_TILES, UNLABELLED])
    return data_dir


@pytest.fixture
def tfds_dir(prepared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The prepared data dir, as the client's TFDS_DATA_DIR."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(prepared_dir))
    return prepared_dir


@pytest.fixture
def offline_tfds_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data dir, with every download sent to a closed local port and not retried."""
    import tensorflow_datasets.core.download.downloader as downloader

    data_dir = tmp_path / "tfds-empty"
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    # TFDS retries each file ten times with backoff, over three minutes on a refused port.
    monkeypatch.setattr(downloader, "MAX_RETRIES", 0)
    return data_dir


def pixel_digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def assert_tensorflow_stayed_out(loaded_before: bool) -> None:
    """Reading prepared data must not load TensorFlow (unless another test had already)."""
    assert loaded_before or "tensorflow" not in sys.modules


def test_prepared_dataset_imports_with_classes_splits_and_provenance(
    tfds_dir: Path, run_premade: RunPremade, database: Database, blobs: LocalBlobStore
) -> None:
    tensorflow_before = "tensorflow" in sys.modules
    dataset_id, result, error = run_premade("tfds:kai_test_tiles", include_metadata=True)
    assert error is None and result is not None and result["sampleCount"] == 15
    with database.session() as session:
        version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
        assert version.classes == list(CLASSES)
        assert version.metadata_["splitCounts"] == {"train": 9, "val": 0, "test": 6}
        assert version.metadata_["classCounts"]["stone"] == {
            "train": 3,
            "val": 0,
            "test": 2,
            "total": 5,
        }
        provenance = version.metadata_["provenance"]
        assert provenance["repository"] == "tfds" and provenance["reference"] == "kai_test_tiles"
        assert provenance["revision"] == "1.0.0"
        assert provenance["sourceBuilder"] == "kai_test_tiles/1.0.0"
        assert provenance["sourceDataDir"] == str(tfds_dir)
        samples = session.query(Sample).filter_by(version_id=version.id).all()
        stored = {
            (sample.split.value, sample.label, pixel_digest(np.asarray(image)))
            for sample in samples
            for image in [Image.open(io.BytesIO(blobs.read_bytes(sample.blob_sha256)))]
        }
        assert all(s.metadata_["photographer"].startswith(s.split.value) for s in samples)
        assert {s.format for s in samples} == {"png"}
    made = {
        (split, CLASSES[i % 3], pixel_digest(pixels))
        for split in ("train", "test")
        for i, pixels in enumerate(example_pixels(TILES, split))
    }
    assert stored == made
    assert_tensorflow_stayed_out(tensorflow_before)


def test_jpeg_images_keep_their_stored_bytes(
    tfds_dir: Path, run_premade: RunPremade, database: Database, blobs: LocalBlobStore
) -> None:
    dataset_id, result, error = run_premade("tfds:kai_test_jpeg_tiles")
    assert error is None and result is not None and result["sampleCount"] == 4
    with database.session() as session:
        version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
        samples = session.query(Sample).filter_by(version_id=version.id).all()
        assert {s.format for s in samples} == {"jpeg"}
        assert all(s.original_name.endswith(".jpg") for s in samples)
        assert all(blobs.read_bytes(s.blob_sha256)[:2] == b"\xff\xd8" for s in samples)


def test_selected_classes_narrow_the_import(
    tfds_dir: Path, run_premade: RunPremade, database: Database
) -> None:
    dataset_id, result, error = run_premade(
        "tfds:kai_test_tiles:1.0.0", selected_classes=["wood", "ceramic"]
    )
    assert error is None and result is not None and result["sampleCount"] == 10
    with database.session() as session:
        version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
        assert sorted(version.metadata_["classCounts"]) == ["ceramic", "wood"]
        assert version.metadata_["provenance"]["options"]["selectedClasses"] == ["wood", "ceramic"]


def test_unknown_class_fails_listing_the_valid_ones(
    tfds_dir: Path, run_premade: RunPremade, database: Database
) -> None:
    dataset_id, _, error = run_premade(
        "tfds:kai_test_tiles", selected_classes=["ceramic", "marble"]
    )
    assert error is not None and "'marble'" in error and "ceramic, stone, wood" in error
    with database.session() as session:
        assert session.query(DatasetVersion).filter_by(dataset_id=dataset_id).count() == 0


def test_cap_applies_per_class_and_split_and_chooses_the_same_images(
    tfds_dir: Path, run_premade: RunPremade, database: Database
) -> None:
    chosen = []
    for _ in range(2):
        dataset_id, _, error = run_premade("tfds:kai_test_tiles", max_samples_per_class=2)
        assert error is None
        with database.session() as session:
            version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
            counts = version.metadata_["classCounts"]
            assert all(counts[c] == {"train": 2, "val": 0, "test": 2, "total": 4} for c in CLASSES)
            samples = session.query(Sample).filter_by(version_id=version.id)
            chosen.append(sorted((s.original_name, s.blob_sha256) for s in samples))
    assert chosen[0] == chosen[1] and len(chosen[0]) == 12


def test_unprepared_dataset_without_network_names_the_dir_and_the_build_command(
    offline_tfds_dir: Path, run_premade: RunPremade, database: Database
) -> None:
    tensorflow_before = "tensorflow" in sys.modules
    dataset_id, _, error = run_premade("tfds:mnist")
    assert error is not None
    assert "'mnist' is not prepared" in error and str(offline_tfds_dir) in error
    assert "could not be downloaded" in error
    assert '"tfds build mnist --file_format=array_record"' in error
    with database.session() as session:
        assert session.query(DatasetVersion).filter_by(dataset_id=dataset_id).count() == 0
    assert_tensorflow_stayed_out(tensorflow_before)


def test_dataset_with_hand_downloaded_sources_says_where_they_go(
    offline_tfds_dir: Path, run_premade: RunPremade
) -> None:
    _, _, error = run_premade("tfds:imagenet2012")
    assert error is not None and "'imagenet2012' is not prepared" in error
    assert str(offline_tfds_dir / "downloads" / "manual") in error
    assert "tfds build imagenet2012" in error


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("tfds:kai_no_such_builder", "'kai_no_such_builder'"),
        ("tfds:kai_test_tiles:2.0.0", "'kai_test_tiles:2.0.0'"),
        ("tfds:mnist:9.9.9", "'mnist:9.9.9'"),
    ],
)
def test_unknown_builder_or_version_is_not_found_offline(
    tfds_dir: Path, run_premade: RunPremade, source: str, named: str
) -> None:
    _, _, error = run_premade(source)
    assert error is not None and f"no builder {named}" in error and str(tfds_dir) in error
    assert "tfds build" in error and "Available datasets" not in error


def test_dataset_without_class_label_is_not_classification(
    tfds_dir: Path, run_premade: RunPremade
) -> None:
    _, _, error = run_premade("tfds:kai_test_unlabelled")
    assert error is not None and "not image classification" in error
    assert "'photographer': 'Text'" in error
