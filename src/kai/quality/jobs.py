"""The ``dataset.quality`` job: queue it, run it, and queue it after every import.

The job reads the version's sample rows, analyses their images outside any
transaction, then stores the report with its issues in one transaction, so
a report is either whole or absent.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from kai.datasets.records import resolve_version
from kai.db.tables import DatasetVersion, Job
from kai.errors import NotFound
from kai.jobs.context import JobContext
from kai.jobs.records import submit_job
from kai.jobs.registry import JobRegistry
from kai.quality.analysis import analyse_samples
from kai.quality.backbones import resolve_embedder
from kai.quality.reports import iter_records, store_report

logger = logging.getLogger(__name__)

QUALITY_JOB = "dataset.quality"
# Reading and embedding the images are the bulk of the work; the checks and the write follow.
READ_END = 0.4
EMBED_END = 0.85


class AnalysisJobConfig(BaseModel):
    """What a quality job analyses."""

    model_config = ConfigDict(frozen=True)

    dataset_id: int
    version_id: int


def register_job_handlers(registry: JobRegistry) -> None:
    """Register the quality job kind with an entry point's registry."""
    registry.register(QUALITY_JOB, run_analysis)


def start_analysis(
    session: Session,
    dataset_id: int,
    *,
    version: int | None = None,
    created_by: int | None = None,
    idempotency_key: str | None = None,
    max_attempts: int = 3,
) -> tuple[DatasetVersion, Job]:
    """Queue the analysis of version ``version`` (the latest when None); the caller dispatches.

    Raises:
        NotFound: The dataset or the version does not exist.
        Conflict: The dataset has no version yet.
    """
    chosen = resolve_version(session, dataset_id, version)
    job = submit_job(
        session,
        job_type=QUALITY_JOB,
        config=AnalysisJobConfig(dataset_id=dataset_id, version_id=chosen.id).model_dump(),
        idempotency_key=idempotency_key,
        created_by=created_by,
        max_attempts=max_attempts,
    )
    return chosen, job


def queue_analysis_after(session: Session, version: DatasetVersion, *, job_id: int | None) -> Job:
    """Queue the analysis of a version that job ``job_id`` is writing, to run once it succeeds.

    Call it in the transaction that writes the version, so the two commit together.
    The version's id keys the job, so a retried import never queues a second one.
    """
    config = AnalysisJobConfig(dataset_id=version.dataset_id, version_id=version.id)
    job = submit_job(
        session,
        job_type=QUALITY_JOB,
        config=config.model_dump(),
        idempotency_key=f"dataset-quality:version-{version.id}",
        depends_on=[job_id] if job_id is not None else [],
    )
    logger.info("Quality analysis queued", extra={"job_id": job.id, "version_id": version.id})
    return job


def run_analysis(ctx: JobContext) -> dict[str, Any]:
    """Analyse the version named in the job's configuration and store its report."""
    config = AnalysisJobConfig.model_validate(ctx.config)
    ctx.progress(0.0, stage="load", force=True)
    with ctx.db.session() as session:
        _require_version(session, config)
        records = list(iter_records(session, config.version_id))
    ctx.log(f"Analysing {len(records)} samples of dataset {config.dataset_id}")

    def progress(done: int, total: int) -> None:
        ctx.progress(READ_END * done / max(total, 1), stage="read", done=done, total=total)

    def embedding_progress(done: int, total: int) -> None:
        share = READ_END + (EMBED_END - READ_END) * done / max(total, 1)
        ctx.progress(share, stage="embed", done=done, total=total)

    embedder = resolve_embedder(
        ctx.settings, ctx.db, ctx.blobs, version_id=config.version_id, work_dir=ctx.work_dir
    )
    if isinstance(embedder, str):
        ctx.log(f"Embedding checks will not run: {embedder}", level="warning")
    analysis = analyse_samples(
        records,
        ctx.blobs,
        embedder=embedder,
        progress=progress,
        embedding_progress=embedding_progress,
        check_cancelled=ctx.check_cancelled,
    )
    ctx.progress(EMBED_END, stage="write", force=True)
    with ctx.db.session() as session:
        version = _require_version(session, config)
        report = store_report(session, version, analysis, job_id=ctx.job_id)
        result = {"reportId": report.id, "version": version.number}
    ctx.progress(1.0, stage="done", force=True)
    return {
        "datasetId": config.dataset_id,
        **result,
        "overallQualityScore": analysis.score,
        "needsImprovement": analysis.needs_improvement,
        "issueCounts": analysis.issue_counts,
    }


def _require_version(session: Session, config: AnalysisJobConfig) -> DatasetVersion:
    version = session.get(DatasetVersion, config.version_id)
    if version is None or version.dataset_id != config.dataset_id:
        raise NotFound(
            f"Dataset {config.dataset_id} no longer has the version this analysis was for"
        )
    return version
