"""TFLite through the LiteRT interpreter: detection, inference, features and absurd tensors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from model_factories import garbage_file, sample_batch
from tflite_factories import SIZE_PX, linear_tflite, tflite_reference

from kai.errors import CorruptModelFile, InvalidInput, KaiError, UnsafeModelFile
from kai.models.formats import FeatureExtractor, ImportOptions, create_format_registry
from kai.models.formats.tflite_models import TfliteFormat
from kai.models.inspection import ExamineRequest, examine_isolated


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return create_format_registry(plugins=False)


def test_tflite_is_detected_by_its_file_identifier(registry, tmp_path: Path) -> None:
    path = linear_tflite(tmp_path / "model.bin")
    assert registry.resolve(path).name == "tflite"
    assert registry.resolve(path, framework="tflite").name == "tflite"


def test_tflite_inspects_predicts_and_extracts_features(tmp_path: Path) -> None:
    path = linear_tflite(tmp_path / "m.tflite", num_classes=4)
    fmt = TfliteFormat()
    fmt.check(path, ImportOptions())
    inspection = fmt.inspect(path, ImportOptions(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))

    spec = inspection.spec
    assert (spec.num_classes, spec.input.size_px) == (4, (SIZE_PX, SIZE_PX))
    assert (spec.graph_input, spec.graph_output) == ("pixels", "logits")
    assert inspection.parameter_count == 4 * 3 + 4
    assert inspection.details["operators"] == {"MEAN": 1, "FULLY_CONNECTED": 1}

    out_dir = tmp_path / "artifact"
    out_dir.mkdir()
    fmt.prepare(path, inspection, out_dir)
    predictor = fmt.load(out_dir, spec)
    batch = sample_batch().numpy()
    pooled, logits = tflite_reference(batch, num_classes=4)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predictor.predict(batch), expected, rtol=1e-4, atol=1e-5)
    assert isinstance(predictor, FeatureExtractor)
    np.testing.assert_allclose(predictor.extract_features(batch), pooled, rtol=1e-4, atol=1e-5)


def test_a_fixed_input_size_cannot_be_overridden(tmp_path: Path) -> None:
    path = linear_tflite(tmp_path / "m.tflite")
    with pytest.raises(InvalidInput, match="fixed input size"):
        TfliteFormat().inspect(path, ImportOptions(input_size_px=(64, 64)))


def test_an_unknown_graph_output_is_named(tmp_path: Path) -> None:
    path = linear_tflite(tmp_path / "m.tflite")
    with pytest.raises(InvalidInput, match=r"no output named 'probs'.*logits"):
        TfliteFormat().inspect(path, ImportOptions(graph_output="probs"))


def test_tensor_shapes_that_overflow_are_refused_before_any_job(tmp_path: Path) -> None:
    path = linear_tflite(tmp_path / "huge.tflite", input_shape=(1, 2**31 - 1, 2**31 - 1, 3))
    with pytest.raises(UnsafeModelFile, match=r"claims .* bytes"):
        TfliteFormat().check(path, ImportOptions())


def test_garbage_and_truncated_tflite_files_are_refused(registry, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a model Kai can read"):
        registry.resolve(garbage_file(tmp_path / "model.tflite"))
    whole = linear_tflite(tmp_path / "whole.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(whole[:40])
    with pytest.raises(CorruptModelFile, match="does not parse"):
        TfliteFormat().check(cut, ImportOptions())


@pytest.mark.slow
def test_absurd_tensor_sizes_end_the_sandboxed_child_not_this_process(tmp_path: Path) -> None:
    """120 GB claimed by the input: under the check's cap, over the sandbox's memory limit."""
    path = linear_tflite(tmp_path / "absurd.tflite", input_shape=(1, 100_000, 100_000, 3))
    TfliteFormat().check(path, ImportOptions())
    request = ExamineRequest(TfliteFormat(), path, ImportOptions(), tmp_path / "out")

    with pytest.raises(KaiError, match=r"cannot open|memory") as caught:
        examine_isolated(request)

    assert caught.value.code in ("invalid_input", "memory_limit_exceeded", "isolated_task_failed")
    parent = os.getpid()
    healthy = linear_tflite(tmp_path / "healthy.tflite")
    again = examine_isolated(ExamineRequest(TfliteFormat(), healthy, ImportOptions(), tmp_path))
    assert again.inspection.spec.num_classes == 3 and os.getpid() == parent
