"""Builders for training tests: a tiny dataset and a tiny model imported through the real jobs."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
import torch
from PIL import Image

from kai.config import Settings
from kai.datasets import ImportSource, SourceKind, start_import
from kai.datasets.handlers import run_import as run_dataset_import
from kai.db.engine import Database
from kai.db.tables import Job, JobEvent, JobState
from kai.jobs.context import JobContext
from kai.jobs.environment import JobEnvironment
from kai.jobs.events import list_events
from kai.jobs.leases import claim_job, new_lease_owner
from kai.jobs.runner import run_claimed_job
from kai.models import ModelSource, start_model_import
from kai.models import SourceKind as ModelSourceKind
from kai.models.formats import ImportOptions
from kai.models.handlers import run_import as run_model_import
from kai.storage.blobs import BlobStore
from kai.training import TrainingConfig, TrainingJobConfig, start_training

TINY_ARCHITECTURE = "test_efficientnet"
SIZE_PX = 32
COLOURS = {"ceramic": (200, 60, 40), "stone": (120, 120, 120), "wood": (140, 90, 30)}


def image_bytes(colour: tuple[int, int, int], seed: int) -> bytes:
    """A 32-px JPEG of one colour with a seeded stripe, so every image differs."""
    image = Image.new("RGB", (SIZE_PX, SIZE_PX), colour)
    for x in range(SIZE_PX):
        image.putpixel((x, seed % SIZE_PX), (255, 255 - x, (seed * 7) % 256))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def dataset_zip(path: Path, counts: Mapping[str, int], *, prefix: str = "train/") -> Path:
    """A ZIP of ``{prefix}{class}/{n}.jpg``; the default puts every image in the train split."""
    with zipfile.ZipFile(path, "w") as archive:
        seed = 0
        for label, count in counts.items():
            for index in range(count):
                seed += 1
                archive.writestr(f"{prefix}{label}/{index}.jpg", image_bytes(COLOURS[label], seed))
    return path


def context(
    settings: Settings, database: Database, blobs: BlobStore, job_id: int, attempt: int = 1
) -> JobContext:
    """The context a worker hands a job's handler."""
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job_type, config = job.type, dict(job.config)
    work_dir = settings.work_dir / str(job_id)
    work_dir.mkdir(parents=True, exist_ok=True)
    return JobContext(job_id, job_type, config, attempt, settings, database, blobs, work_dir)


def queue_dataset(database: Database, archive: Path) -> tuple[int, int]:
    """Start a dataset import of ``archive``; returns (dataset id, job id)."""
    source = ImportSource(kind=SourceKind.ZIP, archive_path=str(archive), original_name="d.zip")
    with database.session() as session:
        dataset, job = start_import(session, name="tiles", description="", source=source)
        return dataset.id, job.id


def import_dataset(settings: Settings, database: Database, blobs: BlobStore, archive: Path) -> int:
    """Import ``archive`` by running its job's handler here; returns the dataset id."""
    dataset_id, job_id = queue_dataset(database, archive)
    run_dataset_import(context(settings, database, blobs, job_id))
    mark_succeeded(database, job_id)
    return dataset_id


def tiny_weights(path: Path, num_classes: int = 3, seed: int = 0) -> Path:
    """timm's smallest EfficientNet with seeded random weights, as safetensors."""
    torch.manual_seed(seed)
    model = timm.create_model(TINY_ARCHITECTURE, pretrained=False, num_classes=num_classes)
    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(tensors, path)
    return path


def import_model(
    settings: Settings,
    database: Database,
    blobs: BlobStore,
    weights: Path,
    **options: Any,
) -> int:
    """Import a weights file with the real import job (sandbox included); returns the model id."""
    source = ModelSource(kind=ModelSourceKind.UPLOAD, path=str(weights), original_name=weights.name)
    options = {"architecture": TINY_ARCHITECTURE, "input_size_px": (SIZE_PX, SIZE_PX), **options}
    with database.session() as session:
        model, job = start_model_import(
            session,
            name="tiny",
            description="",
            source=source,
            options=ImportOptions(**options),
        )
        model_id, job_id = model.id, job.id
    run_model_import(context(settings, database, blobs, job_id))
    mark_succeeded(database, job_id)
    return model_id


def mark_succeeded(database: Database, job_id: int) -> None:
    """Record a job whose handler ran here as a runner would have."""
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.state = JobState.SUCCEEDED


def fast_config(**changes: Any) -> TrainingConfig:
    """A training config for 32-px images: two epochs, small batches, no loader processes."""
    base: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 4,
        "num_workers": 0,
        "enable_early_stopping": False,
        "validation_split": 0.25,
    }
    return TrainingConfig(**(base | changes))


def queue_training(
    database: Database,
    model_id: int,
    dataset_id: int,
    *,
    model_version: int | None = None,
    **changes: Any,
) -> int:
    """Queue a training job with :func:`fast_config` and ``changes``; returns its id."""
    job_config = TrainingJobConfig(
        model_id=model_id,
        model_version=model_version,
        dataset_id=dataset_id,
        training=fast_config(**changes),
    )
    with database.session() as session:
        return start_training(session, job_config).id


def run_all(env: JobEnvironment) -> None:
    """Run every queued job through the real runner, each in its own process."""
    while (claim := claim_job(env.db, owner=new_lease_owner(), lease_seconds=30)) is not None:
        run_claimed_job(env, claim)


def read_job(database: Database, job_id: int) -> Job:
    """The job's row as stored now."""
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def events(database: Database, job_id: int, event_type: str) -> list[JobEvent]:
    """The job's stored events of one type, oldest first."""
    with database.session() as session:
        return [e for e in list_events(session, job_id) if e.type == event_type]
