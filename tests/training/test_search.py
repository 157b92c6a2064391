"""Hyperparameter search: Optuna trials as job events, the study in Kai's database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from sqlalchemy import select
from training_factories import (
    context,
    dataset_zip,
    events,
    import_dataset,
    import_model,
    mark_succeeded,
    queue_training,
    read_job,
    run_all,
    tiny_weights,
)

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Job, JobState, ModelVersion
from kai.jobs.environment import JobEnvironment
from kai.jobs.leases import claim_job, new_lease_owner
from kai.jobs.runner import run_claimed_job
from kai.storage.blobs import LocalBlobStore
from kai.training import SearchConfig
from kai.training.jobs import run_training_job
from kai.training.search import create_storage, fitting_batch_sizes, run_trials
from kai.training.starts import TRIALS_JOB

pytestmark = [pytest.mark.db, pytest.mark.slow]

CLASSES = {"ceramic": 4, "stone": 4, "wood": 4}


def test_a_search_runs_its_trials_and_keeps_the_best_trials_model(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))
    search = SearchConfig(trials=3, startup_trials=1, tune_trainable_layers=False)
    job_id = queue_training(database, model_id, dataset_id, epochs=2, search=search)

    run_all(env)

    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    trials = [e.payload for e in events(database, job_id, "trial")]
    assert {t["trial"] for t in trials} == {0, 1, 2}
    assert {t["status"] for t in trials} <= {"running", "epoch", "complete", "pruned", "diverged"}
    assert any(t["status"] == "epoch" and t["epoch"] == 1 for t in trials)

    results = job.result or {}
    storage = create_storage(settings.resolved_database_url)
    study = optuna.load_study(study_name=results["search"]["study"], storage=storage)
    finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert finished and all(trial.intermediate_values for trial in study.trials)
    assert results["search"]["bestTrial"] == study.best_trial.number
    assert results["search"]["bestValue"] == pytest.approx(study.best_value)
    assert [e.payload["epoch"] for e in events(database, job_id, "metrics")] == [1, 2]
    params = study.best_trial.params
    assert results["search"]["bestParams"] == params
    with database.session() as session:
        version = session.get(ModelVersion, results["modelVersionId"])
        assert version is not None
        trained_with = version.inspection["details"]["trainingConfig"]
    # The new version records the best trial's hyperparameters, not the defaults.
    assert trained_with["learning_rate"] == pytest.approx(params["learning_rate"])
    assert trained_with["batch_size"] == params["batch_size"]
    assert trained_with["augmentation"] == params["augmentation"]
    assert trained_with["search"] is None
    storage.engine.dispose()


def test_batch_sizes_to_try_fit_the_training_split() -> None:
    assert fitting_batch_sizes(20) == [8, 16]
    assert fitting_batch_sizes(5) == [5]


class Killed(BaseException):
    """Stands in for the process dying: no handler catches it."""


def test_a_retried_search_continues_the_study_in_the_database(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))
    search = SearchConfig(trials=2, startup_trials=2, tune_trainable_layers=False)
    job_id = queue_training(database, model_id, dataset_id, epochs=1, search=search)
    first = context(settings, database, blobs, job_id)
    emit = first.emit

    def emit_then_die(event_type: str, payload: dict[str, Any]) -> int:
        seq = emit(event_type, payload)
        if event_type == "trial" and (payload["trial"], payload["status"]) == (1, "running"):
            raise Killed
        return seq

    first.emit = emit_then_die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        run_training_job(first)

    results = run_training_job(context(settings, database, blobs, job_id, attempt=2))

    storage = create_storage(settings.resolved_database_url)
    study = optuna.load_study(study_name=results["search"]["study"], storage=storage)
    states = [trial.state for trial in study.trials]
    storage.engine.dispose()
    # Trial 0 finished before the kill and is kept; the killed trial 1 is failed, not rerun.
    assert states[0] is optuna.trial.TrialState.COMPLETE
    assert states[1] is optuna.trial.TrialState.FAIL
    assert states[2:] == [optuna.trial.TrialState.COMPLETE]
    assert results["search"]["trials"] == {"complete": 2, "fail": 1}


def trial_jobs(database: Database, search_job_id: int) -> list[Job]:
    with database.session() as session:
        found = session.scalars(select(Job).where(Job.type == TRIALS_JOB).order_by(Job.id))
        return [job for job in found if job.config["search_job_id"] == search_job_id]


def test_a_trial_job_runs_trials_beside_the_search_and_its_best_trial_becomes_the_version(
    tmp_path: Path, settings: Settings, database: Database, blobs: LocalBlobStore
) -> None:
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))
    search = SearchConfig(
        trials=3, startup_trials=3, parallel_trials=2, tune_trainable_layers=False
    )
    job_id = queue_training(database, model_id, dataset_id, epochs=1, search=search)
    claim = claim_job(database, owner=new_lease_owner(), lease_seconds=30, job_id=job_id)
    assert claim is not None
    search_ctx = context(settings, database, blobs, job_id)
    emit = search_ctx.emit
    helper_results: list[dict[str, Any]] = []

    def emit_and_let_the_trial_job_run(event_type: str, payload: dict[str, Any]) -> int:
        seq = emit(event_type, payload)
        if event_type == "log" and payload["message"].startswith("Trial jobs"):
            # Another worker claims the trial job now and runs every trial of the study
            # before the search job starts its own.
            [helper] = trial_jobs(database, job_id)
            assert claim_job(database, owner="other", lease_seconds=30, job_id=helper.id)
            helper_results.append(run_trials(context(settings, database, blobs, helper.id)))
            mark_succeeded(database, helper.id)
        return seq

    search_ctx.emit = emit_and_let_the_trial_job_run  # type: ignore[method-assign]
    results = run_training_job(search_ctx)

    [helper] = trial_jobs(database, job_id)
    storage = create_storage(settings.resolved_database_url)
    study = optuna.load_study(study_name=results["search"]["study"], storage=storage)
    trials, best = study.trials, study.best_trial
    storage.engine.dispose()
    assert {trial.user_attrs["jobId"] for trial in trials} == {helper.id}
    assert helper_results == [{"searchJobId": job_id, "trials": results["search"]["trials"]}]
    assert {e.payload["trial"] for e in events(database, helper.id, "trial")} == {0, 1, 2}
    assert events(database, job_id, "trial") == []
    # The search job took the trial job's best trial, weights and all, from the blob store.
    assert results["search"]["bestTrial"] == best.number
    assert results["search"]["bestParams"] == best.params
    assert blobs.exists(best.user_attrs["weightsBlob"])
    with database.session() as session:
        version = session.get(ModelVersion, results["modelVersionId"])
        assert version is not None
        assert version.inspection["details"]["trainingConfig"]["learning_rate"] == pytest.approx(
            best.params["learning_rate"]
        )


def test_a_search_on_one_worker_cancels_the_trial_jobs_nobody_claimed(
    tmp_path: Path,
    settings: Settings,
    database: Database,
    blobs: LocalBlobStore,
    env: JobEnvironment,
) -> None:
    dataset_id = import_dataset(settings, database, blobs, dataset_zip(tmp_path / "d.zip", CLASSES))
    model_id = import_model(settings, database, blobs, tiny_weights(tmp_path / "w.safetensors"))
    search = SearchConfig(
        trials=2, startup_trials=2, parallel_trials=3, tune_trainable_layers=False
    )
    job_id = queue_training(database, model_id, dataset_id, epochs=1, search=search)

    # One worker: it runs the search job, which has every trial to itself.
    claim = claim_job(env.db, owner=new_lease_owner(), lease_seconds=30, job_id=job_id)
    assert claim is not None
    run_claimed_job(env, claim)

    job = read_job(database, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    helpers = trial_jobs(database, job_id)
    assert len(helpers) == 2
    assert all(helper.state is JobState.CANCELLED for helper in helpers)
    assert (job.result or {})["search"]["trials"] == {"complete": 2}
