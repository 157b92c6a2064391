"""TensorFlow SavedModels: detected from the ZIP's structure, checked, and run out of process."""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from model_factories import zipped_saved_model
from savedmodel_factories import (
    NUM_CLASSES,
    SIZE_PX,
    build_saved_models,
    inspect_each,
    savedmodel_reference,
)

from kai.errors import InvalidInput, UnsafeModelFile
from kai.models.formats import (
    FeatureExtractor,
    ImportOptions,
    Inspection,
    ModelSpec,
    create_format_registry,
)
from kai.models.formats.preprocessing import softmax
from kai.models.formats.saved_models import (
    SavedModelFormat,
    SavedModelPredictor,
    WorkerGraph,
    saved_model_folder,
)
from kai.models.inspection import SANDBOX_MEMORY_BYTES, SANDBOX_TIMEOUT_SECONDS, resolve_format
from kai.security.sandbox import run_isolated


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return create_format_registry(plugins=False)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # Looked up, not imported: TensorFlow must stay out of this process.
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs the tensorflow extra: pip install -e '.[tensorflow]'")
    out = tmp_path_factory.mktemp("saved_models")
    return build_saved_models(out, out / "canary")


def test_a_zipped_savedmodel_folder_is_detected_as_savedmodel(registry, tmp_path: Path) -> None:
    assert registry.resolve(zipped_saved_model(tmp_path / "m.zip")).name == "savedmodel"


def test_a_zip_without_variables_is_refused_as_a_graph_kai_does_not_run(
    registry, tmp_path: Path
) -> None:
    path = tmp_path / "bare.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("classifier/saved_model.pb", b"\x08\x01")
    assert registry.resolve(path).name == "tensorflow"
    with pytest.raises(InvalidInput, match="ZIP of the whole SavedModel folder"):
        resolve_format(registry, path, ImportOptions())


def test_without_tensorflow_the_error_says_how_to_add_the_extra(
    registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    path = zipped_saved_model(tmp_path / "m.zip")

    with pytest.raises(InvalidInput, match=r"pip install 'kai\[tensorflow\]'"):
        resolve_format(registry, path, ImportOptions())
    # The sandboxed inspection imports TensorFlow itself and says the same.
    with pytest.raises(InvalidInput, match=r"pip install 'kai\[tensorflow\]'"):
        SavedModelFormat().inspect(path, ImportOptions())


def test_a_savedmodel_zip_that_climbs_out_is_refused_and_writes_nothing_outside(
    registry, tmp_path: Path
) -> None:
    upload_dir = tmp_path / "upload"
    upload_dir.mkdir()
    path = upload_dir / "m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../escaped/saved_model.pb", b"\x08\x01")
        archive.writestr("../escaped/variables/variables.index", b"\x00")
    assert registry.resolve(path).name == "savedmodel"
    with pytest.raises(InvalidInput):
        resolve_format(registry, path, ImportOptions())
    assert not (tmp_path / "escaped").exists()


def test_a_truncated_savedmodel_zip_is_not_taken_for_a_model(registry, tmp_path: Path) -> None:
    data = zipped_saved_model(tmp_path / "m.zip").read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match="not a model Kai can read"):
        resolve_format(registry, truncated, ImportOptions())


@pytest.mark.slow
def test_a_worker_runs_the_savedmodel_with_its_features_and_tensorflow_stays_out(
    saved_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An earlier test in this process may have read TFDS data, which loads TensorFlow; the
    # predictor must choose its worker as it does in a process without it.
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    model_format = SavedModelFormat()
    folder = saved_model_folder(saved_models["classifier"])
    out = tmp_path / "artifact"
    out.mkdir()
    spec = ModelSpec(
        format="savedmodel", num_classes=NUM_CLASSES, graph_input="pixels", graph_output="logits"
    )
    spec.input.size_px = (SIZE_PX, SIZE_PX)
    files = model_format.prepare(saved_models["classifier"], Inspection(spec=spec), out)
    assert {f.name for f in files} >= {"saved_model/saved_model.pb"}
    assert folder.is_dir()

    predictor = model_format.load(out, spec)
    batch = np.random.default_rng(3).standard_normal((2, 3, SIZE_PX, SIZE_PX), np.float32)
    pooled, logits = savedmodel_reference(batch)

    np.testing.assert_allclose(predictor.predict(batch), softmax(logits), atol=1e-5)
    assert isinstance(predictor, FeatureExtractor)
    np.testing.assert_allclose(predictor.extract_features(batch), pooled, atol=1e-5)
    # A worker that dies is started again for the next batch.
    assert isinstance(predictor, SavedModelPredictor) and isinstance(predictor.graph, WorkerGraph)
    predictor.graph.kill()
    np.testing.assert_allclose(predictor.predict(batch), softmax(logits), atol=1e-5)
    assert "tensorflow" not in sys.modules


@pytest.mark.slow
def test_a_pyfunc_graph_is_refused_before_tensorflow_loads_it(
    saved_models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "artifact"
    out.mkdir()
    spec_args = {"format": "savedmodel", "num_classes": 3}
    spec = ModelSpec(**spec_args)
    model_format = SavedModelFormat()
    model_format.prepare(saved_models["pyfunc"], Inspection(spec=spec), out)

    with pytest.raises(UnsafeModelFile, match="EagerPyFunc operator, which runs Python"):
        model_format.load(out, spec)
    assert not (saved_models["pyfunc"].parent / "canary").exists()


@pytest.mark.slow
def test_hostile_graphs_are_refused_and_frozen_graphs_need_their_output_named(
    saved_models: dict[str, Path],
) -> None:
    for name in ("custom_op", "write_file"):
        saved_model_folder(saved_models[name])
    frozen = str(saved_models["frozen"])
    uploads = [
        ("savedmodel", str(saved_models["custom_op"]), {}),
        ("savedmodel", str(saved_models["write_file"]), {}),
        ("tensorflow", frozen, {}),
        ("tensorflow", frozen, {"graph_output": "logits"}),
        ("tensorflow", frozen, {"graph_output": "logits", "graph_input": "images"}),
        ("savedmodel", str(saved_models["classifier"]), {"graph_output": "scores"}),
        ("savedmodel", str(saved_models["classifier"]), {"graph_input": "images"}),
    ]

    answers = run_isolated(
        inspect_each,
        uploads,
        memory_bytes=SANDBOX_MEMORY_BYTES,
        timeout_seconds=SANDBOX_TIMEOUT_SECONDS,
        subject="the test graphs",
    )

    custom, write_file, ambiguous, frozen_facts, wrong_input, no_output, no_input = answers
    assert custom["code"] == "unsafe_model_file"
    assert "'KaiCustomMatMul', which TensorFlow does not register" in custom["error"]
    assert "WriteFile operator, which reaches the file system" in write_file["error"]
    assert not (saved_models["write_file"].parent / "canary").exists()
    assert "frozen graph has 2 outputs" in ambiguous["error"]
    assert "graphOutput" in ambiguous["error"]
    assert frozen_facts == {
        "numClasses": NUM_CLASSES,
        "parameterCount": 3 * NUM_CLASSES + NUM_CLASSES,
        "graphInput": "pixels",
        "graphOutput": "logits",
    }
    assert "no input named 'images'; it has ['pixels']" in wrong_input["error"]
    assert "'serving_default' signature has no output named 'scores'" in no_output["error"]
    assert "it has ['logits']" in no_output["error"]
    assert "'serving_default' signature has no input named 'images'" in no_input["error"]
