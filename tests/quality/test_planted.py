"""The analysis finds exactly the planted flaws of a small dataset; repair fixes them."""

from __future__ import annotations

from typing import Any

import pytest
from quality_factories import PlantedSet, job_context
from sqlalchemy import select

from kai.config import Settings
from kai.datasets.versions import latest_version
from kai.db.engine import Database
from kai.db.tables import IssueSeverity, IssueType, Job, QualityIssue, Sample, Split
from kai.errors import Conflict
from kai.quality import Fix, FixKind, find_report, read_report, repair_dataset
from kai.quality.jobs import run_analysis
from kai.storage.blobs import LocalBlobStore

pytestmark = pytest.mark.db


def flagged_names(database: Database, dataset_id: int, *types: IssueType) -> set[str]:
    with database.session() as session:
        version = latest_version(session, dataset_id)
        assert version is not None
        report = find_report(session, version.id)
        assert report is not None
        names = dict(
            session.execute(
                select(Sample.uid, Sample.original_name).where(Sample.version_id == version.id)
            ).all()
        )
        query = select(QualityIssue.sample_uid).where(
            QualityIssue.report_id == report.id, QualityIssue.issue_type.in_(types)
        )
        return {names[uid] for uid in session.scalars(query)}


@pytest.mark.parametrize(
    ("types", "planted_kind"),
    [
        ((IssueType.BLURRY,), "blurry"),
        ((IssueType.TOO_DARK,), "too_dark"),
        ((IssueType.EXACT_LEAKAGE,), "exact_leakage"),
        ((IssueType.LABEL_CONFLICT,), "label_conflict"),
    ],
)
def test_each_check_finds_its_planted_images_and_nothing_else(
    database: Database,
    analysed: tuple[int, dict[str, Any]],
    planted: PlantedSet,
    types: tuple[IssueType, ...],
    planted_kind: str,
) -> None:
    dataset_id, _ = analysed
    assert flagged_names(database, dataset_id, *types) == planted.planted[planted_kind]


def test_duplicates_flag_one_copy_of_each_planted_pair(
    database: Database, analysed: tuple[int, dict[str, Any]], planted: PlantedSet
) -> None:
    dataset_id, _ = analysed
    exact = flagged_names(database, dataset_id, IssueType.EXACT_DUPLICATE)
    near = flagged_names(database, dataset_id, IssueType.NEAR_DUPLICATE)
    assert len(exact) == 2 and exact <= planted.planted["exact_copies"]
    assert len(near) == 1 and near <= planted.planted["near_copies"]


def test_report_scores_and_recommends_the_fixes(
    database: Database, analysed: tuple[int, dict[str, Any]]
) -> None:
    dataset_id, result = analysed
    with database.session() as session:
        version = latest_version(session, dataset_id)
        assert version is not None
        view = read_report(session, version)
        report = view.report
        assert 0 <= report.score < 100
        assert result["overallQualityScore"] == report.score
        assert report.needs_improvement is (report.score < 70)
        families = {row["family"]: row for row in report.score_breakdown["families"]}
        assert families["leakage"]["penalty"] > 0
        assert families["outliers"]["ran"] is True
        assert report.metrics["embeddings"]["ran"] is True
        penalties = sum(row["penalty"] for row in families.values() if row["ran"])
        assert report.score == pytest.approx(100 - penalties, abs=0.1)
        fixes = {item["action"]["fix"] for item in report.recommendations}
        assert {"dropDuplicates", "resplitLeakage"} <= fixes
        assert view.parent_score is None


def test_repair_makes_a_version_whose_report_shows_the_gain(
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    analysed: tuple[int, dict[str, Any]],
) -> None:
    dataset_id, _ = analysed
    fixes = [
        Fix(FixKind.RESPLIT_LEAKAGE),
        Fix(FixKind.DROP_DUPLICATES),
        Fix(FixKind.REWEIGHT_CLASSES),
    ]
    with database.session() as session:
        outcome = repair_dataset(session, dataset_id, fixes)
        job_id, version_number = outcome.job.id, outcome.version.number
        weights = outcome.version.metadata_["classWeights"]
    assert version_number == 2 and set(weights) == {"ceramic", "stone"}
    run_analysis(job_context(settings, database, blobs, job_id))
    with database.session() as session:
        version = latest_version(session, dataset_id)
        assert version is not None
        view = read_report(session, version)
        assert view.parent_number == 1
        assert view.score_change is not None and view.score_change > 0
        assert not {"exact_duplicate", "exact_leakage", "near_duplicate"} & set(
            view.report.issue_counts
        )
        splits = session.scalars(select(Sample.split).where(Sample.version_id == version.id))
        assert Split.TEST in set(splits)


def test_repair_refuses_a_version_never_analysed(
    database: Database, analysed: tuple[int, dict[str, Any]]
) -> None:
    dataset_id, _ = analysed
    with database.session() as session:
        repair_dataset(session, dataset_id, [Fix(FixKind.DROP_DUPLICATES)])
    with database.session() as session, pytest.raises(Conflict, match="not been analysed"):
        repair_dataset(session, dataset_id, [Fix(FixKind.DROP_DUPLICATES)])


def test_import_queues_the_analysis_after_itself(
    database: Database, analysed: tuple[int, dict[str, Any]]
) -> None:
    dataset_id, _ = analysed
    with database.session() as session:
        jobs = list(session.scalars(select(Job).order_by(Job.id)))
        import_job, quality_job = jobs
        assert quality_job.type == "dataset.quality"
        assert quality_job.depends_on == [import_job.id]
        assert quality_job.config["dataset_id"] == dataset_id


def test_accepted_label_error_suggestions_become_a_relabelled_version(
    database: Database, analysed: tuple[int, dict[str, Any]]
) -> None:
    dataset_id, _ = analysed
    with database.session() as session:
        version = latest_version(session, dataset_id)
        assert version is not None
        report = find_report(session, version.id)
        assert report is not None
        uid = session.scalar(
            select(Sample.uid).where(
                Sample.version_id == version.id, Sample.original_name == "train/stone/stone_3.png"
            )
        )
        assert uid is not None
        evidence = {"givenLabel": "stone", "suggestedLabel": "ceramic", "probability": 0.93}
        session.add(
            QualityIssue(
                report_id=report.id,
                sample_uid=uid,
                issue_type=IssueType.LABEL_ERROR,
                severity=IssueSeverity.MEDIUM,
                evidence=evidence,
            )
        )
    with database.session() as session:
        outcome = repair_dataset(session, dataset_id, [Fix(FixKind.APPLY_LABELS, (uid,))])
        assert outcome.version.number == 2 and outcome.applied == ["applyLabels"]
        new_id = outcome.version.id
    with database.session() as session:
        label = session.scalar(
            select(Sample.label).where(Sample.version_id == new_id, Sample.uid == uid)
        )
        assert label == "ceramic"
