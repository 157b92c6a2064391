"""The architecture repository: an untrained network by name, a model to train from scratch."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import ModelVersion
from kai.errors import InvalidInput
from kai.models import ModelSource, SourceKind, start_model_import
from kai.models.formats import ImportOptions
from kai.models.repositories import (
    Repository,
    check_repository_request,
    fetch_repository_model,
    is_untrained,
)
from kai.storage.blobs import LocalBlobStore
from models.model_factories import run_model_job

TINY = "test_efficientnet"


def fetch(settings: Settings, reference: str, work_dir: Path, **options: object) -> Path:
    fetched = fetch_repository_model(
        Repository.ARCHITECTURE,
        reference,
        None,
        ImportOptions.model_validate(options),
        settings=settings,
        work_dir=work_dir,
    )
    return fetched.path


@pytest.mark.parametrize("reference", ["keras:resnet18", "timm:", "resnet 18", "a/b"])
def test_malformed_architecture_ids_are_refused_before_a_job(reference: str) -> None:
    with pytest.raises(InvalidInput, match="NAME, timm:NAME or torchvision:NAME"):
        check_repository_request(Repository.ARCHITECTURE, reference)


def test_an_architecture_builds_seeded_fresh_weights_with_an_untrained_provenance(
    settings: Settings, tmp_path: Path
) -> None:
    fetched = fetch_repository_model(
        Repository.ARCHITECTURE,
        f"timm:{TINY}",
        None,
        ImportOptions(class_names=["a", "b", "c"]),
        settings=settings,
        work_dir=tmp_path / "one",
    )
    again = fetch(settings, TINY, tmp_path / "two", class_names=["a", "b", "c"])

    first = safetensors.torch.load_file(fetched.path)
    second = safetensors.torch.load_file(again)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert first["classifier.weight"].shape[0] == 3
    assert fetched.options.architecture == TINY
    assert fetched.options.framework == "pytorch_state_dict"
    assert fetched.options.input_size_px is not None
    assert fetched.provenance["library"] == "timm"
    assert is_untrained(fetched.provenance)


def test_a_torchvision_architecture_is_built_by_torchvision(
    settings: Settings, tmp_path: Path
) -> None:
    path = fetch(settings, "torchvision:squeezenet1_1", tmp_path, class_names=["a", "b"])
    tensors = safetensors.torch.load_file(path)
    # torchvision's SqueezeNet ends in a 1x1 convolution with one filter per class.
    assert tensors["classifier.1.weight"].shape[0] == 2


def test_an_unknown_architecture_fails_with_close_names(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"did you mean.*resnet18") as raised:
        fetch(settings, "resnet18x", tmp_path)
    assert "resnet18" in raised.value.details["suggestions"]
    with pytest.raises(InvalidInput, match="torchvision has no architecture"):
        fetch(settings, "torchvision:efficientnet_lite0", tmp_path)


@pytest.mark.db
def test_an_architecture_imports_as_an_untrained_version_with_its_card(
    settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    source = ModelSource(
        kind=SourceKind.REPOSITORY,
        repository=Repository.ARCHITECTURE.value,
        reference=TINY,
        original_name=TINY,
    )
    options = ImportOptions(class_names=["ceramic", "stone"], input_size_px=(32, 32))
    with database.session() as session:
        model, job = start_model_import(
            session, name="scratch", description="", source=source, options=options
        )
        model_id, job_id, config = model.id, job.id, dict(job.config)
    result, error = run_model_job(settings, database, blobs, job_id, config)

    assert error is None and result is not None
    with database.session() as session:
        version = session.query(ModelVersion).filter_by(model_id=model_id).one()
        assert version.format == "pytorch_state_dict"
        assert version.architecture == TINY
        assert version.class_names == ["ceramic", "stone"]
        assert is_untrained(version.provenance)
        assert version.provenance["repository"] == "architecture"
        assert "never trained" in version.card
