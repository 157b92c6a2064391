"""PyTorch Hub models built by their repository's code: only with an admin's opt-in, sandboxed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kai.config import Settings
from kai.db.engine import Database
from kai.errors import InvalidInput, NotFound, PermissionDenied
from kai.models import ModelSource, SourceKind, start_model_import
from kai.models.formats import ImportOptions
from kai.models.repositories import Repository, check_repository_request, fetch_repository_model
from kai.storage.blobs import LocalBlobStore
from models.model_factories import run_model_job
from models.repositories.model_caches import make_hub_repo

REFERENCE = "kai-test/tiles:tiny"


def hubconf(marker: Path) -> str:
    """An entry point that leaves a marker file when it runs, then builds a tiny classifier."""
    return (
        "dependencies = ['torch']\n"
        "import os\n"
        "import torch\n\n"
        "def tiny(num_classes=3):\n"
        f"    open({str(marker)!r} + '.' + str(os.getpid()), 'w').close()\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),"
        " torch.nn.Flatten(), torch.nn.Linear(4, num_classes))\n"
    )


@pytest.fixture
def marker(torch_home: Path, tmp_path: Path) -> Path:
    path = tmp_path / "ran"
    make_hub_repo(torch_home, "kai-test", "tiles", hubconf(path))
    return path


def ran(marker: Path) -> list[Path]:
    return sorted(marker.parent.glob(marker.name + ".*"))


def test_hub_code_is_refused_without_the_opt_in_and_never_runs(
    marker: Path, settings: Settings
) -> None:
    with pytest.raises(InvalidInput, match="trustRepositoryCode"):
        check_repository_request(Repository.PYTORCH_HUB, REFERENCE, is_admin=True)
    with pytest.raises(PermissionDenied):
        check_repository_request(
            Repository.PYTORCH_HUB, REFERENCE, trust_repository_code=True, is_admin=False
        )
    with pytest.raises(InvalidInput, match="trustRepositoryCode"):
        fetch_repository_model(
            Repository.PYTORCH_HUB, REFERENCE, None, ImportOptions(), settings=settings
        )
    assert ran(marker) == []


@pytest.mark.db
@pytest.mark.slow
def test_trusted_hub_code_runs_in_the_sandbox_and_imports_as_torchscript(
    marker: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    check_repository_request(
        Repository.PYTORCH_HUB, REFERENCE, trust_repository_code=True, is_admin=True
    )
    source = ModelSource(
        kind=SourceKind.REPOSITORY,
        repository="pytorch-hub",
        reference=REFERENCE,
        trust_repository_code=True,
    )
    options = ImportOptions(input_size_px=(32, 32), class_names=["stone", "tile", "wood"])
    with database.session() as session:
        _, job = start_model_import(
            session, name="hub", description="", source=source, options=options
        )
        job_id, config = job.id, dict(job.config)

    result, error = run_model_job(settings, database, blobs, job_id, config)

    assert error is None and result is not None
    assert (result["format"], result["numClasses"]) == ("torchscript", 3)
    runs = ran(marker)
    assert len(runs) == 1 and runs[0].suffix != f".{os.getpid()}"  # ran in another process


def test_a_hub_repository_missing_from_the_cache_names_it(
    torch_home: Path, settings: Settings, tmp_path: Path
) -> None:
    with pytest.raises(NotFound, match=r"not in the torch hub cache.*kai-test_absent_main"):
        fetch_repository_model(
            Repository.PYTORCH_HUB,
            "kai-test/absent:tiny",
            None,
            ImportOptions(),
            settings=settings,
            trust_repository_code=True,
            work_dir=tmp_path / "work",
        )
