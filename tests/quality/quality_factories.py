"""A small planted dataset: 32-pixel textured images with known flaws, and ways to import it."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from kai.config import Settings
from kai.datasets import ImportSource, SourceKind, start_import
from kai.datasets.handlers import run_import
from kai.db.engine import Database
from kai.db.tables import Job
from kai.jobs.context import JobContext
from kai.storage.blobs import BlobStore

SIZE_PX = 32
TINTS = {"ceramic": (0.75, 0.35, 0.25), "stone": (0.45, 0.5, 0.55)}


def texture(seed: int, tint: tuple[float, float, float]) -> Image.Image:
    """A tinted texture: smooth random shapes plus fine grain, different for every seed."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((4, 4)) * 255).astype(np.uint8))
    shape = np.asarray(coarse.resize((SIZE_PX, SIZE_PX), Image.Resampling.BICUBIC)) / 255.0
    grain = rng.normal(0.0, 0.12, (SIZE_PX, SIZE_PX))
    grey = np.clip(0.25 + 0.5 * shape + grain, 0, 1)
    rgb = np.stack([grey * (0.6 + 0.4 * t) for t in tint], axis=2)
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def encode(image: Image.Image, fmt: str = "PNG", **options: int) -> bytes:
    """The image's file bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@dataclass
class PlantedSet:
    """File names by path in the ZIP, and which names carry which planted flaw."""

    files: dict[str, bytes] = field(default_factory=dict)
    planted: dict[str, set[str]] = field(default_factory=dict)

    def plant(self, kind: str, *names: str) -> None:
        self.planted.setdefault(kind, set()).update(names)


def planted_set() -> PlantedSet:
    """Two classes in three splits, with blurred, dark, exact, near and relabelled copies."""
    found = PlantedSet()
    seed = 0
    for split, count in (("train", 9), ("val", 3), ("test", 3)):
        for label, tint in TINTS.items():
            for index in range(count):
                seed += 1
                found.files[f"{split}/{label}/{label}_{index}.png"] = encode(texture(seed, tint))
    blurred = texture(500, TINTS["ceramic"]).filter(ImageFilter.GaussianBlur(2.5))
    found.files["train/ceramic/blurred.png"] = encode(blurred)
    found.plant("blurry", "train/ceramic/blurred.png")
    dark = Image.fromarray((np.asarray(texture(501, TINTS["stone"])) * 0.08).astype(np.uint8))
    found.files["train/stone/dark.png"] = encode(dark)
    found.plant("too_dark", "train/stone/dark.png")
    found.files["test/ceramic/leaked.png"] = found.files["train/ceramic/ceramic_0.png"]
    found.plant("exact_leakage", "test/ceramic/leaked.png")
    found.plant("exact_copies", "train/ceramic/ceramic_0.png", "test/ceramic/leaked.png")
    found.files["train/stone/relabelled.png"] = found.files["train/ceramic/ceramic_1.png"]
    found.plant("label_conflict", "train/stone/relabelled.png", "train/ceramic/ceramic_1.png")
    found.plant("exact_copies", "train/stone/relabelled.png", "train/ceramic/ceramic_1.png")
    original = Image.open(io.BytesIO(found.files["train/stone/stone_2.png"]))
    found.files["train/stone/recompressed.jpg"] = encode(original, "JPEG", quality=75)
    found.plant("near_copies", "train/stone/recompressed.jpg", "train/stone/stone_2.png")
    return found


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    """The files as a ZIP archive at ``path``."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def job_context(
    settings: Settings, database: Database, blobs: BlobStore, job_id: int
) -> JobContext:
    """The context a worker would hand the job's handler."""
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job_type, config = job.type, dict(job.config)
    work_dir = settings.work_dir / str(job_id)
    work_dir.mkdir(parents=True, exist_ok=True)
    return JobContext(job_id, job_type, config, 1, settings, database, blobs, work_dir)


def import_zip(
    settings: Settings, database: Database, blobs: BlobStore, archive: Path
) -> tuple[int, dict[str, object]]:
    """Import the ZIP as a new dataset by running the import job here; (dataset id, result)."""
    source = ImportSource(
        kind=SourceKind.ZIP, archive_path=str(archive), original_name=archive.name
    )
    with database.session() as session:
        dataset, job = start_import(session, name="planted", description="", source=source)
        dataset_id, job_id = dataset.id, job.id
    return dataset_id, run_import(job_context(settings, database, blobs, job_id))
