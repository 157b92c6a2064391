"""The ``model.import`` job end to end: sandboxed inspection, artifacts, versions, cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
from model_factories import (
    SIZE_PX,
    TINY_ARCHITECTURE,
    ImportModel,
    garbage_file,
    linear_onnx_graph,
    reference_probabilities,
    sample_batch,
    save_state_dict,
    save_torchscript,
    tiny_model,
)
from sqlalchemy import select

from kai.db.engine import Database
from kai.db.tables import ModelArtifact, ModelStatus
from kai.errors import UnsafeModelFile
from kai.models import (
    PredictorCache,
    list_artifacts,
    list_lineage,
    list_versions,
    load_request_for,
    read_card,
    read_model,
    record_evaluation,
    resolve_version,
    update_card,
)
from kai.storage.blobs import LocalBlobStore
from kai.storage.gc import collect_garbage

pytestmark = pytest.mark.db


def test_state_dict_import_records_a_version_with_a_safetensors_artifact(
    tmp_path: Path, import_model: ImportModel, database: Database, blobs: LocalBlobStore
) -> None:
    model = tiny_model(num_classes=3)
    path = save_state_dict(model, tmp_path / "tiles.pth")
    model_id, result, error = import_model(
        path,
        architecture=TINY_ARCHITECTURE,
        input_size_px=(SIZE_PX, SIZE_PX),
        class_names=["stone", "tile", "wood"],
    )
    assert error is None and result is not None
    assert result["version"] == 1 and result["numClasses"] == 3

    with database.session() as session:
        stored, version = read_model(session, model_id)
        assert stored.status is ModelStatus.READY and version is not None
        assert version.format == "pytorch_state_dict" and version.framework == "pytorch"
        assert version.architecture == TINY_ARCHITECTURE
        assert version.class_names == ["stone", "tile", "wood"]
        assert version.input_spec["size_px"] == [SIZE_PX, SIZE_PX]
        assert version.parameter_count == sum(p.numel() for p in model.parameters())
        assert version.layer_groups[0]["name"] == "stem"
        assert version.safety["verdict"] == "passed"
        assert any("isolated process" in check for check in version.safety["checks"])
        assert version.provenance["kind"] == "uploaded"
        artifacts = {a.role: a for a in list_artifacts(session, version.id)}
        request = load_request_for(session, version)
        sha256 = version.sha256

    assert sha256 == artifacts["original"].blob_sha256
    weights = blobs.local_path(artifacts["weights"].blob_sha256)
    assert weights is not None
    assert set(safetensors.torch.load_file(weights)) == set(model.state_dict())

    predictor = PredictorCache(blobs, tmp_path / "cache").get(request)
    batch = sample_batch()
    np.testing.assert_allclose(
        predictor.predict(batch), reference_probabilities(model, batch), atol=1e-5
    )
    report = collect_garbage(database, blobs, grace_seconds=0)
    assert report.blobs_deleted == 0 and report.blobs_referenced == 2


def test_reimport_adds_versions_a_failed_one_adds_none_and_cards_are_editable(
    tmp_path: Path, import_model: ImportModel, database: Database
) -> None:
    first = save_state_dict(tiny_model(seed=1), tmp_path / "a.pth")
    second = save_torchscript(tiny_model(seed=2), tmp_path / "b.pt")
    model_id, _, error = import_model(
        first, architecture=TINY_ARCHITECTURE, input_size_px=(SIZE_PX, SIZE_PX)
    )
    assert error is None
    again, result, error = import_model(second, model_id=model_id, input_size_px=(SIZE_PX, SIZE_PX))
    assert error is None and again == model_id and result is not None
    assert result["version"] == 2 and result["format"] == "torchscript"
    _, _, error = import_model(first, model_id=model_id, architecture="resnet18")
    assert error is not None and "does not fit" in error

    with database.session() as session:
        model, _ = read_model(session, model_id)
        assert model.status is ModelStatus.READY and "does not fit" in (model.error or "")
        versions = list_versions(session, model_id)
        assert [(v.number, v.format) for v in versions] == [
            (1, "pytorch_state_dict"),
            (2, "torchscript"),
        ]
        record_evaluation(session, versions[0].id, metrics={"accuracy": 0.75})
        versions[1].parent_id = versions[0].id
    with database.session() as session:
        latest = resolve_version(session, model_id)
        assert [v.number for v in list_lineage(session, latest)] == [2, 1]
        _, card = read_card(session, model_id, 1)
        assert "# tiles (version 1)" in card and TINY_ARCHITECTURE in card
        assert "## Layer groups" in card and "Verdict: **passed**" in card
        update_card(session, model_id, 1, None)  # regenerated: now with the evaluation
        _, card = read_card(session, model_id, 1)
        assert "accuracy: 0.7500" in card
        update_card(session, model_id, 1, "# Our tile model\n\nHand-written.")
    with database.session() as session:
        version, card = read_card(session, model_id, 1)
        assert card.startswith("# Our tile model") and version.card_edited_at is not None
        _, other = read_card(session, model_id, 2)
        assert "torchscript" in other


def test_failed_import_marks_a_new_model_failed_and_stores_nothing(
    tmp_path: Path, import_model: ImportModel, database: Database, blobs: LocalBlobStore
) -> None:
    path = garbage_file(tmp_path / "weights.pth")
    model_id, result, error = import_model(path, architecture=TINY_ARCHITECTURE)
    assert result is None and error is not None and "not a model" in error
    with database.session() as session:
        model, version = read_model(session, model_id)
        assert model.status is ModelStatus.FAILED and model.error == error
        assert version is None
        assert session.scalars(select(ModelArtifact)).all() == []
    assert list(blobs.iter_hashes()) == []


def test_plugin_format_imports_through_the_sandbox_and_predicts(
    tmp_path: Path,
    npz_plugin: str,
    import_model: ImportModel,
    database: Database,
    blobs: LocalBlobStore,
) -> None:
    path = tmp_path / "linear.npz"
    np.savez(path, weight=np.eye(3, dtype=np.float32) * 10, bias=np.zeros(3, np.float32))
    model_id, result, error = import_model(path, class_names=["red", "green", "blue"])
    assert error is None and result is not None and result["format"] == npz_plugin
    with database.session() as session:
        version = resolve_version(session, model_id)
        assert version.framework == "numpy"
        request = load_request_for(session, version)
    blue = np.zeros((1, 3, 32, 32), np.float32)
    blue[:, 2] = 1.0
    probabilities = PredictorCache(blobs, tmp_path / "cache").get(request).predict(blue)
    assert probabilities.argmax() == 2


def test_a_blob_changed_behind_kais_back_is_never_loaded(
    tmp_path: Path, import_model: ImportModel, database: Database, blobs: LocalBlobStore
) -> None:
    path = tmp_path / "linear.onnx"
    path.write_bytes(linear_onnx_graph(3).SerializeToString())
    model_id, _, error = import_model(path)
    assert error is None
    with database.session() as session:
        request = load_request_for(session, resolve_version(session, model_id))
    (name, sha256), *_ = request.artifacts

    cached = tmp_path / "cache"
    PredictorCache(blobs, cached).get(request)
    (cached / str(request.version_id) / name).write_bytes(b"tampered copy")
    assert PredictorCache(blobs, cached).get(request) is not None  # copied again from the blob
    assert (cached / str(request.version_id) / name).read_bytes() != b"tampered copy"

    stored = blobs.path_for(sha256)
    stored.chmod(0o644)
    stored.write_bytes(stored.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    (cached / str(request.version_id) / name).unlink()
    with pytest.raises(UnsafeModelFile, match="no longer matches its SHA-256"):
        PredictorCache(blobs, cached).get(request)
