"""k-fold cross-validation: folds stratified and grouped, metrics as mean and spread."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_factories import (
    dataset_zip,
    events,
    import_dataset,
    import_model,
    queue_training,
    read_job,
    run_all,
    tiny_weights,
)

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import JobState
from kai.jobs.environment import JobEnvironment
from kai.storage.blobs import LocalBlobStore
from kai.training.folds import assign_folds, summarise
from kai.training.samples import TrainingSample, stratified_subset


def samples(per_class: int, classes: int = 2) -> list[TrainingSample]:
    return [
        TrainingSample(f"{c}-{i}", "0" * 64, c) for c in range(classes) for i in range(per_class)
    ]


def test_folds_are_stratified_and_a_group_never_straddles_two() -> None:
    pool = samples(6)
    groups: dict[str, str | None] = {s.uid: f"g{s.target}-{int(s.uid[2:]) // 2}" for s in pool}

    folds = assign_folds(pool, groups, 3, seed=1)

    for fold in (1, 2, 3):
        members = [s for s in pool if folds[s.uid] == fold]
        assert sorted(s.target for s in members) == [0, 0, 1, 1]
    for group in set(groups.values()):
        assert len({folds[uid] for uid, g in groups.items() if g == group}) == 1
    assert folds == assign_folds(pool, groups, 3, seed=1)


def test_the_summary_gives_the_mean_and_the_spread_over_folds() -> None:
    results = [{"metrics": {"valAccuracy": value, "valLoss": 1.0}} for value in (0.5, 0.7, 0.9)]
    summary = summarise(results)
    assert summary["mean"]["valAccuracy"] == pytest.approx(0.7)
    assert summary["spread"]["valAccuracy"] == {"std": pytest.approx(0.2), "min": 0.5, "max": 0.9}
    assert summary["spread"]["valLoss"]["std"] == 0.0


def test_a_quick_trial_subset_keeps_every_class() -> None:
    subset = stratified_subset(samples(10, classes=3), 2, seed=0)
    assert sorted(s.target for s in subset) == [0, 0, 1, 1, 2, 2]


@pytest.mark.db
@pytest.mark.slow
def test_cross_validation_trains_every_fold_and_reports_mean_and_spread(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    classes = {"ceramic": 4, "stone": 4}
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", classes))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))
    job_id = queue_training(
        database, model_id, dataset_id, epochs=1, batch_size=2, cross_validation_folds=2
    )

    run_all(env)

    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    summary = (job.result or {})["crossValidation"]
    assert [fold["fold"] for fold in summary["folds"]] == [1, 2]
    assert all(fold["images"] == {"train": 4, "val": 4} for fold in summary["folds"])
    accuracies = [fold["metrics"]["valAccuracy"] for fold in summary["folds"]]
    assert summary["mean"]["valAccuracy"] == pytest.approx(sum(accuracies) / 2, abs=1e-6)
    assert "std" in summary["spread"]["valAccuracy"]
    assert [e.payload["fold"] for e in events(database, job_id, "fold")] == [1, 1]
    assert [e.payload["epoch"] for e in events(database, job_id, "metrics")] == [1]
