"""DistributedDataParallel inside one job: two CPU processes over gloo, a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_factories import (
    context,
    dataset_zip,
    events,
    import_dataset,
    import_model,
    queue_training,
    tiny_weights,
)

from kai.config import Settings
from kai.db.engine import Database
from kai.storage.blobs import LocalBlobStore
from kai.training import TrainingConfig
from kai.training.checkpoints import checkpoint_dir
from kai.training.distributed import world_size_for
from kai.training.jobs import run_training_job

pytestmark = [pytest.mark.db, pytest.mark.slow]

CLASSES = {"ceramic": 4, "stone": 4, "wood": 4}


def test_two_processes_train_one_job_with_ddp_and_end_with_the_same_weights(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))
    job_id = queue_training(
        database, model_id, dataset_id, epochs=2, batch_size=2, distributed_processes=2
    )

    results = run_training_job(context(settings, database, blobs, job_id))

    logs = [e.payload["message"] for e in events(database, job_id, "log")]
    # Nine training images: each rank trains on five (the sampler pads the last share).
    started = "DistributedDataParallel over 2 processes (gloo); each trains on 5 of 9 images"
    assert any(message.startswith(started) for message in logs), logs
    assert "The 2 processes ended with the same weights" in logs
    assert [e.payload["epoch"] for e in events(database, job_id, "metrics")] == [1, 2]
    assert results["epochs"] == 2 and results["modelVersionId"]
    assert not checkpoint_dir(settings.resolved_data_dir, job_id).exists()


def test_progressive_unfreezing_keeps_to_one_process() -> None:
    config = TrainingConfig(
        distributed_processes=2, freeze_base_model=True, unfreeze_every_epochs=1
    )
    assert world_size_for(config) == 1
    assert world_size_for(TrainingConfig(distributed_processes=2)) == 2
