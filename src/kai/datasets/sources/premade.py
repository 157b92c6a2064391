"""Premade imports: queue one, and the job that runs it.

``dataset.import_premade`` opens the source through its repository's
client, reporting the ``download`` and ``extract`` stages, then ingests the
chosen images through the same :class:`~kai.datasets.ingest.Ingester` as an
upload, so they get the same image checks and blob deduplication, and writes
the first version with the source's provenance in one transaction. Its
failure hook is the upload import's: the dataset is marked failed with the
reason and no version is left behind.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from kai.datasets.catalog import CatalogEntry, find_entry
from kai.datasets.handlers import fail_import
from kai.datasets.imports import ImportSource, IngestJobConfig, SourceKind, start_import
from kai.datasets.ingest import Ingester, IngestResult
from kai.datasets.sources.opened import OpenedSource
from kai.datasets.sources.opening import describe_source, open_premade
from kai.datasets.sources.request import PremadeRequest
from kai.datasets.versions import lock_dataset, write_import_version
from kai.db.tables import Dataset, DatasetStatus, Job
from kai.errors import Conflict, InvalidInput, NotFound
from kai.jobs.context import JobContext
from kai.jobs.registry import JobRegistry
from kai.quality import jobs as quality_jobs  # by module: kai.quality imports datasets too

logger = logging.getLogger(__name__)

PREMADE_IMPORT_JOB = "dataset.import_premade"
# Overall progress at which each stage starts; the ingest is the bulk of the work.
STAGE_STARTS = {"download": 0.0, "extract": 0.3, "ingest": 0.4, "write": 0.9}
STAGE_ENDS = {"download": 0.3, "extract": 0.4, "ingest": 0.9, "write": 1.0}


def register_job_handlers(registry: JobRegistry) -> None:
    """Register the premade import job with an entry point's registry."""
    registry.register(PREMADE_IMPORT_JOB, run_premade_import, on_failure=fail_import)


def start_premade_import(
    session: Session,
    *,
    request: PremadeRequest,
    name: str | None = None,
    description: str = "",
    created_by: int | None = None,
    idempotency_key: str | None = None,
    max_attempts: int = 3,
) -> tuple[Dataset, Job]:
    """Create the dataset in ``importing`` state and queue its premade import job.

    The name defaults to the catalog entry's name or the source's own name;
    the description and license default to the catalog's. The caller commits,
    then dispatches.
    """
    entry = find_entry(request.catalog_id) if request.catalog_id else None
    source = ImportSource(
        kind=SourceKind.PREMADE, premade=request, original_name=request.source.source_id
    )
    dataset, job = start_import(
        session,
        name=(name or "").strip() or default_name(request, entry),
        description=description.strip() or (entry.description if entry else ""),
        source=source,
        created_by=created_by,
        idempotency_key=idempotency_key,
        max_attempts=max_attempts,
        job_type=PREMADE_IMPORT_JOB,
    )
    if entry is not None and not dataset.license:
        dataset.license = entry.license[:200]
    return dataset, job


def default_name(request: PremadeRequest, entry: CatalogEntry | None) -> str:
    """The original's name: the catalog's, else the last part of the source's reference."""
    if entry is not None:
        return entry.name
    return request.source.reference.rstrip("/").rsplit("/", 1)[-1][:200] or "premade"


def run_premade_import(ctx: JobContext) -> dict[str, Any]:
    """Download or read the cached source, ingest the chosen images, write version 1."""
    config = IngestJobConfig.model_validate(ctx.config)
    request = config.source.premade
    if request is None:
        raise InvalidInput(f"Job {ctx.job_id} has no premade request in its configuration")
    _require_importing(ctx, config.dataset_id)
    subject = describe_source(request.source)
    ctx.progress(0.0, stage="download", force=True)
    with open_premade(request, ctx.settings, work_dir=ctx.work_dir, report=_stage_report(ctx)) as (
        opened,
        layout,
    ):
        ctx.log(
            f"Importing {len(layout.files)} images in {len(layout.classes)} classes from "
            f"{subject} at revision {opened.revision}"
        )
        total = len(layout.files)
        ctx.progress(STAGE_STARTS["ingest"], stage="ingest", force=True, done=0, total=total)
        result = _ingester(ctx).ingest(opened.files, layout)
    if result.split_source == "folders":
        result.split_source = "source"
    ctx.check_cancelled()
    ctx.progress(STAGE_STARTS["write"], stage="write", force=True)
    with ctx.db.session() as session:
        dataset = lock_dataset(session, config.dataset_id)
        provenance = premade_provenance(request, opened)
        version = write_import_version(
            session, dataset=dataset, result=result, provenance=provenance, job_id=ctx.job_id
        )
        analysis = quality_jobs.queue_analysis_after(session, version, job_id=ctx.job_id)
        summary = {"versionId": version.id, "version": version.number, "qualityJobId": analysis.id}
    ctx.progress(1.0, stage="done", force=True)
    return {"datasetId": config.dataset_id, **summary, **_counts(result)}


def premade_provenance(request: PremadeRequest, opened: OpenedSource) -> dict[str, Any]:
    """Where a premade version came from, as stored in its metadata."""
    source = request.source
    return {
        "kind": SourceKind.PREMADE.value,
        "sourceDatasetId": request.source_dataset_id,
        "catalogId": request.catalog_id,
        "repository": source.repository.value,
        "reference": source.reference,
        "config": source.config,
        "requestedRevision": source.revision,
        "revision": opened.revision,
        "sourceId": source.source_id,
        "options": request.options.provenance(),
        "sourceClasses": opened.classes,
        "sourceImageCount": len(opened.images),
        **{f"source{key[:1].upper()}{key[1:]}": value for key, value in opened.details.items()},
    }


def _stage_report(ctx: JobContext) -> Any:
    def report(stage: str, fraction: float) -> None:
        start, end = STAGE_STARTS.get(stage, 0.0), STAGE_ENDS.get(stage, 0.0)
        at_edge = fraction in (0.0, 1.0)
        ctx.progress(start + (end - start) * fraction, stage=stage, force=at_edge)

    return report


def _ingester(ctx: JobContext) -> Ingester:
    start, end = STAGE_STARTS["ingest"], STAGE_ENDS["ingest"]

    def progress(done: int, total: int) -> None:
        fraction = start + (end - start) * done / max(total, 1)
        ctx.progress(fraction, stage="ingest", done=done, total=total)

    return Ingester(ctx.blobs, ctx.settings, progress=progress, check_cancelled=ctx.check_cancelled)


def _require_importing(ctx: JobContext, dataset_id: int) -> None:
    with ctx.db.session() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise NotFound(f"Dataset {dataset_id} no longer exists")
        if dataset.status is not DatasetStatus.IMPORTING:
            raise Conflict(
                f"Dataset {dataset_id} is {dataset.status.value}, not importing; "
                "the job has nothing to do"
            )


def _counts(result: IngestResult) -> dict[str, int]:
    return {
        "sampleCount": len(result.samples),
        "skippedCount": len(result.skipped),
        "badCount": result.bad_count,
    }
