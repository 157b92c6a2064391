"""Schemas of quality reports, their issues, and repairs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from kai.api.schemas.base import ApiModel, UtcDatetime
from kai.api.schemas.datasets import SampleRead
from kai.db.tables import IssueSeverity, IssueType, QualityIssue, Sample, Split
from kai.quality import Fix, FixKind, ReportView, SimilarSample

MAX_FIX_IDS = 100_000


class QualityStarted(ApiModel):
    """A queued analysis of one dataset version."""

    job_id: int
    dataset_id: int
    version: int


class QualityReportRead(ApiModel):
    """A version's quality report: score, how it was reached, metrics and what to do."""

    id: int
    dataset_id: int
    version: int
    job_id: int | None
    overall_quality_score: float = Field(ge=0, le=100)
    needs_improvement: bool
    score_breakdown: dict[str, Any]
    metrics: dict[str, Any]
    recommendations: list[dict[str, Any]]
    issue_counts: dict[str, int]
    parent_version: int | None
    parent_score: float | None
    score_change: float | None
    created_at: UtcDatetime

    @classmethod
    def from_view(cls, view: ReportView) -> QualityReportRead:
        """The schema of a stored report."""
        report = view.report
        return cls(
            id=report.id,
            dataset_id=view.version.dataset_id,
            version=view.version.number,
            job_id=report.job_id,
            overall_quality_score=report.score,
            needs_improvement=report.needs_improvement,
            score_breakdown=report.score_breakdown,
            metrics=report.metrics,
            recommendations=report.recommendations,
            issue_counts=report.issue_counts,
            parent_version=view.parent_number,
            parent_score=view.parent_score,
            score_change=view.score_change,
            created_at=report.created_at,
        )


class SimilarSampleRead(ApiModel):
    """A sample like the one asked about, with their cosine similarity in embedding space."""

    sample: SampleRead
    similarity: float

    @classmethod
    def from_similar(cls, found: SimilarSample) -> SimilarSampleRead:
        """The schema of one search result."""
        return cls(sample=SampleRead.from_sample(found.sample), similarity=found.similarity)


class SimilarSamplesRead(ApiModel):
    """The samples of one version most like ``sampleId``, most similar first."""

    sample_id: str
    dataset_id: int
    version: int
    items: list[SimilarSampleRead]


class QualityIssueRead(ApiModel):
    """One issue of one sample; ``sampleId`` works with the sample image and thumbnail routes."""

    sample_id: str
    type: IssueType
    severity: IssueSeverity
    evidence: dict[str, Any]
    label: str | None
    split: Split | None
    original_name: str | None

    @classmethod
    def from_rows(cls, issue: QualityIssue, sample: Sample | None) -> QualityIssueRead:
        """The schema of an issue and its sample row (None if the row is gone)."""
        return cls(
            sample_id=issue.sample_uid,
            type=issue.issue_type,
            severity=issue.severity,
            evidence=issue.evidence,
            label=sample.label if sample else None,
            split=sample.split if sample else None,
            original_name=sample.original_name if sample else None,
        )


class SimpleFix(ApiModel):
    """A fix without options."""

    type: Literal["dropDuplicates", "dropUnreadable", "resplitLeakage", "reweightClasses"]

    def to_fix(self) -> Fix:
        """The service's fix."""
        return Fix(FixKind(self.type))


class ApplyLabelsFix(ApiModel):
    """Relabel these samples with the labels the report suggests for them."""

    type: Literal["applyLabels"]
    sample_ids: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        min_length=1, max_length=MAX_FIX_IDS
    )

    def to_fix(self) -> Fix:
        """The service's fix."""
        return Fix(FixKind.APPLY_LABELS, sample_ids=tuple(self.sample_ids))


class CapClassesFix(ApiModel):
    """Keep at most ``max`` training images per class, dropping flagged ones first."""

    type: Literal["capClasses"]
    max: int = Field(ge=1)

    def to_fix(self) -> Fix:
        """The service's fix."""
        return Fix(FixKind.CAP_CLASSES, max_per_class=self.max)


RepairFix = Annotated[SimpleFix | ApplyLabelsFix | CapClassesFix, Field(discriminator="type")]


class RepairCreate(ApiModel):
    """Fixes to apply to the latest version, as named by its report's recommendations."""

    fixes: list[RepairFix] = Field(min_length=1, max_length=10)
    message: str = Field(default="", max_length=1000)


class RepairRead(ApiModel):
    """The repaired version and the queued analysis that will score it."""

    dataset_id: int
    version: int
    parent_version: int
    sample_count: int
    fixes: list[str]
    job_id: int
