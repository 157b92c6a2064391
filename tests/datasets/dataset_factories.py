"""Builders for dataset test data: tiny images, ZIP archives and folders made in the test."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Job
from kai.jobs.context import JobContext
from kai.storage.blobs import BlobStore

RunImport = Callable[..., tuple[int, dict[str, Any]]]

COLOURS = {"ceramic": (200, 60, 40), "stone": (120, 120, 120), "wood": (140, 90, 30)}


def image_bytes(seed: int, *, size_px: int = 32, fmt: str = "JPEG") -> bytes:
    """A small image whose pixels depend on ``seed``, so every seed gives other bytes."""
    image = Image.new("RGB", (size_px, size_px), ((seed * 37) % 256, (seed * 91) % 256, 90))
    for x in range(size_px):
        image.putpixel((x, seed % size_px), (255, 255 - x, (seed * 7) % 256))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def class_files(
    classes: Mapping[str, int], *, prefix: str = "", start: int = 0
) -> dict[str, bytes]:
    """``{prefix}{class}/{n}.jpg`` for each class and count, each image distinct."""
    files: dict[str, bytes] = {}
    seed = start
    for label, count in classes.items():
        for index in range(count):
            seed += 1
            files[f"{prefix}{label}/{label}_{index}.jpg"] = image_bytes(seed)
    return files


def make_zip(path: Path, members: Mapping[str, bytes]) -> Path:
    """Write the members into a ZIP archive at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def make_folder(root: Path, members: Mapping[str, bytes]) -> Path:
    """Write the members as files below ``root``."""
    for name, data in members.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def truncated_jpeg(seed: int = 999) -> bytes:
    """A JPEG cut off in the middle of its data."""
    data = image_bytes(seed, size_px=64)
    return data[: len(data) // 2]


def pdf_bytes() -> bytes:
    """The start of a PDF document."""
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A PNG whose header claims many pixels while the file stays tiny."""
    image = Image.new("1", (width, height))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


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
    return JobContext(
        job_id=job_id,
        job_type=job_type,
        config=config,
        attempt=1,
        settings=settings,
        db=database,
        blobs=blobs,
        work_dir=work_dir,
    )
