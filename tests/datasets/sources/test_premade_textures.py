"""The sample texture set: real crops of scikit-image's photographs, made the same way each time."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from PIL import Image
from premade_runs import RunPremade

from kai.config import Settings
from kai.datasets.sources.textures import BANDS, TEXTURE_CLASSES, open_textures, plan_crops
from kai.db.engine import Database
from kai.db.tables import DatasetVersion, Sample, Split


def test_crops_cover_three_scales_and_keep_splits_apart() -> None:
    crops = plan_crops()
    assert len(crops) == 552
    assert Counter(c.label for c in crops) == {label: 184 for label in TEXTURE_CLASSES}
    assert {c.size_px for c in crops} == {64, 96, 128}
    bands = {split: (top, bottom) for split, top, bottom, _ in BANDS}
    for crop in crops:
        top, bottom = bands[crop.split]
        assert top <= crop.top and crop.top + crop.size_px <= bottom
    assert len({c.name for c in crops}) == len(crops)


def test_crops_are_real_and_deterministic(settings: Settings) -> None:
    with open_textures("textures", settings) as first, open_textures("textures", settings) as again:
        name = first.images[5].name
        data = first.files.read(name)
        assert data == again.files.read(name)
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.size[0] in (64, 96, 128)
    # Photographs, not flat fills: the crop has many distinct grey levels.
    assert len(set(image.convert("L").get_flattened_data())) > 20


@pytest.mark.db
def test_sample_import_by_catalog_id_needs_no_network(
    run_premade: RunPremade, database: Database
) -> None:
    dataset_id, result, error = run_premade(
        "kai-textures", max_samples_per_class=3, include_metadata=True
    )
    assert error is None and result is not None
    assert result["sampleCount"] == 27  # 3 classes, 3 splits, 3 each
    with database.session() as session:
        version = session.query(DatasetVersion).filter_by(dataset_id=dataset_id).one()
        assert version.classes == list(TEXTURE_CLASSES)
        provenance = version.metadata_["provenance"]
        assert provenance["catalogId"] == "kai-textures"
        assert provenance["options"]["maxSamplesPerClass"] == 3
        samples = session.query(Sample).filter_by(version_id=version.id).all()
        assert {s.split for s in samples} == {Split.TRAIN, Split.VAL, Split.TEST}
        assert all(s.metadata_["photograph"] == s.label for s in samples)


@pytest.mark.db
def test_same_seed_picks_the_same_crops(run_premade: RunPremade, database: Database) -> None:
    first, _, _ = run_premade("kai-textures", max_samples_per_class=2)
    second, _, _ = run_premade("kai-textures", max_samples_per_class=2)
    with database.session() as session:
        names = [
            sorted(
                s.original_name
                for s in session.query(Sample)
                .join(DatasetVersion, DatasetVersion.id == Sample.version_id)
                .filter(DatasetVersion.dataset_id == dataset_id)
            )
            for dataset_id in (first, second)
        ]
    assert names[0] == names[1] and len(names[0]) == 18
