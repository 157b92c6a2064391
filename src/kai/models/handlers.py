"""The model service's job handlers, registered by the entry points.

``model.import`` turns an uploaded (or downloaded, or a repository's) file
into a model version: it detects the format, runs the format's cheap checks, then hands
the inspection, the conversion and a trial inference to the sandbox, stores
the original file and the artifact as blobs, and writes the version in one
transaction. Its failure hook marks a model without versions failed with
the reason and deletes the upload.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from kai.db.tables import Model, ModelStatus, ModelVersion
from kai.errors import NotFound
from kai.jobs.context import JobContext
from kai.jobs.registry import JobRegistry
from kai.models import imports
from kai.models.cards import render_card
from kai.models.formats import ImportOptions, ModelFormat, create_format_registry
from kai.models.imports import IMPORT_JOB, ModelImportConfig, SourceKind, remove_upload
from kai.models.inspection import (
    SANDBOX_MEMORY_BYTES,
    SANDBOX_TIMEOUT_SECONDS,
    Examination,
    ExamineRequest,
    examine_isolated,
    file_digest,
    resolve_format,
)
from kai.models.repositories import FetchedModel, fetch_repository_model, parse_repository
from kai.models.versions import NewVersion, StoredFile, lock_model, write_version
from kai.security import downloads

logger = logging.getLogger(__name__)

_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,12}$")


def register_job_handlers(registry: JobRegistry) -> None:
    """Register the model job kinds with an entry point's registry."""
    registry.register(IMPORT_JOB, run_import, on_failure=fail_import)


def run_import(ctx: JobContext) -> dict[str, Any]:
    """Import the source's file as the model's next version."""
    config = ModelImportConfig.model_validate(ctx.config)
    _require_model(ctx, config.model_id)
    ctx.progress(0.0, stage="fetch", force=True)
    fetched = _fetch(ctx, config)
    path, options = fetched.path, fetched.options
    sha256, size_bytes = file_digest(path)

    ctx.progress(0.2, stage="check", force=True)
    model_format = resolve_format(create_format_registry(), path, options)
    ctx.log(f"Detected format {model_format.name} ({size_bytes} bytes, SHA-256 {sha256[:12]})")

    ctx.progress(0.3, stage="inspect", force=True)
    examination = _examine(ctx, model_format, path, options)
    ctx.check_cancelled()

    ctx.progress(0.8, stage="store", force=True)
    files = _store_files(ctx, path, examination, fetched.original_name)
    new = NewVersion(
        framework=model_format.framework,
        inspection=examination.inspection,
        files=files,
        sha256=sha256,
        size_bytes=size_bytes,
        provenance=fetched.provenance | {"sha256": sha256},
        safety=_safety(examination),
        job_id=ctx.job_id,
    )
    summary = _write(ctx, config.model_id, new)
    remove_upload(config.upload_dir)
    ctx.progress(1.0, stage="done", force=True)
    return {"modelId": config.model_id, **summary}


def fail_import(ctx: JobContext, reason: str) -> None:
    """Mark a model without versions failed, note the reason, and drop the upload."""
    config = ModelImportConfig.model_validate(ctx.config)
    with ctx.db.session() as session:
        model = session.get(Model, config.model_id)
        if model is not None:
            has_version = session.scalar(
                select(ModelVersion.id).where(ModelVersion.model_id == model.id).limit(1)
            )
            if has_version is None:
                model.status = ModelStatus.FAILED
            model.error = reason
    remove_upload(config.upload_dir)


def _require_model(ctx: JobContext, model_id: int) -> None:
    with ctx.db.session() as session:
        if session.get(Model, model_id) is None:
            raise NotFound(f"Model {model_id} was deleted before its import ran")


def _fetch(ctx: JobContext, config: ModelImportConfig) -> FetchedModel:
    source = config.source
    if source.kind is SourceKind.REPOSITORY:
        return _fetch_repository(ctx, config)
    if source.kind is SourceKind.UPLOAD:
        assert source.path is not None
        path = Path(source.path)
    else:
        path = _download(ctx, source.url or "")
    return FetchedModel(path, config.options, source.provenance(), source.original_name)


def _fetch_repository(ctx: JobContext, config: ModelImportConfig) -> FetchedModel:
    source = config.source
    assert source.repository is not None and source.reference is not None
    repository = parse_repository(source.repository)
    ctx.log(f"Resolving {source.reference!r} in {repository.value}")
    fetched = fetch_repository_model(
        repository,
        source.reference,
        source.revision,
        config.options,
        settings=ctx.settings,
        work_dir=ctx.work_dir / "fetched",
        trust_repository_code=source.trust_repository_code,
    )
    for note in fetched.notes:
        ctx.log(note)
    return fetched


def _download(ctx: JobContext, url: str) -> Path:
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    suffix = PurePosixPath(urlsplit(url).path).suffix
    dest = ctx.work_dir / ("download" + (suffix if _SAFE_SUFFIX.match(suffix) else ""))
    ctx.log(f"Downloading {url}")
    result = downloads.download(
        url,
        dest,
        limits=downloads.DownloadLimits.from_settings(ctx.settings),
        address_policy=imports.download_policy(),
    )
    ctx.log(f"Downloaded {result.size_bytes} bytes from {result.final_url}")
    return result.path


def _examine(
    ctx: JobContext, model_format: ModelFormat, path: Path, options: ImportOptions
) -> Examination:
    out_dir = ctx.work_dir / "artifact"
    request = ExamineRequest(model_format, path, options, out_dir)
    examination = examine_isolated(request)
    for note in examination.inspection.notes:
        ctx.log(note)
    return examination


def _store_files(
    ctx: JobContext, path: Path, examination: Examination, original_name: str
) -> list[StoredFile]:
    files = []
    for artifact in examination.artifacts:
        sha256 = ctx.blobs.put_file(artifact.path)
        files.append(StoredFile(artifact.role, artifact.name, sha256, artifact.path.stat().st_size))
    name = "original/" + (PurePosixPath(original_name).name or path.name)
    files.append(StoredFile("original", name, ctx.blobs.put_file(path), path.stat().st_size))
    return files


def _safety(examination: Examination) -> dict[str, Any]:
    checks = [
        *examination.inspection.safety_checks,
        "inspected and run once on a random input in an isolated process "
        f"(memory limit {SANDBOX_MEMORY_BYTES // 1024**2} MiB, "
        f"time limit {SANDBOX_TIMEOUT_SECONDS:.0f} s, no secrets)",
    ]
    return {"verdict": "passed", "checks": checks}


def _write(ctx: JobContext, model_id: int, new: NewVersion) -> dict[str, Any]:
    with ctx.db.session() as session:
        model = lock_model(session, model_id)
        version = write_version(session, model, new)
        version.card = render_card(model, version)
        return {
            "versionId": version.id,
            "version": version.number,
            "format": version.format,
            "numClasses": version.num_classes,
        }
