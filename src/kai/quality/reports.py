"""Quality reports in the database: store an analysis, read the latest, page its issues."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from kai.db.tables import DatasetVersion, IssueType, QualityIssue, QualityReport, Sample
from kai.errors import InvalidInput, NotFound
from kai.quality.analysis import Analysis
from kai.quality.samples import SampleRecord

MAX_PAGE_SIZE = 500
_INSERT_BATCH = 1000


@dataclass(frozen=True)
class ReportView:
    """A report with its version and the parent version's score, when it has one."""

    report: QualityReport
    version: DatasetVersion
    parent_number: int | None
    parent_score: float | None

    @property
    def score_change(self) -> float | None:
        """This score minus the parent's, when the parent was analysed."""
        if self.parent_score is None:
            return None
        return round(self.report.score - self.parent_score, 1)


def iter_records(session: Session, version_id: int) -> Iterator[SampleRecord]:
    """The version's samples in a stable order, as the analysis reads them."""
    query = select(
        Sample.uid,
        Sample.label,
        Sample.split,
        Sample.group,
        Sample.blob_sha256,
        Sample.reduced_sha256,
        Sample.width,
        Sample.height,
    ).where(Sample.version_id == version_id)
    for row in session.execute(query.order_by(Sample.id)):
        yield SampleRecord(*row)


def store_report(
    session: Session, version: DatasetVersion, analysis: Analysis, *, job_id: int | None
) -> QualityReport:
    """Write the report and its issues in the caller's transaction."""
    report = QualityReport(
        version_id=version.id,
        job_id=job_id,
        score=analysis.score,
        needs_improvement=analysis.needs_improvement,
        metrics=analysis.metrics,
        score_breakdown=analysis.score_breakdown,
        issue_counts=analysis.issue_counts,
        recommendations=analysis.recommendations,
    )
    session.add(report)
    session.flush()
    rows = [
        {
            "report_id": report.id,
            "sample_uid": finding.sample_uid,
            "issue_type": finding.issue_type,
            "severity": finding.severity,
            "evidence": finding.evidence,
        }
        for finding in analysis.findings
    ]
    for start in range(0, len(rows), _INSERT_BATCH):
        session.execute(insert(QualityIssue), rows[start : start + _INSERT_BATCH])
    return report


def find_report(session: Session, version_id: int) -> QualityReport | None:
    """The newest report of the version, or None when it was never analysed."""
    query = select(QualityReport).where(QualityReport.version_id == version_id)
    return session.scalar(query.order_by(QualityReport.id.desc()).limit(1))


def read_report(session: Session, version: DatasetVersion) -> ReportView:
    """The newest report of the version with the parent's score.

    Raises:
        NotFound: The version has not been analysed yet.
    """
    report = find_report(session, version.id)
    if report is None:
        raise NotFound(
            f"Version {version.number} of dataset {version.dataset_id} has not been analysed "
            "yet; start the analysis with POST .../quality or 'kai dataset quality'",
            details={"datasetId": version.dataset_id, "version": version.number},
        )
    parent = session.get(DatasetVersion, version.parent_id) if version.parent_id else None
    parent_report = find_report(session, parent.id) if parent else None
    return ReportView(
        report=report,
        version=version,
        parent_number=parent.number if parent else None,
        parent_score=parent_report.score if parent_report else None,
    )


def list_issues(
    session: Session,
    report: QualityReport,
    *,
    issue_type: IssueType | None = None,
    page: int = 1,
    page_size: int = 50,
) -> tuple[list[tuple[QualityIssue, Sample | None]], int]:
    """One page of the report's issues, each with its sample row, and the total."""
    if page < 1:
        raise InvalidInput(f"page must be at least 1, not {page}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
    query = select(QualityIssue).where(QualityIssue.report_id == report.id)
    if issue_type is not None:
        query = query.where(QualityIssue.issue_type == issue_type)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    issues = list(
        session.scalars(
            query.order_by(QualityIssue.id).offset((page - 1) * page_size).limit(page_size)
        )
    )
    samples = _samples(session, report.version_id, [issue.sample_uid for issue in issues])
    return [(issue, samples.get(issue.sample_uid)) for issue in issues], total


def issues_of(
    session: Session, report: QualityReport, issue_types: frozenset[IssueType]
) -> list[QualityIssue]:
    """Every issue of the given types in the report."""
    query = select(QualityIssue).where(
        QualityIssue.report_id == report.id, QualityIssue.issue_type.in_(issue_types)
    )
    return list(session.scalars(query.order_by(QualityIssue.id)))


def _samples(session: Session, version_id: int, uids: list[str]) -> dict[str, Sample]:
    if not uids:
        return {}
    query = select(Sample).where(Sample.version_id == version_id, Sample.uid.in_(set(uids)))
    return {sample.uid: sample for sample in session.scalars(query)}
