"""TensorFlow graphs are recognised by structure; what Kai cannot run is refused with the way in."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from model_factories import (
    frozen_graph_bytes,
    garbage_file,
    save_onnx,
    saved_model_bytes,
    tiny_model,
)

from kai.errors import InvalidInput
from kai.models.formats import ImportOptions, create_format_registry
from kai.models.inspection import resolve_format


def _zip_without_variables(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("classifier/saved_model.pb", saved_model_bytes())
    return path


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return create_format_registry(plugins=False)


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: p.write_bytes(saved_model_bytes()), "TensorFlow SavedModel"),
        (_zip_without_variables, r"TensorFlow SavedModel \(zipped\)"),
    ],
    ids=["saved-model-pb", "zip-without-variables"],
)
def test_tensorflow_graphs_are_refused_with_the_way_to_convert_them(
    registry, tmp_path: Path, make, kind: str
) -> None:
    path = tmp_path / "upload.bin"
    make(path)

    assert registry.resolve(path).name == "tensorflow"
    with pytest.raises(InvalidInput, match=kind) as caught:
        resolve_format(registry, path, ImportOptions())
    assert "TFLiteConverter" in caught.value.message and "tf2onnx" in caught.value.message
    assert "ZIP of the whole SavedModel folder" in caught.value.message


def test_a_frozen_graph_is_detected_and_needs_the_tensorflow_extra(
    registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "frozen.pb"
    path.write_bytes(frozen_graph_bytes())
    assert registry.resolve(path).name == "tensorflow"
    resolve_format(registry, path, ImportOptions())

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(InvalidInput, match=r"pip install 'kai\[tensorflow\]'"):
        resolve_format(registry, path, ImportOptions())


def test_onnx_and_garbage_are_not_taken_for_tensorflow(registry, tmp_path: Path) -> None:
    assert registry.resolve(save_onnx(tiny_model(), tmp_path / "m.pb")).name == "onnx"
    with pytest.raises(InvalidInput, match="not a model Kai can read"):
        registry.resolve(garbage_file(tmp_path / "graph.pb"))
