"""A model made from an architecture name alone trains from scratch, through the real jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from training_factories import (
    SIZE_PX,
    TINY_ARCHITECTURE,
    context,
    dataset_zip,
    events,
    import_dataset,
    mark_succeeded,
    queue_training,
    read_job,
    run_all,
)

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import JobState, ModelVersion
from kai.errors import InvalidInput
from kai.jobs.environment import JobEnvironment
from kai.models import ModelSource, SourceKind, start_model_import
from kai.models.formats import ImportOptions
from kai.models.handlers import run_import
from kai.models.repositories import Repository, is_untrained
from kai.storage.blobs import LocalBlobStore

pytestmark = [pytest.mark.db, pytest.mark.slow]

CLASSES = {"ceramic": 4, "stone": 4, "wood": 4}


def import_architecture(settings: Settings, database: Database, blobs: LocalBlobStore) -> int:
    """The tiny architecture imported by name, untrained, with the real import job."""
    source = ModelSource(
        kind=SourceKind.REPOSITORY,
        repository=Repository.ARCHITECTURE.value,
        reference=TINY_ARCHITECTURE,
        original_name=TINY_ARCHITECTURE,
    )
    with database.session() as session:
        model, job = start_model_import(
            session,
            name="scratch",
            description="",
            source=source,
            options=ImportOptions(input_size_px=(SIZE_PX, SIZE_PX)),
        )
        model_id, job_id = model.id, job.id
    run_import(context(settings, database, blobs, job_id))
    mark_succeeded(database, job_id)
    return model_id


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"freeze_base_model": True}, "freezeBaseModel"),
        ({"feature_extraction": True}, "featureExtraction"),
    ],
)
def test_an_untrained_model_refuses_what_needs_learned_features(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    changes: dict[str, Any],
    named: str,
) -> None:
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))
    model_id = import_architecture(settings, database, blobs)

    with pytest.raises(InvalidInput, match="never been trained") as raised:
        queue_training(database, model_id, dataset_id, **changes)
    assert raised.value.details["options"] == [named]


def test_an_untrained_model_trains_from_scratch_into_a_trained_version(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))
    model_id = import_architecture(settings, database, blobs)
    # The clients' default asks for transfer learning; there is nothing to transfer.
    job_id = queue_training(database, model_id, dataset_id, use_transfer_learning=True)
    assert read_job(database, job_id).config["training"]["use_transfer_learning"] is False

    run_all(env)

    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    logs = " ".join(e.payload["message"] for e in events(database, job_id, "log"))
    assert "From scratch: every layer starts from new random weights" in logs
    results = events(database, job_id, "completed")[0].payload["results"]
    with database.session() as session:
        version = session.get(ModelVersion, results["modelVersionId"])
        parent = session.get(ModelVersion, results["fromVersionId"])
        assert version is not None and parent is not None
        assert is_untrained(parent.provenance)
        assert version.parent_id == parent.id
        assert version.provenance["kind"] == "trained"
        assert not is_untrained(version.provenance)
        assert version.class_names == sorted(CLASSES)
