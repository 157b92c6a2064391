"""The ``kai_head`` format: a trained linear head over another version's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from model_factories import linear_onnx_graph, sample_batch

from kai.errors import InvalidInput
from kai.models.formats import FeatureExtractor, ImportOptions, ModelSpec, create_format_registry
from kai.models.formats.frozen_heads import BASE_DIR, HEAD_NAME, write_head


def head_over_onnx(folder: Path, num_classes: int = 2) -> tuple[ModelSpec, ModelSpec]:
    """A kai_head folder over the linear ONNX graph; the head's spec and the base's."""
    registry = create_format_registry(plugins=False)
    graph = folder / "upload.onnx"
    onnx.save(linear_onnx_graph(4), str(graph))
    base_format = registry.get("onnx")
    inspection = base_format.inspect(graph, ImportOptions())
    (folder / BASE_DIR).mkdir(parents=True)
    base_format.prepare(graph, inspection, folder / BASE_DIR)
    weight = np.arange(num_classes * 3, dtype=np.float32).reshape(num_classes, 3) - 2
    bias = np.linspace(-1, 1, num_classes, dtype=np.float32)
    write_head(
        folder / HEAD_NAME,
        weight,
        bias,
        base_version_id=7,
        base_format="onnx",
        base_spec=inspection.spec,
    )
    spec = ModelSpec(format="kai_head", num_classes=num_classes, class_names=["a", "b"])
    return spec, inspection.spec


def test_a_head_predicts_over_its_base_features(tmp_path: Path) -> None:
    spec, _ = head_over_onnx(tmp_path)
    registry = create_format_registry(plugins=False)
    predictor = registry.get("kai_head").load(tmp_path, spec)
    base = registry.get("onnx").load(tmp_path / BASE_DIR, _)
    batch = sample_batch()[:, :, :32, :32]

    assert isinstance(predictor, FeatureExtractor) and isinstance(base, FeatureExtractor)
    features = base.extract_features(batch)
    np.testing.assert_allclose(predictor.extract_features(batch), features)
    logits = features @ (np.arange(6, dtype=np.float32).reshape(2, 3) - 2).T + [-1.0, 1.0]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predictor.predict(batch), expected, rtol=1e-5, atol=1e-6)


def test_a_head_is_never_detected_in_an_upload(tmp_path: Path) -> None:
    head_over_onnx(tmp_path)
    registry = create_format_registry(plugins=False)
    assert registry.resolve(tmp_path / BASE_DIR / "model.onnx").name == "onnx"
    with pytest.raises(InvalidInput, match="as kai_head"):
        registry.resolve(tmp_path / HEAD_NAME, framework="kai_head")


def test_a_head_file_that_is_not_kais_is_refused(tmp_path: Path) -> None:
    spec, _ = head_over_onnx(tmp_path)
    (tmp_path / HEAD_NAME).write_bytes(b"not a safetensors file")
    with pytest.raises(InvalidInput, match="cannot be read"):
        create_format_registry(plugins=False).get("kai_head").load(tmp_path, spec)


def test_a_head_sized_for_other_classes_is_refused(tmp_path: Path) -> None:
    spec, _ = head_over_onnx(tmp_path)
    wider = spec.model_copy(update={"num_classes": 3, "class_names": ["a", "b", "c"]})
    with pytest.raises(InvalidInput, match="2 outputs but the version 3 classes"):
        create_format_registry(plugins=False).get("kai_head").load(tmp_path, wider)
