"""Bad input during training ends in a failed job with a reason a person reads, never a hang."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from training_factories import (
    context,
    dataset_zip,
    events,
    import_dataset,
    import_model,
    queue_training,
    read_job,
    tiny_weights,
)

from kai.config import Settings
from kai.datasets import delete_dataset
from kai.db.engine import Database
from kai.errors import InvalidImage, MemoryLimitExceeded, NotFound, TrainingDiverged
from kai.storage.blobs import LocalBlobStore
from kai.training.data import decode_image
from kai.training.devices import out_of_memory_as
from kai.training.jobs import run_training_job
from kai.training.loop import train_epoch
from kai.training.runs import OUT_OF_MEMORY

CLASSES = {"ceramic": 4, "stone": 4, "wood": 4}


class Exploding(nn.Module):
    """A network whose outputs are infinite, as a diverged run's become."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 4 * 4, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1)) * float("inf")


def test_a_loss_that_stops_being_finite_fails_as_diverged_with_what_to_try() -> None:
    network = Exploding()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    batches = [(torch.ones(2, 3, 4, 4), torch.tensor([0, 1]))]
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 3.*lower the learning rate"):
        train_epoch(
            network,
            batches,
            optimizer=optimizer,
            scheduler=scheduler,
            loss_fn=nn.CrossEntropyLoss(),
            epoch=3,
            after_batch=lambda _: None,
        )


def test_running_out_of_memory_says_what_to_lower() -> None:
    with (
        pytest.raises(MemoryLimitExceeded, match="lower batchSize"),
        out_of_memory_as(OUT_OF_MEMORY),
    ):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_an_image_that_does_not_decode_is_named_as_bad_data() -> None:
    with pytest.raises(InvalidImage, match="Bad data: sample s-7 cannot be decoded"):
        decode_image(b"not an image", "s-7")


@pytest.mark.db
@pytest.mark.slow
def test_a_dataset_deleted_mid_job_fails_the_job_with_the_reason(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))
    job_id = queue_training(database, model_id, dataset_id, epochs=3)
    ctx = context(settings, database, blobs, job_id)
    emit = ctx.emit

    def emit_then_delete(event_type: str, payload: dict[str, Any]) -> int:
        seq = emit(event_type, payload)
        if event_type == "metrics" and payload["epoch"] == 1:
            with database.session() as session:
                delete_dataset(session, dataset_id)
        return seq

    ctx.emit = emit_then_delete  # type: ignore[method-assign]
    with pytest.raises(NotFound, match="was deleted during training"):
        run_training_job(ctx)
    assert [e.payload["epoch"] for e in events(database, job_id, "metrics")] == [1]
    assert read_job(database, job_id).result is None


@pytest.mark.db
@pytest.mark.slow
def test_a_quick_trial_caps_the_epochs_and_progressive_unfreezing_logs_each_group(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    counts = {"ceramic": 6, "stone": 6}
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", counts))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))
    job_id = queue_training(
        database,
        model_id,
        dataset_id,
        epochs=6,
        batch_size=2,
        quick_trial=True,
        quick_trial_images_per_class=2,
        freeze_base_model=True,
        unfreeze_every_epochs=1,
        layer_decay=0.5,
    )

    results = run_training_job(context(settings, database, blobs, job_id))

    assert results["epochs"] == 2
    assert [e.payload["epoch"] for e in events(database, job_id, "metrics")] == [1, 2]
    logs = [e.payload["message"] for e in events(database, job_id, "log")]
    assert any(message.startswith("Quick trial") for message in logs)
    assert "Training test_efficientnet on 2 classes: 4 training" in " ".join(logs)
    assert any(message.startswith("Epoch 2: unfroze") for message in logs)
    assert any(message.startswith("Computing on cpu, channels-last, fp32") for message in logs)
