"""Repository imports read each client's cache, built here the way its download lays it out.

Two imports run the real job with its sandbox; the rest stop at resolving the
repository's file, which is where each repository's rules live.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Model, ModelStatus, ModelVersion
from kai.errors import DownloadFailed, InvalidInput, NotFound, PermissionDenied
from kai.models import ModelSource, SourceKind, start_model_import
from kai.models.formats import ImportOptions
from kai.models.repositories import (
    Repository,
    _kaggle,
    _torch_hub,
    check_repository_request,
    fetch_repository_model,
    parse_repository,
)
from kai.storage.blobs import LocalBlobStore
from models.model_factories import linear_onnx_graph, run_model_job, tiny_model
from models.repositories.model_caches import (
    COMMIT,
    INPUT_SIZE_PX,
    LABEL_NAMES,
    MEAN,
    STD,
    TIMM_ARCHITECTURE,
    add_hf_file,
    make_kaggle_model,
    make_timm_repo,
    make_torch_checkpoint,
    safetensors_bytes,
    set_hf_ref,
)
from models.savedmodel_factories import build_saved_models
from models.tflite_factories import linear_tflite

REPO_ID = "kai-test/tiles-efficientnet"


def _import(
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    repository: Repository,
    reference: str,
) -> tuple[int, dict[str, object] | None, str | None]:
    source = ModelSource(
        kind=SourceKind.REPOSITORY,
        repository=repository.value,
        reference=reference,
        original_name=reference,
    )
    with database.session() as session:
        model, job = start_model_import(
            session, name="tiles", description="", source=source, options=ImportOptions()
        )
        model_id, job_id, config = model.id, job.id, dict(job.config)
    result, error = run_model_job(settings, database, blobs, job_id, config)
    return model_id, result, error


@pytest.mark.db
def test_timm_repository_imports_offline_with_its_config(
    hf_cache: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_timm_repo(hf_cache, REPO_ID, tiny_model(num_classes=len(LABEL_NAMES)))
    model_id, result, error = _import(settings, database, blobs, Repository.HUGGINGFACE, REPO_ID)
    assert error is None and result is not None
    with database.session() as session:
        version = session.query(ModelVersion).filter_by(model_id=model_id).one()
        assert version.architecture == TIMM_ARCHITECTURE
        assert version.class_names == list(LABEL_NAMES)
        assert version.input_spec["size_px"] == [INPUT_SIZE_PX, INPUT_SIZE_PX]
        assert version.input_spec["mean"] == pytest.approx(list(MEAN))
        assert version.input_spec["std"] == pytest.approx(list(STD))
        assert version.provenance["repository"] == "huggingface"
        assert version.provenance["reference"] == REPO_ID
        assert version.provenance["revision"] == COMMIT


@pytest.mark.db
def test_missing_model_fails_the_job_naming_the_cache(
    hf_cache: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_id, result, error = _import(
        settings, database, blobs, Repository.HUGGINGFACE, "kai-test/absent"
    )
    assert result is None and error is not None
    assert "kai-test/absent" in error and str(hf_cache) in error
    assert "hf download kai-test/absent" in error
    with database.session() as session:
        model = session.get(Model, model_id)
        assert model is not None and model.status is ModelStatus.FAILED
        assert model.error == error


def test_unreachable_hub_falls_back_to_the_cached_commit(
    hf_cache: Path, settings: Settings
) -> None:
    make_timm_repo(hf_cache, REPO_ID, tiny_model(), weights_name="pytorch_model.bin")
    fetched = fetch_repository_model(
        Repository.HUGGINGFACE, REPO_ID, None, ImportOptions(), settings=settings
    )
    assert fetched.path.name == "pytorch_model.bin"
    assert fetched.path.parent.name == COMMIT
    assert fetched.options.architecture == TIMM_ARCHITECTURE
    assert fetched.provenance["revision"] == COMMIT


def test_given_options_win_over_the_repository_config(hf_cache: Path, settings: Settings) -> None:
    make_timm_repo(hf_cache, REPO_ID, tiny_model())
    given = ImportOptions(class_names=["a", "b", "c"], input_size_px=(64, 64))
    fetched = fetch_repository_model(
        Repository.HUGGINGFACE, REPO_ID, None, given, settings=settings
    )
    assert fetched.options.class_names == ["a", "b", "c"]
    assert fetched.options.input_size_px == (64, 64)
    assert fetched.options.mean == MEAN


def test_a_transformers_model_without_an_image_classifier_is_refused(
    hf_cache: Path, settings: Settings
) -> None:
    config = {"model_type": "bert", "architectures": ["BertModel"], "id2label": {"0": "oak"}}
    make_timm_repo(hf_cache, "kai-test/vit", tiny_model(), config=config)
    with pytest.raises(InvalidInput, match=r"without an image classifier.*supported layouts: timm"):
        fetch_repository_model(
            Repository.HUGGINGFACE, "kai-test/vit", None, ImportOptions(), settings=settings
        )


def test_torchvision_weights_come_from_the_torch_hub_checkpoints(
    torch_home: Path, settings: Settings
) -> None:
    url = torchvision.models.get_model_weights("shufflenet_v2_x0_5").DEFAULT.url
    torch.manual_seed(0)
    model = torchvision.models.shufflenet_v2_x0_5(num_classes=1000)
    path = make_torch_checkpoint(torch_home, url.rsplit("/", 1)[-1], model)
    fetched = fetch_repository_model(
        Repository.PYTORCH_HUB,
        "torchvision:shufflenet_v2_x0_5",
        None,
        ImportOptions(),
        settings=settings,
    )
    assert fetched.path == path
    assert fetched.options.architecture == "shufflenet_v2_x0_5"
    assert fetched.options.class_names is not None and len(fetched.options.class_names) == 1000
    assert fetched.options.input_size_px == (224, 224)
    assert fetched.provenance["revision"] == "IMAGENET1K_V1"


def test_missing_torch_hub_checkpoint_names_the_cache(
    torch_home: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(url: str, *_: object, **__: object) -> None:
        raise DownloadFailed(f"the host of {url} does not resolve")

    monkeypatch.setattr(_torch_hub.downloads, "download", unreachable)
    with pytest.raises(NotFound) as caught:
        fetch_repository_model(
            Repository.PYTORCH_HUB, "torchvision:resnet18", None, ImportOptions(), settings=settings
        )
    assert str(torch_home / "hub" / "checkpoints") in caught.value.message
    assert "resnet18-f37072fd.pth" in caught.value.message


def test_timm_name_resolves_to_its_hub_repository(hf_cache: Path, settings: Settings) -> None:
    hub_id = "timm/test_efficientnet.r160_in1k"
    make_timm_repo(hf_cache, hub_id, tiny_model(num_classes=len(LABEL_NAMES)))
    fetched = fetch_repository_model(
        Repository.PYTORCH_HUB, "timm:test_efficientnet", None, ImportOptions(), settings=settings
    )
    assert fetched.provenance["repository"] == "pytorch-hub"
    assert fetched.provenance["huggingfaceRepository"] == hub_id
    assert fetched.provenance["revision"] == COMMIT
    assert fetched.options.class_names == list(LABEL_NAMES)


def test_onnx_zoo_name_is_found_in_the_cached_onnx_models(
    hf_cache: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = "validated/vision/classification/tiny/model/tiny-v1-7.onnx"
    add_hf_file(hf_cache, "onnx/models", path, linear_onnx_graph().SerializeToString())
    set_hf_ref(hf_cache, "onnx/models")
    fetched = fetch_repository_model(
        Repository.ONNX_MODEL_ZOO, "tiny-v1-7", None, ImportOptions(), settings=settings
    )
    assert fetched.path.name == "tiny-v1-7.onnx"
    assert fetched.options.framework == "onnx"
    assert fetched.provenance["file"] == path
    assert fetched.provenance["revision"] == COMMIT


def test_kaggle_model_reads_the_newest_cached_version(
    kaggle_cache: Path, settings: Settings
) -> None:
    handle = "kai-test/tiles/pyTorch/tiny"
    weights = {"model.safetensors": safetensors_bytes(tiny_model())}
    make_kaggle_model(kaggle_cache, handle, 1, weights)
    make_kaggle_model(kaggle_cache, handle, 3, weights)
    fetched = fetch_repository_model(
        Repository.KAGGLE,
        handle,
        None,
        ImportOptions(architecture=TIMM_ARCHITECTURE),
        settings=settings,
    )
    assert fetched.provenance["revision"] == "3"
    assert fetched.path.parent.name == "3"


def test_kaggle_savedmodel_folder_is_zipped_into_the_jobs_folder(
    kaggle_cache: Path, settings: Settings, tmp_path: Path
) -> None:
    handle = "kai-test/tiles/tensorFlow2/saved"
    files = {"saved_model.pb": b"\x08\x01", "variables/variables.index": b"index"}
    folder = make_kaggle_model(kaggle_cache, handle, 2, files)
    (folder / "outside").symlink_to("/etc/hostname")
    fetched = fetch_repository_model(
        Repository.KAGGLE,
        f"{handle}/2",
        None,
        ImportOptions(),
        settings=settings,
        work_dir=tmp_path / "job",
    )
    assert fetched.path.parent == tmp_path / "job"
    with zipfile.ZipFile(fetched.path) as archive:
        assert sorted(archive.namelist()) == [
            "saved_model/saved_model.pb",
            "saved_model/variables/variables.index",
        ]
    assert fetched.provenance["revision"] == "2"


def test_tfhub_savedmodel_address_maps_to_its_kaggle_handle() -> None:
    address = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5"
    check_repository_request(Repository.TENSORFLOW_HUB, address)
    assert _kaggle.resolve_handle(Repository.TENSORFLOW_HUB, address) == (
        "google/mobilenet-v2/tensorFlow2/100-224-classification"
    )


def test_tensorflow1_hub_modules_are_refused_with_the_conversions() -> None:
    with pytest.raises(InvalidInput, match=r"TensorFlow 1 hub modules") as caught:
        check_repository_request(Repository.KAGGLE, "google/mobilenet-v1/tensorFlow1/classify")
    assert "tf.lite.TFLiteConverter" in caught.value.message


@pytest.mark.db
@pytest.mark.slow
def test_kaggle_savedmodel_imports_and_predicts_like_an_upload(
    kaggle_cache: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    tmp_path: Path,
) -> None:
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs the tensorflow extra: pip install -e '.[tensorflow]'")
    built = build_saved_models(tmp_path / "built", tmp_path / "canary")
    handle = "kai-test/tiles/tensorFlow2/classifier"
    with zipfile.ZipFile(built["classifier"]) as archive:
        files = {
            name.split("/", 1)[1]: archive.read(name)
            for name in archive.namelist()
            if not name.endswith("/")
        }
    make_kaggle_model(kaggle_cache, handle, 1, files)

    model_id, result, error = _import(settings, database, blobs, Repository.KAGGLE, handle)

    assert error is None and result is not None
    with database.session() as session:
        version = session.query(ModelVersion).filter_by(model_id=model_id).one()
        assert version.format == "savedmodel"
        assert version.provenance["kaggleHandle"] == handle
        assert version.provenance["revision"] == "1"


@pytest.mark.db
@pytest.mark.slow
def test_tfhub_lite_model_imports_from_the_kagglehub_cache(
    kaggle_cache: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    tmp_path: Path,
) -> None:
    address = "https://tfhub.dev/kai-test/lite-model/tiles_1.0_32/1"
    handle = "kai-test/tiles/tfLite/1.0-32"
    tflite = linear_tflite(tmp_path / "tiles.tflite").read_bytes()
    make_kaggle_model(kaggle_cache, handle, 2, {"1.tflite": tflite})

    fetched = fetch_repository_model(
        Repository.TENSORFLOW_HUB, address, None, ImportOptions(), settings=settings
    )
    assert fetched.provenance["kaggleHandle"] == handle
    assert (fetched.options.framework, fetched.provenance["revision"]) == ("tflite", "2")

    _, result, error = _import(settings, database, blobs, Repository.TENSORFLOW_HUB, address)
    assert error is None and result is not None
    assert (result["format"], result["numClasses"]) == ("tflite", 3)


def test_kaggle_keras_model_is_read_as_keras(kaggle_cache: Path, settings: Settings) -> None:
    handle = "kai-test/tiles/keras/tiny"
    make_kaggle_model(kaggle_cache, handle, 1, {"model.keras": b"PK\x03\x04"})
    fetched = fetch_repository_model(
        Repository.KAGGLE, handle, None, ImportOptions(), settings=settings
    )
    assert fetched.options.framework == "keras" and fetched.path.name == "model.keras"


def test_unknown_repository_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_repository("modelscope")
    assert caught.value.details["valid"] == [r.value for r in Repository]
    assert "huggingface" in caught.value.message


def test_repository_code_needs_an_admins_opt_in() -> None:
    with pytest.raises(InvalidInput, match="trustRepositoryCode"):
        check_repository_request(Repository.PYTORCH_HUB, "pytorch/vision:resnet18")
    with pytest.raises(PermissionDenied):
        check_repository_request(
            Repository.HUGGINGFACE, REPO_ID, trust_repository_code=True, is_admin=False
        )
