"""Format adapters on their own: detection, inspection, conversion and loading, no database."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from model_factories import (
    SIZE_PX,
    TINY_ARCHITECTURE,
    garbage_file,
    linear_onnx_graph,
    onnx_bundle,
    photo_bytes,
    reference_probabilities,
    sample_batch,
    save_onnx,
    save_pickled_module,
    save_renamed_state_dict,
    save_safetensors,
    save_state_dict,
    save_torchscript,
    tiny_model,
)

from kai.config import Settings
from kai.errors import InvalidInput, UnsafeModelFile
from kai.models import predict_images
from kai.models.formats import FeatureExtractor, ImportOptions, create_format_registry
from kai.models.formats.onnx_graphs import check_external_data
from kai.security.images import ImageLimits

OPTIONS = ImportOptions(architecture=TINY_ARCHITECTURE, input_size_px=(SIZE_PX, SIZE_PX))


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return create_format_registry(plugins=False)


@pytest.mark.parametrize(
    ("save", "name", "expected"),
    [
        (save_state_dict, "w.pth", "pytorch_state_dict"),
        (save_safetensors, "w.safetensors", "pytorch_state_dict"),
        (save_torchscript, "m.pt", "torchscript"),
        (save_onnx, "m.onnx", "onnx"),
    ],
)
def test_detection_reads_the_bytes_not_the_name(
    registry, tmp_path: Path, save, name: str, expected: str
) -> None:
    path = save(tiny_model(), tmp_path / name)
    renamed = path.rename(tmp_path / "model.bin")
    assert registry.resolve(renamed).name == expected


def test_garbage_with_a_model_extension_is_refused(registry, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a model Kai can read"):
        registry.resolve(garbage_file(tmp_path / "weights.pth"))


def test_unknown_framework_names_the_known_ones(registry, tmp_path: Path) -> None:
    path = save_state_dict(tiny_model(), tmp_path / "w.pth")
    with pytest.raises(InvalidInput, match=r"Unknown framework 'caffe'.*onnx"):
        registry.resolve(path, framework="caffe")


def test_state_dict_inspection_and_artifact_round_trip(registry, tmp_path: Path) -> None:
    model = tiny_model(num_classes=4)
    path = save_state_dict(model, tmp_path / "w.pth")
    fmt = registry.get("pytorch_state_dict")
    fmt.check(path, OPTIONS)
    inspection = fmt.inspect(path, OPTIONS)

    assert inspection.spec.num_classes == 4
    assert inspection.spec.input.size_px == (SIZE_PX, SIZE_PX)
    assert inspection.parameter_count == sum(p.numel() for p in model.parameters())
    groups = [group.name for group in inspection.layer_groups]
    assert groups[0] == "stem" and groups[-1] == "head" and len(groups) >= 4
    assert inspection.layer_groups[-1].modules == ["classifier"]
    assert inspection.details["keyMapping"] == "by_name"

    out = tmp_path / "artifact"
    out.mkdir()
    files = fmt.prepare(path, inspection, out)
    assert [f.name for f in files] == ["weights.safetensors"]
    predictor = fmt.load(out, inspection.spec)
    batch = sample_batch()
    np.testing.assert_allclose(
        predictor.predict(batch), reference_probabilities(model, batch), atol=1e-5
    )


def test_renamed_keys_are_mapped_by_order_and_said_so(registry, tmp_path: Path) -> None:
    model = tiny_model(num_classes=5, seed=3)
    path = save_renamed_state_dict(model, tmp_path / "other.pth")
    fmt = registry.get("pytorch_state_dict")
    inspection = fmt.inspect(path, OPTIONS)

    assert inspection.details["keyMapping"] == "by_order"
    assert any("mapped by order" in note for note in inspection.notes)
    out = tmp_path / "artifact"
    out.mkdir()
    fmt.prepare(path, inspection, out)
    batch = sample_batch()
    np.testing.assert_allclose(
        fmt.load(out, inspection.spec).predict(batch),
        reference_probabilities(model, batch),
        atol=1e-5,
    )


def test_weights_of_another_architecture_are_refused(registry, tmp_path: Path) -> None:
    path = save_state_dict(tiny_model(), tmp_path / "w.pth")
    options = ImportOptions(architecture="resnet18")
    with pytest.raises(InvalidInput, match="does not fit"):
        registry.get("pytorch_state_dict").inspect(path, options)


def test_unknown_architecture_suggests_close_names(registry, tmp_path: Path) -> None:
    path = save_state_dict(tiny_model(), tmp_path / "w.pth")
    with pytest.raises(InvalidInput, match=r"did you mean.*efficientnet_lite0"):
        registry.get("pytorch_state_dict").check(
            path, ImportOptions(architecture="efficientnet_lite")
        )


def test_pickled_module_is_refused_with_state_dict_advice(registry, tmp_path: Path) -> None:
    path = save_pickled_module(tiny_model(), tmp_path / "whole.pt")
    fmt = registry.resolve(path)
    with pytest.raises(UnsafeModelFile, match="state_dict"):
        fmt.check(path, OPTIONS)


def test_torchscript_inspection_counts_outputs(registry, tmp_path: Path) -> None:
    model = tiny_model(num_classes=6)
    path = save_torchscript(model, tmp_path / "m.pt")
    fmt = registry.get("torchscript")
    fmt.check(path, OPTIONS)
    inspection = fmt.inspect(path, ImportOptions(input_size_px=(SIZE_PX, SIZE_PX)))
    assert inspection.spec.num_classes == 6
    assert inspection.parameter_count == sum(p.numel() for p in model.parameters())
    out = tmp_path / "artifact"
    out.mkdir()
    fmt.prepare(path, inspection, out)
    batch = sample_batch()
    np.testing.assert_allclose(
        fmt.load(out, inspection.spec).predict(batch),
        reference_probabilities(model, batch),
        atol=1e-5,
    )


def test_onnx_export_inspects_and_predicts_like_the_original(registry, tmp_path: Path) -> None:
    model = tiny_model(num_classes=3)
    path = save_onnx(model, tmp_path / "m.onnx")
    fmt = registry.get("onnx")
    inspection = fmt.inspect(path, ImportOptions())
    assert inspection.spec.graph_input == "pixels" and inspection.spec.graph_output == "logits"
    assert inspection.spec.input.size_px == (SIZE_PX, SIZE_PX)
    assert inspection.spec.num_classes == 3
    out = tmp_path / "artifact"
    out.mkdir()
    fmt.prepare(path, inspection, out)
    batch = sample_batch()
    predictor = fmt.load(out, inspection.spec)
    np.testing.assert_allclose(
        predictor.predict(batch), reference_probabilities(model, batch), atol=1e-4
    )
    assert isinstance(predictor, FeatureExtractor)
    np.testing.assert_allclose(
        predictor.extract_features(batch), pre_logits(model, batch), atol=1e-4
    )


def pre_logits(model: torch.nn.Module, batch: torch.Tensor) -> np.ndarray:
    """timm's penultimate embedding: what the classifier layer reads."""
    with torch.inference_mode():
        return model.forward_head(model.forward_features(batch), pre_logits=True).numpy()


def test_state_dict_predictor_gives_the_embedding_its_head_reads(registry, tmp_path: Path) -> None:
    model = tiny_model(num_classes=3)
    path = save_safetensors(model, tmp_path / "w.safetensors")
    fmt = registry.get("pytorch_state_dict")
    inspection = fmt.inspect(path, OPTIONS)
    out = tmp_path / "artifact"
    out.mkdir()
    fmt.prepare(path, inspection, out)
    predictor = fmt.load(out, inspection.spec)
    batch = sample_batch()
    assert isinstance(predictor, FeatureExtractor)
    np.testing.assert_allclose(
        predictor.extract_features(batch), pre_logits(model, batch), atol=1e-5
    )


def test_onnx_bundle_with_external_data_is_kept_whole(registry, tmp_path: Path) -> None:
    path = onnx_bundle(tmp_path / "bundle.zip")
    fmt = registry.resolve(path)
    assert fmt.name == "onnx"
    fmt.check(path, ImportOptions())
    inspection = fmt.inspect(path, ImportOptions())
    out = tmp_path / "artifact"
    out.mkdir()
    files = fmt.prepare(path, inspection, out)
    assert {(f.role, f.name) for f in files} == {
        ("weights", "model.onnx"),
        ("external_data", "weights.bin"),
    }
    probabilities = fmt.load(out, inspection.spec).predict(torch.ones(1, 3, SIZE_PX, SIZE_PX))
    # Mean colour (1, 1, 1) times the weight's columns: logits 0.9, 1.2, 1.5.
    np.testing.assert_allclose(probabilities, _softmax(np.array([[0.9, 1.2, 1.5]])), atol=1e-5)


@pytest.mark.parametrize(
    "location", ["../outside.bin", "/etc/passwd", "C:\\weights.bin", "data/../../x.bin"]
)
def test_external_data_outside_the_upload_is_refused(tmp_path: Path, location: str) -> None:
    (tmp_path / "outside.bin").write_bytes(b"\0" * 36)
    base = tmp_path / "upload"
    base.mkdir()
    with pytest.raises(InvalidInput, match="only plain relative paths"):
        check_external_data(linear_onnx_graph(location=location), base)


def test_external_data_through_a_link_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 36)
    base = tmp_path / "upload"
    base.mkdir()
    os.symlink(secret, base / "weights.bin")
    with pytest.raises(InvalidInput, match="is a link"):
        check_external_data(linear_onnx_graph(location="weights.bin"), base)


def test_missing_external_data_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="lacks"):
        check_external_data(linear_onnx_graph(location="weights.bin"), tmp_path)


def test_a_bundle_with_a_path_escape_is_refused(registry, tmp_path: Path) -> None:
    path = onnx_bundle(tmp_path / "bundle.zip", location="../escape.bin")
    with pytest.raises(InvalidInput):
        registry.resolve(path).check(path, ImportOptions())
    assert not (tmp_path / "escape.bin").exists()


def test_plugin_format_is_found_through_its_entry_point(npz_plugin: str, tmp_path: Path) -> None:
    registry = create_format_registry()
    assert npz_plugin in registry.formats
    path = tmp_path / "linear.npz"
    np.savez(path, weight=np.eye(3, dtype=np.float32) * 10, bias=np.zeros(3, np.float32))
    fmt = registry.resolve(path)
    assert fmt.name == npz_plugin
    inspection = fmt.inspect(path, ImportOptions())
    out = tmp_path / "artifact"
    out.mkdir()
    fmt.prepare(path, inspection, out)
    red = torch.zeros(1, 3, 32, 32)
    red[:, 0] = 1.0
    assert fmt.load(out, inspection.spec).predict(red).argmax() == 0


def test_plugins_load_only_when_asked(npz_plugin: str) -> None:
    assert npz_plugin not in create_format_registry(plugins=False).formats


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_predictions_take_the_temperature_a_version_keeps(tmp_path: Path) -> None:
    registry = create_format_registry()
    path = save_safetensors(tiny_model(num_classes=3), tmp_path / "w.safetensors")
    inspection = registry.get("pytorch_state_dict").inspect(path, OPTIONS)
    artifacts = registry.get("pytorch_state_dict").prepare(path, inspection, tmp_path)
    plain = registry.get("pytorch_state_dict").load(artifacts[0].path.parent, inspection.spec)
    warm = inspection.spec.model_copy(update={"temperature": 4.0})
    softened = registry.get("pytorch_state_dict").load(artifacts[0].path.parent, warm)
    images = [("a.png", photo_bytes(1)), ("b.png", photo_bytes(2))]
    limits = ImageLimits.from_settings(Settings())

    raw = predict_images(plain, images, limits=limits, top_k=3)
    calibrated = predict_images(softened, images, limits=limits, top_k=3)

    for before, after in zip(raw, calibrated, strict=True):
        assert [s.index for s in after.top] == [s.index for s in before.top]
        assert after.top[0].probability < before.top[0].probability
        logits = np.log([s.probability for s in before.top]) / 4.0
        expected = np.exp(logits) / np.exp(logits).sum()
        np.testing.assert_allclose([s.probability for s in after.top], expected, atol=1e-4)
