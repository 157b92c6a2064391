"""The dataset service's job handlers, registered by the entry points.

``dataset.import`` turns an uploaded ZIP, a CSV mapping or a server folder
into a dataset's first version; ``dataset.add_files`` adds a ZIP's images to
a dataset as a new version. Both read and store every image before they open
the one transaction that writes the version, so an attempt that dies leaves
no version. Their failure hooks mark an import's dataset failed with the
reason and delete the uploaded files.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import insert, select

from kai.datasets.imports import (
    ADD_FILES_JOB,
    IMPORT_JOB,
    IngestJobConfig,
    open_source,
    remove_upload,
)
from kai.datasets.ingest import Ingester, IngestResult
from kai.datasets.layouts import SkippedFile
from kai.datasets.versions import (
    finish_version,
    import_report,
    lock_dataset,
    record_blobs,
    require_latest_version,
    write_child_version,
    write_import_version,
)
from kai.db.tables import Dataset, DatasetStatus, Sample
from kai.errors import Conflict, InvalidInput, NotFound
from kai.jobs.context import JobContext
from kai.jobs.registry import JobRegistry
from kai.quality import jobs as quality_jobs  # by module: kai.quality imports datasets too

logger = logging.getLogger(__name__)

# Progress shares: planning and splitting are quick, reading the images is the job.
INGEST_START, INGEST_END = 0.05, 0.9


def register_job_handlers(registry: JobRegistry) -> None:
    """Register the dataset job kinds with an entry point's registry."""
    registry.register(IMPORT_JOB, run_import, on_failure=fail_import)
    registry.register(ADD_FILES_JOB, run_add_files, on_failure=fail_add_files)


def run_import(ctx: JobContext) -> dict[str, Any]:
    """Read the source into the dataset's first version."""
    config = IngestJobConfig.model_validate(ctx.config)
    _require_dataset(ctx, config.dataset_id, DatasetStatus.IMPORTING)
    ctx.progress(0.0, stage="plan", force=True)
    with open_source(config.source, ctx.settings) as (files, layout):
        ctx.log(f"Importing {len(layout.files)} images in {len(layout.classes)} classes")
        result = _ingester(ctx).ingest(files, layout)
    ctx.check_cancelled()
    ctx.progress(INGEST_END, stage="write", force=True)
    with ctx.db.session() as session:
        dataset = lock_dataset(session, config.dataset_id)
        version = write_import_version(
            session,
            dataset=dataset,
            result=result,
            provenance=config.source.provenance() | {"layout": layout.shape},
            job_id=ctx.job_id,
        )
        analysis = quality_jobs.queue_analysis_after(session, version, job_id=ctx.job_id)
        summary = {"versionId": version.id, "version": version.number, "qualityJobId": analysis.id}
    remove_upload(config.upload_dir)
    ctx.progress(1.0, stage="done", force=True)
    return {"datasetId": config.dataset_id, **summary, **_counts(result)}


def fail_import(ctx: JobContext, reason: str) -> None:
    """Mark the importing dataset failed with the reason and drop the upload."""
    config = IngestJobConfig.model_validate(ctx.config)
    with ctx.db.session() as session:
        dataset = session.get(Dataset, config.dataset_id)
        if dataset is not None and dataset.status is DatasetStatus.IMPORTING:
            dataset.status = DatasetStatus.FAILED
            dataset.error = reason
    remove_upload(config.upload_dir)
    logger.info("Dataset import failed", extra={"dataset_id": config.dataset_id, "reason": reason})


def run_add_files(ctx: JobContext) -> dict[str, Any]:
    """Add the source's images to the dataset as a new version."""
    config = IngestJobConfig.model_validate(ctx.config)
    _require_dataset(ctx, config.dataset_id, DatasetStatus.READY)
    ctx.progress(0.0, stage="plan", force=True)
    known = _stored_blobs(ctx, config.dataset_id)
    with open_source(config.source, ctx.settings, min_classes=1) as (files, layout):
        ctx.log(f"Adding {len(layout.files)} images")
        result = _ingester(ctx).ingest(files, layout, min_classes=1)
    _drop_known(result, known)
    if not result.samples:
        raise InvalidInput("Every image in the upload is already in the dataset with its label")
    ctx.progress(INGEST_END, stage="write", force=True)
    with ctx.db.session() as session:
        dataset = lock_dataset(session, config.dataset_id)
        message = config.message or f"Added {len(result.samples)} images"
        version, parent = write_child_version(
            session, dataset=dataset, message=message, job_id=ctx.job_id
        )
        record_blobs(session, result.blob_sizes)
        rows = [s.row(version.id, result.splits[s.original_name]) for s in result.samples]
        if rows:
            session.execute(insert(Sample), rows)
        provenance = config.source.provenance() | {"parentVersion": parent.number}
        extra = {"importReport": import_report(result), "provenance": provenance}
        finish_version(session, version, extra)
        analysis = quality_jobs.queue_analysis_after(session, version, job_id=ctx.job_id)
        summary = {"versionId": version.id, "version": version.number, "qualityJobId": analysis.id}
    remove_upload(config.upload_dir)
    ctx.progress(1.0, stage="done", force=True)
    return {"datasetId": config.dataset_id, **summary, **_counts(result)}


def fail_add_files(ctx: JobContext, reason: str) -> None:
    """Drop the upload; the dataset keeps its versions as they were."""
    config = IngestJobConfig.model_validate(ctx.config)
    remove_upload(config.upload_dir)
    logger.info("Adding files failed", extra={"dataset_id": config.dataset_id, "reason": reason})


def _ingester(ctx: JobContext) -> Ingester:
    def progress(done: int, total: int) -> None:
        share = done / max(total, 1)
        fraction = INGEST_START + (INGEST_END - INGEST_START) * share
        ctx.progress(fraction, stage="ingest", done=done, total=total)

    return Ingester(ctx.blobs, ctx.settings, progress=progress, check_cancelled=ctx.check_cancelled)


def _require_dataset(ctx: JobContext, dataset_id: int, status: DatasetStatus) -> None:
    with ctx.db.session() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise NotFound(f"Dataset {dataset_id} no longer exists")
        if dataset.status is not status:
            raise Conflict(
                f"Dataset {dataset_id} is {dataset.status.value}, not {status.value}; "
                "the job has nothing to do"
            )


def _stored_blobs(ctx: JobContext, dataset_id: int) -> dict[tuple[str, str], str]:
    """The latest version's samples by (blob, label), naming the sample that holds them."""
    with ctx.db.session() as session:
        parent = require_latest_version(session, dataset_id)
        query = select(Sample.blob_sha256, Sample.label, Sample.original_name)
        rows = session.execute(query.where(Sample.version_id == parent.id))
        return {(sha256, label): name for sha256, label, name in rows}


def _drop_known(result: IngestResult, known: dict[tuple[str, str], str]) -> None:
    """Leave out images the dataset already holds under the same label."""
    kept = []
    for sample in result.samples:
        existing = known.get((sample.blob_sha256, sample.label))
        if existing is None:
            kept.append(sample)
        else:
            reason = f"already in the dataset as {existing!r} with the same label"
            result.skipped.append(SkippedFile(sample.original_name, reason))
    result.samples = kept


def _counts(result: IngestResult) -> dict[str, int]:
    return {
        "sampleCount": len(result.samples),
        "skippedCount": len(result.skipped),
        "badCount": result.bad_count,
    }
