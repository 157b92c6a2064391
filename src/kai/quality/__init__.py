"""Dataset quality: per-image checks, duplicates, leakage, class balance, score and repair.

The API, the CLI and the job handlers call the functions re-exported here.
The analysis itself (:func:`analyse_samples`) touches no database; the job
``dataset.quality`` reads a version's samples, analyses them and stores a
:class:`~kai.db.tables.QualityReport` with one
:class:`~kai.db.tables.QualityIssue` per sample and issue.
"""

from kai.quality.analysis import Analysis, analyse_samples
from kai.quality.findings import Finding, Thresholds
from kai.quality.jobs import (
    QUALITY_JOB,
    queue_analysis_after,
    register_job_handlers,
    start_analysis,
)
from kai.quality.repair import Fix, FixKind, RepairOutcome, repair_dataset
from kai.quality.reports import ReportView, find_report, list_issues, read_report
from kai.quality.score import FAMILIES, NEEDS_IMPROVEMENT_BELOW
from kai.quality.similar import MAX_SIMILAR, SimilarSample, find_similar_samples

__all__ = [
    "FAMILIES",
    "MAX_SIMILAR",
    "NEEDS_IMPROVEMENT_BELOW",
    "QUALITY_JOB",
    "Analysis",
    "Finding",
    "Fix",
    "FixKind",
    "RepairOutcome",
    "ReportView",
    "SimilarSample",
    "Thresholds",
    "analyse_samples",
    "find_report",
    "find_similar_samples",
    "list_issues",
    "queue_analysis_after",
    "read_report",
    "register_job_handlers",
    "repair_dataset",
    "start_analysis",
]
