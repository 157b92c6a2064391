"""Hugging Face transformers classifiers train like state dicts and stay transformers versions.

The model is the tiny ViT of the model tests (32-px images, two encoder
layers), imported as a zipped ``save_pretrained`` folder through the real
import job.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from training_factories import (
    COLOURS,
    context,
    dataset_zip,
    events,
    image_bytes,
    import_dataset,
    import_model,
    queue_training,
    read_job,
    run_all,
)

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import JobState, ModelVersion
from kai.jobs.environment import JobEnvironment
from kai.models import (
    PredictorCache,
    list_artifacts,
    list_evaluations,
    list_lineage,
    load_request_for,
    predict_images,
)
from kai.models.formats import ModelSpec
from kai.models.formats.torch_predictors import TorchFeaturePredictor
from kai.security.images import ImageLimits
from kai.storage.blobs import LocalBlobStore
from kai.training import SearchConfig, TrainingConfig
from kai.training.hf_networks import create_transformers_network
from kai.training.jobs import run_training_job
from kai.training.transfer import create_optimizer, freeze_base, resolve_layer_groups
from models.model_factories import save_transformers_folder, tiny_vit, zip_folder

# Model formats, not the database: they run once, on SQLite.
pytestmark = [pytest.mark.slow]

TWO_CLASSES = {"ceramic": 6, "stone": 6}
FOLDER_FILES = {"model.safetensors", "config.json", "preprocessor_config.json"}
# The tiny ViT's parameters by layer group, as its import records them.
STEM, FIRST_BLOCK, LAST_BLOCK, HEAD = "vit.embeddings", "vit.layers.0", "vit.layers.1", "classifier"


def vit_zip(tmp_path: Path) -> Path:
    """The tiny ViT's folder zipped, its image processor's config beside it."""
    folder = save_transformers_folder(tiny_vit(), tmp_path / "vit")
    return zip_folder(folder, tmp_path / "vit.zip")


def import_both(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> tuple[int, int]:
    """The tiny dataset and the tiny ViT imported through their real jobs; their ids."""
    archive = dataset_zip(tmp_path / "d.zip", TWO_CLASSES)
    dataset_id = import_dataset(settings, database, blobs, archive)
    model_file = vit_zip(tmp_path)
    return import_model(settings, database, blobs, model_file, architecture=None), dataset_id


def stored_version(database: Database, version_id: int) -> ModelVersion:
    with database.session() as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None
        session.expunge(version)
        return version


def versions_of(database: Database, results: dict[str, Any]) -> tuple[ModelVersion, ModelVersion]:
    """The version a run started from and the one it wrote."""
    version = stored_version(database, results["modelVersionId"])
    assert version.parent_id is not None
    return stored_version(database, version.parent_id), version


def predictor_of(
    database: Database, blobs: LocalBlobStore, version: ModelVersion, cache_dir: Path
) -> TorchFeaturePredictor:
    """The version's predictor, loaded as predictions load it."""
    with database.session() as session:
        request = load_request_for(session, version)
    predictor = PredictorCache(blobs, cache_dir).get(request)
    assert isinstance(predictor, TorchFeaturePredictor)
    return predictor


def tensors_of(predictor: TorchFeaturePredictor) -> dict[str, torch.Tensor]:
    """The classifier's own tensors, named as transformers names them."""
    return {
        name.removeprefix("model."): value for name, value in predictor.module.state_dict().items()
    }


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def photos() -> list[tuple[str, bytes]]:
    """One unseen image of each class, named by its class."""
    return [(name, image_bytes(COLOURS[name], 97)) for name in TWO_CLASSES]


def test_a_transformers_classifier_fine_tunes_into_a_transformers_version_that_predicts(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs)
    job_id = queue_training(
        database, model_id, dataset_id, epochs=4, learning_rate=0.01, image_size_px=64
    )
    # A ViT's position embeddings fix its input size: the config drops another one.
    assert read_job(database, job_id).config["training"]["image_size_px"] is None

    run_all(env)

    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    assert [e.payload["epoch"] for e in events(database, job_id, "metrics")] == [1, 2, 3, 4]
    parent, version = versions_of(database, job.result or {})
    assert (version.format, version.framework) == ("transformers", "pytorch")
    assert version.class_names == sorted(TWO_CLASSES)
    assert version.input_spec == parent.input_spec
    assert version.provenance["fromVersionId"] == parent.id
    assert version.provenance["datasetVersionId"] == job.result["datasetVersionId"]
    assert [group["name"] for group in version.layer_groups] == [
        "stem",
        "stage1",
        "stage2",
        "head",
    ]
    with database.session() as session:
        assert [v.id for v in list_lineage(session, version)] == [version.id, parent.id]
        files = {row.name: row.blob_sha256 for row in list_artifacts(session, version.id)}
        parent_files = {row.name: row.blob_sha256 for row in list_artifacts(session, parent.id)}
        assert list_evaluations(session, version.id)
    assert set(files) == FOLDER_FILES
    assert files["preprocessor_config.json"] == parent_files["preprocessor_config.json"]
    assert files["model.safetensors"] != parent_files["model.safetensors"]

    predictor = predictor_of(database, blobs, version, tmp_path / "cache")
    config = predictor.module.model.config
    assert config.id2label == dict(enumerate(sorted(TWO_CLASSES)))
    limits = ImageLimits.from_settings(Settings())
    predictions = predict_images(predictor, photos(), limits=limits, top_k=2)
    assert {p.name: p.top[0].label for p in predictions} == {name: name for name in TWO_CLASSES}


def test_a_frozen_transformers_base_keeps_its_weights_and_trains_its_last_groups(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs)
    job_id = queue_training(
        database, model_id, dataset_id, freeze_base_model=True, trainable_layers_count=2
    )

    results = run_training_job(context(settings, database, blobs, job_id))

    logs = [e.payload["message"] for e in events(database, job_id, "log")]
    assert any(m.startswith("Base frozen: the last 2 layer group(s) train") for m in logs), logs
    parent, version = versions_of(database, results)
    before = tensors_of(predictor_of(database, blobs, parent, tmp_path / "cache"))
    after = tensors_of(predictor_of(database, blobs, version, tmp_path / "cache"))
    frozen = [n for n in before if within(n, STEM) or within(n, FIRST_BLOCK)]
    trained = [n for n in before if within(n, LAST_BLOCK) and n.endswith("weight")]
    assert frozen and trained
    for name in frozen:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert all(not torch.equal(after[name], before[name]) for name in trained)
    assert (before["classifier.weight"].shape, after["classifier.weight"].shape) == (
        (3, 16),
        (len(TWO_CLASSES), 16),
    )


def test_freezing_and_layer_decay_follow_the_classifiers_layer_groups(tmp_path: Path) -> None:
    folder = save_transformers_folder(tiny_vit(), tmp_path / "vit")
    spec = ModelSpec(
        format="transformers", num_classes=3, class_names=["porcelain", "slate", "oak"]
    )
    network, new_head = create_transformers_network(spec, folder, class_names=["a", "b"])
    assert new_head and network.num_outputs == 2
    groups = resolve_layer_groups(network, [])
    assert [g.name for g in groups] == ["stem", "stage1", "stage2", "head"]

    freeze_base(network, groups, 2)

    training = {n for n, p in network.named_parameters() if p.requires_grad}
    assert training and all(
        within(n, f"model.{LAST_BLOCK}")
        or within(n, "model.vit.layernorm")
        or within(n, "model.classifier")
        for n in training
    )
    assert any(within(n, f"model.{LAST_BLOCK}") for n in training)
    config = TrainingConfig(learning_rate=0.01, layer_decay=0.5, head_learning_rate_multiplier=1)
    rates = [group["lr"] for group in create_optimizer(network, config, groups).param_groups]
    assert rates == pytest.approx([0.0025, 0.005, 0.01, 0.01])


def test_the_same_classes_keep_the_head_and_other_classes_get_a_new_one(tmp_path: Path) -> None:
    model = tiny_vit()
    folder = save_transformers_folder(model, tmp_path / "vit")
    labels = ["porcelain", "slate", "oak"]
    spec = ModelSpec(format="transformers", num_classes=3, class_names=labels)

    kept, new_head = create_transformers_network(spec, folder, class_names=labels)
    renamed, renamed_head = create_transformers_network(spec, folder, class_names=labels[::-1])

    assert not new_head and renamed_head
    head = model.classifier.weight
    assert torch.equal(kept.model.classifier.weight, head)
    assert not torch.equal(renamed.model.classifier.weight, head)
    assert renamed.model.config.id2label == dict(enumerate(labels[::-1]))
    body = "vit.embeddings.patch_embeddings.projection.weight"
    assert torch.equal(renamed.model.state_dict()[body], model.state_dict()[body])


def test_a_folder_saved_in_half_precision_trains_in_fp32(tmp_path: Path) -> None:
    folder = save_transformers_folder(tiny_vit().half(), tmp_path / "vit")
    spec = ModelSpec(
        format="transformers", num_classes=3, class_names=["porcelain", "slate", "oak"]
    )

    for pretrained in (True, False):
        network, _ = create_transformers_network(
            spec, folder, class_names=["a", "b"], pretrained=pretrained
        )
        assert {p.dtype for p in network.parameters()} == {torch.float32}
        assert network.model.config.dtype == torch.float32


def test_feature_extraction_trains_a_head_over_the_classifiers_features_into_a_transformers_version(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs)
    job_id = queue_training(
        database, model_id, dataset_id, feature_extraction=True, epochs=3, learning_rate=0.05
    )

    results = run_training_job(context(settings, database, blobs, job_id))

    parent, version = versions_of(database, results)
    # The identity quality analysis gives this version (KAI_EMBEDDING_BACKBONE=model:<id>).
    assert results["featureExtraction"] == {
        "backbone": f"model-version-{parent.id}-32px",
        "embeddingWidth": 16,
    }
    assert version.format == "transformers"
    assert version.class_names == sorted(TWO_CLASSES)
    before = predictor_of(database, blobs, parent, tmp_path / "cache")
    after = predictor_of(database, blobs, version, tmp_path / "cache")
    images = [Image.open(io.BytesIO(data)).convert("RGB") for _, data in photos()]
    np.testing.assert_array_equal(after.extract_features(images), before.extract_features(images))
    assert after.predict(images).shape == (len(images), len(TWO_CLASSES))


def test_a_transformers_classifier_trains_from_scratch_from_new_weights(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs)
    # So small a rate cannot move a weight by 1e-3: only new initial weights differ that much.
    # The tiny ViT was drawn with seed 0, which the run would draw again.
    job_id = queue_training(
        database, model_id, dataset_id, use_transfer_learning=False, learning_rate=1e-9, seed=1
    )

    results = run_training_job(context(settings, database, blobs, job_id))

    parent, version = versions_of(database, results)
    assert version.format == "transformers"
    before = tensors_of(predictor_of(database, blobs, parent, tmp_path / "cache"))
    after = tensors_of(predictor_of(database, blobs, version, tmp_path / "cache"))
    body = [n for n in before if not within(n, HEAD) and n.endswith("weight") and "norm" not in n]
    assert body
    for name in body:
        assert not torch.allclose(after[name], before[name], atol=1e-3), name


def test_a_retried_transformers_run_resumes_after_its_last_checkpoint(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs)
    job_id = queue_training(database, model_id, dataset_id, epochs=3)
    first = context(settings, database, blobs, job_id)
    emit = first.emit

    def emit_then_die(event_type: str, payload: dict[str, Any]) -> int:
        seq = emit(event_type, payload)
        if event_type == "metrics" and payload["epoch"] == 2:
            raise KeyboardInterrupt
        return seq

    first.emit = emit_then_die  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        run_training_job(first)

    results = run_training_job(context(settings, database, blobs, job_id, attempt=2))

    assert [e.payload["epoch"] for e in events(database, job_id, "metrics")] == [1, 2, 3]
    logs = [e.payload["message"] for e in events(database, job_id, "log")]
    assert "Resumed from the checkpoint after epoch 2" in logs
    assert stored_version(database, results["modelVersionId"]).format == "transformers"


def test_a_transformers_search_and_cross_validation_write_transformers_versions(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs)
    search = SearchConfig(trials=2, startup_trials=1)
    searched = queue_training(database, model_id, dataset_id, epochs=1, search=search)
    folded = queue_training(database, model_id, dataset_id, epochs=1, cross_validation_folds=2)

    search_results = run_training_job(context(settings, database, blobs, searched))
    fold_results = run_training_job(context(settings, database, blobs, folded))

    trials = [e.payload for e in events(database, searched, "trial")]
    assert {t["trial"] for t in trials} == {0, 1}
    # Trainable layer groups are searched over the classifier's four groups.
    tried = [t["params"]["trainable_layers"] for t in trials if t["status"] == "running"]
    assert len(tried) == 2 and all(1 <= count <= 4 for count in tried)
    assert len(fold_results["crossValidation"]["folds"]) == 2
    for results in (search_results, fold_results):
        version = stored_version(database, results["modelVersionId"])
        assert (version.format, version.class_names) == ("transformers", sorted(TWO_CLASSES))


def test_two_processes_train_a_transformers_classifier_with_ddp(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    model_id, dataset_id = import_both(tmp_path, settings, database, blobs)
    job_id = queue_training(
        database, model_id, dataset_id, epochs=1, batch_size=2, distributed_processes=2
    )

    results = run_training_job(context(settings, database, blobs, job_id))

    logs = [e.payload["message"] for e in events(database, job_id, "log")]
    assert "The 2 processes ended with the same weights" in logs
    assert stored_version(database, results["modelVersionId"]).format == "transformers"
