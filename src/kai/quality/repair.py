"""Repair: apply chosen fixes from a version's quality report as one new version.

The fixes come from the latest version's newest report and become ordinary
dataset edits (relabel, move, remove, reweight) applied in one transaction
through :func:`kai.datasets.edits.apply_edits`, so a repaired version is a
version like any other, with its parent, its diff and its edits listed. The
new version's analysis is queued in the same transaction; its report shows
the score change against the parent's.

Order matters: relabels and moves go first, removals after, so a sample both
moved and dropped is simply dropped.
"""

from __future__ import annotations

import enum
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from kai.datasets.edits import EditOperation, Move, Relabel, Remove, ReweightClasses, apply_edits
from kai.datasets.versions import require_latest_version
from kai.db.tables import DatasetVersion, IssueType, Job, QualityIssue, QualityReport, Sample, Split
from kai.errors import Conflict, InvalidInput
from kai.jobs.records import submit_job
from kai.quality.jobs import QUALITY_JOB, AnalysisJobConfig
from kai.quality.reports import find_report, issues_of

logger = logging.getLogger(__name__)

_DUPLICATES = frozenset({IssueType.EXACT_DUPLICATE, IssueType.NEAR_DUPLICATE})
_LEAKAGE = frozenset({IssueType.EXACT_LEAKAGE, IssueType.NEAR_LEAKAGE, IssueType.GROUP_LEAKAGE})
_LABELS = frozenset({IssueType.LABEL_CONFLICT, IssueType.LABEL_ERROR})


class FixKind(enum.StrEnum):
    """The fixes a repair can apply."""

    DROP_DUPLICATES = "dropDuplicates"
    DROP_UNREADABLE = "dropUnreadable"
    APPLY_LABELS = "applyLabels"
    RESPLIT_LEAKAGE = "resplitLeakage"
    CAP_CLASSES = "capClasses"
    REWEIGHT_CLASSES = "reweightClasses"


@dataclass(frozen=True)
class Fix:
    """One fix; ``sample_ids`` go with applyLabels, ``max_per_class`` with capClasses."""

    kind: FixKind
    sample_ids: tuple[str, ...] = ()
    max_per_class: int | None = None


@dataclass(frozen=True)
class RepairOutcome:
    """The repaired version, its parent, and the queued analysis of it."""

    version: DatasetVersion
    parent: DatasetVersion
    job: Job
    applied: list[str]


@dataclass
class _Plan:
    relabel: dict[str, list[str]]
    move: dict[Split, list[str]]
    remove: set[str]
    reweight: bool = False

    def operations(self) -> list[EditOperation]:
        ops: list[EditOperation] = [
            Relabel(tuple(uids), label) for label, uids in sorted(self.relabel.items())
        ]
        for split, uids in sorted(self.move.items()):
            kept = tuple(uid for uid in uids if uid not in self.remove)
            if kept:
                ops.append(Move(kept, split))
        if self.remove:
            ops.append(Remove(tuple(sorted(self.remove))))
        if self.reweight:
            ops.append(ReweightClasses())
        return ops


def repair_dataset(
    session: Session,
    dataset_id: int,
    fixes: Sequence[Fix],
    *,
    created_by: int | None = None,
    message: str = "",
) -> RepairOutcome:
    """Apply the fixes to the latest version as a new version and queue its analysis.

    Raises:
        InvalidInput: No fixes, a bad cap, an unknown suggestion, or nothing to change.
        Conflict: The latest version has not been analysed yet.
    """
    if not fixes:
        raise InvalidInput("A repair needs at least one fix")
    parent = require_latest_version(session, dataset_id)
    report = find_report(session, parent.id)
    if report is None:
        raise Conflict(
            f"Version {parent.number} of dataset {dataset_id} has not been analysed; "
            "analyse it before repairing",
            details={"datasetId": dataset_id, "version": parent.number},
        )
    plan = _plan(session, report, parent, fixes)
    operations = plan.operations()
    if not operations:
        raise InvalidInput(
            "The chosen fixes change nothing in the latest version",
            details={"fixes": [fix.kind.value for fix in fixes]},
        )
    version = apply_edits(session, dataset_id, operations, message=message or _message(fixes))
    version.metadata_ = {
        **version.metadata_,
        "repair": {"reportId": report.id, "fixes": [fix.kind.value for fix in fixes]},
    }
    job = _queue(session, version, created_by)
    logger.info("Dataset repaired", extra={"dataset_id": dataset_id, "version": version.number})
    return RepairOutcome(version, parent, job, [fix.kind.value for fix in fixes])


def _plan(
    session: Session, report: QualityReport, parent: DatasetVersion, fixes: Sequence[Fix]
) -> _Plan:
    plan = _Plan(relabel=defaultdict(list), move=defaultdict(list), remove=set())
    for fix in fixes:
        match fix.kind:
            case FixKind.DROP_DUPLICATES:
                plan.remove |= {i.sample_uid for i in issues_of(session, report, _DUPLICATES)}
            case FixKind.DROP_UNREADABLE:
                unreadable = frozenset({IssueType.UNREADABLE})
                plan.remove |= {i.sample_uid for i in issues_of(session, report, unreadable)}
            case FixKind.APPLY_LABELS:
                _plan_labels(session, report, fix.sample_ids, plan)
            case FixKind.RESPLIT_LEAKAGE:
                for issue in issues_of(session, report, _LEAKAGE):
                    plan.move[Split(issue.evidence["homeSplit"])].append(issue.sample_uid)
            case FixKind.CAP_CLASSES:
                plan.remove |= _over_cap(session, report, parent, fix.max_per_class, plan.remove)
            case FixKind.REWEIGHT_CLASSES:
                plan.reweight = True
    return plan


def _plan_labels(
    session: Session, report: QualityReport, sample_ids: Sequence[str], plan: _Plan
) -> None:
    if not sample_ids:
        raise InvalidInput("applyLabels needs the sampleIds whose suggested labels you accept")
    suggested: dict[str, str] = {}
    for issue in issues_of(session, report, _LABELS):
        label = issue.evidence.get("suggestedLabel")
        if isinstance(label, str):
            suggested[issue.sample_uid] = label
    missing = [uid for uid in sample_ids if uid not in suggested]
    if missing:
        raise InvalidInput(
            f"The report suggests no label for samples {missing[:5]}",
            details={"missing": missing[:100]},
        )
    for uid in dict.fromkeys(sample_ids):
        plan.relabel[suggested[uid]].append(uid)


def _over_cap(
    session: Session,
    report: QualityReport,
    parent: DatasetVersion,
    max_per_class: int | None,
    removed: set[str],
) -> set[str]:
    """Training samples past the cap in each class, the ones with issues going first."""
    if max_per_class is None or max_per_class < 1:
        raise InvalidInput(f"capClasses needs a max of at least 1, not {max_per_class}")
    flagged = set(
        session.scalars(select(QualityIssue.sample_uid).where(QualityIssue.report_id == report.id))
    )
    query = select(Sample.uid, Sample.label).where(
        Sample.version_id == parent.id, Sample.split == Split.TRAIN
    )
    by_class: dict[str, list[str]] = defaultdict(list)
    for uid, label in session.execute(query.order_by(Sample.uid)):
        if uid not in removed:
            by_class[label].append(uid)
    dropped: set[str] = set()
    for uids in by_class.values():
        ordered = sorted(uids, key=lambda uid: (uid not in flagged, uid))
        dropped.update(ordered[: max(0, len(ordered) - max_per_class)])
    return dropped


def _queue(session: Session, version: DatasetVersion, created_by: int | None) -> Job:
    config = AnalysisJobConfig(dataset_id=version.dataset_id, version_id=version.id)
    return submit_job(
        session,
        job_type=QUALITY_JOB,
        config=config.model_dump(),
        idempotency_key=f"dataset-quality:version-{version.id}",
        created_by=created_by,
    )


def _message(fixes: Sequence[Fix]) -> str:
    return "Quality repair: " + ", ".join(dict.fromkeys(fix.kind.value for fix in fixes))
