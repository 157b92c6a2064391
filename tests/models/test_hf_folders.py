"""Hugging Face model folders uploaded as a ZIP: transformers classifiers and timm's layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from model_factories import (
    SIZE_PX,
    TINY_ARCHITECTURE,
    VIT_LABELS,
    reference_probabilities,
    sample_batch,
    save_transformers_folder,
    tiny_model,
    tiny_vit,
    vit_logits,
    zip_folder,
)
from repositories.model_caches import safetensors_bytes, timm_config

from kai.errors import InvalidInput, UnsafeModelFile
from kai.models.formats import FeatureExtractor, ImportOptions, create_format_registry


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return create_format_registry(plugins=False)


def _round_trip(registry, path: Path, tmp_path: Path, options: ImportOptions):  # type: ignore[no-untyped-def]
    fmt = registry.resolve(path)
    fmt.check(path, options)
    inspection = fmt.inspect(path, options)
    out_dir = tmp_path / "artifact"
    out_dir.mkdir()
    fmt.prepare(path, inspection, out_dir)
    return fmt, inspection, registry.get(inspection.spec.format).load(out_dir, inspection.spec)


def test_a_transformers_folder_zip_inspects_predicts_and_extracts_features(
    registry, tmp_path: Path
) -> None:
    model = tiny_vit()
    path = zip_folder(save_transformers_folder(model, tmp_path / "vit"), tmp_path / "vit.zip")

    fmt, inspection, predictor = _round_trip(registry, path, tmp_path, ImportOptions())

    assert fmt.name == "transformers"
    spec = inspection.spec
    assert (spec.architecture, spec.class_names) == ("vit", list(VIT_LABELS))
    assert (spec.input.size_px, spec.input.std) == ((SIZE_PX, SIZE_PX), (0.5, 0.5, 0.5))
    assert inspection.parameter_count == sum(p.numel() for p in model.parameters())
    assert inspection.layer_groups[-1].name == "head"
    batch = sample_batch()
    logits = vit_logits(model, batch)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predictor.predict(batch), expected, rtol=1e-4, atol=1e-5)
    assert isinstance(predictor, FeatureExtractor)
    assert predictor.extract_features(batch).shape == (2, 16)


def test_a_timm_folder_zip_imports_as_a_state_dict_with_its_config(
    registry, tmp_path: Path
) -> None:
    model = tiny_model(num_classes=3)
    folder = tmp_path / "timm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(timm_config()))
    (folder / "model.safetensors").write_bytes(safetensors_bytes(model))
    path = zip_folder(folder, tmp_path / "timm.zip")

    _, inspection, predictor = _round_trip(registry, path, tmp_path, ImportOptions())

    spec = inspection.spec
    assert (spec.format, spec.architecture) == ("pytorch_state_dict", TINY_ARCHITECTURE)
    assert spec.class_names == ["porcelain", "slate", "oak"]
    batch = sample_batch()
    spec_size = spec.input.size_px
    assert spec_size == (40, 40)
    np.testing.assert_allclose(
        predictor.predict(batch), reference_probabilities(model, batch), rtol=1e-4, atol=1e-5
    )
    assert isinstance(predictor, FeatureExtractor)
    assert predictor.extract_features(batch).shape[0] == 2


def test_a_folder_whose_config_maps_to_its_own_code_is_refused(registry, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    folder = save_transformers_folder(tiny_vit(), tmp_path / "vit")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageClassification": "modeling_tiles.TilesModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_tiles.py").write_text(f"open({str(canary)!r}, 'w').close()\n")
    path = zip_folder(folder, tmp_path / "vit.zip")

    with pytest.raises(UnsafeModelFile, match="never runs a model's own code"):
        registry.resolve(path).check(path, ImportOptions())
    assert not canary.exists()


def test_a_model_type_without_an_image_classifier_is_named(registry, tmp_path: Path) -> None:
    folder = save_transformers_folder(tiny_vit(), tmp_path / "vit")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "gpt2"}))
    path = zip_folder(folder, tmp_path / "vit.zip")
    with pytest.raises(InvalidInput, match="model_type 'gpt2' has no transformers image"):
        registry.resolve(path).check(path, ImportOptions())
