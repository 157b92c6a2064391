"""Keras 3 models on the PyTorch backend: detection, safe loading, features, hostile configs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from keras_factories import (
    SIZE_PX,
    foreign_object,
    head_config,
    keras,
    keras_outputs,
    nested_keras_model,
    rewrite_config,
    save_h5,
    save_keras,
    save_lambda_model,
    tiny_keras_model,
)
from model_factories import ImportModel, sample_batch

from kai.errors import CorruptModelFile, InvalidInput, UnsafeModelFile
from kai.models.formats import FeatureExtractor, ImportOptions, create_format_registry
from kai.models.formats.keras_models import KerasFormat

OPTIONS = ImportOptions(class_names=["porcelain", "slate", "oak"])


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return create_format_registry(plugins=False)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "canary"


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_keras(tiny_keras_model(), tmp_path_factory.mktemp("keras") / "tiny.keras")


@pytest.mark.parametrize("save", [save_keras, save_h5], ids=["keras", "h5"])
def test_keras_files_are_detected_by_their_bytes(registry, tmp_path: Path, save) -> None:
    path = save(tiny_keras_model(), tmp_path / ("m.keras" if save is save_keras else "m.h5"))
    assert registry.resolve(path.rename(tmp_path / "weights.bin")).name == "keras"


@pytest.mark.parametrize("save", [save_keras, save_h5], ids=["keras", "h5"])
def test_keras_model_inspects_predicts_and_extracts_features(tmp_path: Path, save) -> None:
    model = tiny_keras_model()
    path = save(model, tmp_path / ("m.keras" if save is save_keras else "m.h5"))
    fmt = KerasFormat()
    fmt.check(path, OPTIONS)
    inspection = fmt.inspect(path, OPTIONS)

    spec = inspection.spec
    assert (spec.num_classes, spec.input.size_px) == (3, (SIZE_PX, SIZE_PX))
    assert spec.class_names == ["porcelain", "slate", "oak"]
    assert inspection.parameter_count == model.count_params()
    assert [g.name for g in inspection.layer_groups] == ["stem", "head"]
    assert inspection.layer_groups[-1].modules == ["head"]

    out_dir = tmp_path / "artifact"
    out_dir.mkdir()
    fmt.prepare(path, inspection, out_dir)
    predictor = fmt.load(out_dir, spec)
    batch = sample_batch().numpy()
    logits = keras_outputs(model, batch)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predictor.predict(batch), expected, rtol=1e-4, atol=1e-5)

    assert isinstance(predictor, FeatureExtractor)
    features = predictor.extract_features(batch)
    pooled = keras.Model(model.input, model.get_layer("pool").output)
    np.testing.assert_allclose(features, keras_outputs(pooled, batch), rtol=1e-4, atol=1e-5)


def test_softmax_output_is_recognised_and_not_applied_twice(tmp_path: Path) -> None:
    path = save_keras(tiny_keras_model(softmax=True), tmp_path / "m.keras")
    inspection = KerasFormat().inspect(path, ImportOptions())
    assert inspection.spec.outputs_probabilities
    assert any("ImageNet's are assumed" in note for note in inspection.notes)


def test_nested_models_load_when_every_part_is_keras(tmp_path: Path) -> None:
    path = save_keras(nested_keras_model(), tmp_path / "nested.keras")
    KerasFormat().check(path, ImportOptions())
    assert KerasFormat().inspect(path, ImportOptions()).spec.num_classes == 2


def test_head_layer_option_names_an_existing_layer(tiny_file: Path) -> None:
    with pytest.raises(InvalidInput, match="no layer named 'classifier'"):
        KerasFormat().inspect(tiny_file, ImportOptions(head_layer="classifier"))


def test_the_lambda_payload_is_real_when_keras_is_told_to_trust_it(
    tmp_path: Path, canary: Path
) -> None:
    """The control: unsafe loading runs the hostile file's code, so the canary works."""
    path = save_lambda_model(tmp_path / "lambda.keras", canary)
    model = keras.saving.load_model(str(path), safe_mode=False)
    model(np.zeros((1, SIZE_PX, SIZE_PX, 3), np.float32))
    assert canary.exists()


@pytest.mark.parametrize("save", [save_keras, save_h5], ids=["keras", "h5"])
def test_a_lambda_layer_is_refused_before_keras_reads_the_file(
    registry, tmp_path: Path, canary: Path, save
) -> None:
    path = save_lambda_model(tmp_path / "lambda.keras", canary)
    if save is save_h5:
        path = save_h5(keras.saving.load_model(str(path), safe_mode=False), tmp_path / "l.h5")
        canary.unlink(missing_ok=True)

    with pytest.raises(UnsafeModelFile, match="Lambda layer"):
        registry.resolve(path).check(path, ImportOptions())
    with pytest.raises(UnsafeModelFile, match="Lambda layer"):
        KerasFormat().inspect(path, ImportOptions())
    assert not canary.exists()


def test_a_lambda_deep_inside_a_wrapper_of_a_nested_model_is_refused(
    tmp_path: Path, canary: Path
) -> None:
    lambda_file = save_lambda_model(tmp_path / "lambda.keras", canary)
    with zipfile.ZipFile(lambda_file) as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    payload = next(layer for layer in layers if layer["class_name"] == "Lambda")
    nested = save_keras(nested_keras_model(), tmp_path / "nested.keras")

    def hide(config: dict[str, Any]) -> None:
        inner = next(layer for layer in config["config"]["layers"] if layer["name"] == "inner")
        wrapper = foreign_object("keras.layers", "TimeDistributed", {"layer": payload})
        inner["config"]["layers"].append(wrapper)

    path = rewrite_config(nested, tmp_path / "hidden.keras", hide)
    with pytest.raises(UnsafeModelFile, match=r"Lambda layer .* at config\.config\.layers"):
        KerasFormat().check(path, ImportOptions())
    assert not canary.exists()


def test_an_object_from_a_module_outside_keras_is_refused(
    tiny_file: Path, tmp_path: Path, canary: Path
) -> None:
    def plant(config: dict[str, Any]) -> None:
        head_config(config)["kernel_initializer"] = foreign_object(
            "os", "system", f"touch {canary}"
        )

    path = rewrite_config(tiny_file, tmp_path / "foreign.keras", plant)
    with pytest.raises(UnsafeModelFile, match="'system' from module 'os', outside Keras"):
        KerasFormat().check(path, ImportOptions())
    with pytest.raises(UnsafeModelFile):
        KerasFormat().inspect(path, ImportOptions())
    assert not canary.exists()


def test_a_keras_function_that_is_no_class_is_refused_once_keras_resolves_it(
    tiny_file: Path, tmp_path: Path, canary: Path
) -> None:
    """Inside the keras package but not a layer: get_file would download on the file's say."""

    def plant(config: dict[str, Any]) -> None:
        head_config(config)["kernel_initializer"] = foreign_object(
            "keras.utils", "get_file", {"origin": f"file://{canary}"}
        )

    path = rewrite_config(tiny_file, tmp_path / "function.keras", plant)
    KerasFormat().check(path, ImportOptions())  # Nothing in the names alone is wrong.
    with pytest.raises(UnsafeModelFile, match=r"'keras\.utils\.get_file', which is no built-in"):
        KerasFormat().inspect(path, ImportOptions())
    assert not canary.exists()


def test_a_file_that_switches_unsafe_deserialization_on_is_refused(
    tmp_path: Path, canary: Path
) -> None:
    lambda_file = save_lambda_model(tmp_path / "lambda.keras", canary)

    def switch(config: dict[str, Any]) -> None:
        first = config["config"]["layers"][0]["config"]
        first["dtype"] = foreign_object("keras.config", "function", "enable_unsafe_deserialization")

    path = rewrite_config(lambda_file, tmp_path / "switch.keras", switch)
    with pytest.raises(UnsafeModelFile, match="switch unsafe deserialization on") as caught:
        KerasFormat().check(path, ImportOptions())
    assert "Lambda layer" in caught.value.message
    assert not canary.exists()


def test_a_truncated_keras_archive_is_named_corrupt(tiny_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.keras"
    path.write_bytes(tiny_file.read_bytes()[:300])
    with pytest.raises(CorruptModelFile, match="not a readable Keras archive"):
        KerasFormat().check(path, ImportOptions())


def test_weights_only_h5_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "only.weights.h5"
    tiny_keras_model().save_weights(str(path))
    with pytest.raises(CorruptModelFile, match="holds weights only"):
        KerasFormat().check(path, ImportOptions())


@pytest.mark.slow
def test_keras_file_imports_through_the_sandbox_and_records_its_checks(
    import_model: ImportModel, tiny_file: Path
) -> None:
    _, result, error = import_model(tiny_file, class_names=["porcelain", "slate", "oak"])
    assert error is None and result is not None
    assert (result["format"], result["numClasses"]) == ("keras", 3)
