"""Hyperparameter search: Optuna's TPE sampler and median pruner over short training runs.

A search is a ``training.run`` job whose config carries a
:class:`~kai.training.config.SearchConfig`. Each trial builds its run through
the job's :class:`~kai.training.runs.NetworkKind` (a PyTorch network, or a
Keras model loaded afresh) and trains the plan with
the hyperparameters TPE suggests, reports its validation accuracy after
every epoch (the pruner stops trials that trail the median) and appears as
``trial`` events. The study lives in Kai's own database through Optuna's
RDB storage under the name ``kai-training-<job id>-<job creation time>``
(a database restored or rebuilt may give a new job an old one's id), so an
attempt retried on any worker continues it, and the trial count is over every finished
trial the study holds, whichever process ran it. The best trial's weights
are kept beside the job's checkpoint as trials finish and become the job's
model version; its epochs are sent as ``metrics`` events once, at the end.

With ``parallelTrials`` above one the search job queues ``training.trials``
jobs that any free worker claims. Each runs trials on the same study (its
own sampler seed, so their first random trials differ) and appears with its
own ``trial`` events; a trial that beats the study's best stores its weights
as a blob named in the trial's attributes, so the search job can take the
best trial whichever machine ran it. Every trial records the job that ran
it, so a retried attempt fails only its own unfinished trials. When the
study has its trials, the search job cancels trial jobs no worker claimed
and waits for running ones to end their trial.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.samplers import TPESampler
from optuna.storages import RDBStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import BaseTrial, FixedTrial, FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from kai.db.tables import DatasetVersion, Job, JobState
from kai.errors import InvalidInput, TrainingDiverged
from kai.jobs.context import JobContext
from kai.jobs.dispatch import create_dispatcher
from kai.jobs.records import request_cancel, submit_job
from kai.models import get_version as get_model_version
from kai.training import checkpoints, runs
from kai.training.config import AugmentationPreset, SearchConfig, TrainingConfig, TrainingJobConfig
from kai.training.runs import EPOCHS_END, Plan, RunState
from kai.training.starts import TRIALS_JOB

logger = logging.getLogger(__name__)

BEST_TRIAL_NAME = "best-trial.pt"
BATCH_SIZES = (8, 16, 32, 64)
LEARNING_RATES = (1e-5, 1e-2)
WEIGHT_DECAYS = (1e-6, 1e-1)
LABEL_SMOOTHING_MAX = 0.2
AUGMENTATIONS = tuple(preset.value for preset in AugmentationPreset)
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
# Trial attributes: the job that ran the trial, and the blob holding its weights.
JOB_ATTR = "jobId"
WEIGHTS_ATTR = "weightsBlob"
_WAIT_SECONDS = 1.0


class TrialJobConfig(BaseModel):
    """The stored configuration of a ``training.trials`` job.

    Attributes:
        search_job_id: The search job whose study the trials join.
        study: The study's name.
        job: The search job's config, its model and dataset versions pinned.
    """

    model_config = ConfigDict(extra="forbid")

    search_job_id: int
    study: str
    job: TrainingJobConfig


Keeper = Callable[[optuna.Trial, float, RunState], None]


@dataclass(frozen=True)
class BestTrial:
    """The best finished trial so far, as kept on disk.

    Attributes:
        number: The trial's number in the study.
        value: Its best validation accuracy.
        params: The hyperparameters it tried.
        history: Its epochs' metrics.
        best_epoch: The epoch whose weights it kept.
        network: Those weights.
    """

    number: int
    value: float
    params: dict[str, Any]
    history: list[dict[str, Any]]
    best_epoch: int
    network: dict[str, torch.Tensor]


def run_search(ctx: JobContext, kind: runs.NetworkKind = runs.TORCH_NETWORKS) -> dict[str, Any]:
    """Search the hyperparameters, then write the best trial's network as the new version."""
    job_config, config, folder = runs.prepare(ctx)
    config = kind.adapt(config)
    search = config.search
    assert search is not None, "run_search needs a search config"
    plan = runs.resolve_plan(ctx, job_config, folder)
    storage = create_storage(ctx.settings.resolved_database_url)
    try:
        study = open_study(ctx, config, search, storage)
        helpers = start_trial_jobs(ctx, job_config, plan, search, study.study_name)
        try:
            objective = _Objective(ctx, plan, config, search, folder, kind=kind)
            _optimize(ctx, study, objective, search)
            end_trial_jobs(ctx, helpers)
        except BaseException:
            _cancel_jobs(ctx, helpers)
            raise
        best = best_trial_of(ctx, folder, study)
        if best is None:
            raise InvalidInput(
                "No search trial finished: every trial was pruned, diverged or ran out of "
                "time; raise the time budget or the trial count, or start from a lower "
                "learning rate"
            )
        return _finish(ctx, plan, config, folder, best, study, kind)
    finally:
        # Optuna keeps its own engine; its connections must not outlive the search.
        storage.engine.dispose()


def run_trials(ctx: JobContext, kind: runs.NetworkKind = runs.TORCH_NETWORKS) -> dict[str, Any]:
    """Run trials of a search job's study beside it, until the study has its trials."""
    trial_job = TrialJobConfig.model_validate(ctx.config)
    job_config = trial_job.job
    # The training code reads the run's config from the context, as in the search job.
    ctx.config = job_config.model_dump(mode="json")
    config = kind.adapt(job_config.training)
    search = _search_of(config)
    folder = checkpoints.checkpoint_dir(ctx.settings.resolved_data_dir, ctx.job_id)
    storage = create_storage(ctx.settings.resolved_database_url)
    try:
        if not _running(ctx, trial_job.search_job_id):
            ctx.log(f"Search job {trial_job.search_job_id} is no longer running; no trials")
            return {"searchJobId": trial_job.search_job_id, "trials": {}}
        plan = runs.resolve_plan(ctx, job_config, folder)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(
            study_name=trial_job.study,
            storage=storage,
            # Its own seed, so its random start explores other points than the search job's.
            sampler=TPESampler(
                seed=config.seed + ctx.job_id, n_startup_trials=search.startup_trials
            ),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials),
        )
        _fail_unfinished(ctx, study)
        keep = _keep_as_blob(ctx)
        objective = _Objective(ctx, plan, config, search, folder, kind=kind, keep=keep)
        _optimize(ctx, study, objective, search, search_job_id=trial_job.search_job_id)
        own = [
            t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(JOB_ATTR) == ctx.job_id
        ]
        return {"searchJobId": trial_job.search_job_id, "trials": _count_states(own)}
    finally:
        storage.engine.dispose()
        checkpoints.remove_checkpoints(folder)


def _optimize(
    ctx: JobContext,
    study: optuna.Study,
    objective: Any,
    search: SearchConfig,
    *,
    search_job_id: int | None = None,
) -> None:
    ctx.log(f"Hyperparameter search: {search.trials} trials, study {study.study_name}")
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [
        MaxTrialsCallback(search.trials, states=_COUNTED)
    ]
    if search_job_id is not None:
        callbacks.append(_stop_when_ended(ctx, search_job_id))
    if _counted(study) < search.trials:
        study.optimize(objective, timeout=search.time_budget_seconds, callbacks=callbacks)


def start_trial_jobs(
    ctx: JobContext, job_config: TrainingJobConfig, plan: Plan, search: SearchConfig, study: str
) -> list[int]:
    """Queue the trial jobs that run beside this one (the same ones on a retry); their ids."""
    if search.parallel_trials < 2:
        return []
    with ctx.db.session() as session:
        model_version = get_model_version(session, plan.model_version_id).number
        dataset_version = session.get(DatasetVersion, plan.dataset_version_id)
        assert dataset_version is not None, "the plan's dataset version is pinned"
        pinned = job_config.model_copy(
            update={"model_version": model_version, "dataset_version": dataset_version.number}
        )
        config = TrialJobConfig(search_job_id=ctx.job_id, study=study, job=pinned)
        jobs = [
            submit_job(
                session,
                job_type=TRIALS_JOB,
                config=config.model_dump(mode="json"),
                idempotency_key=f"training-trials:{study}:{index}",
                max_attempts=1,
            )
            for index in range(1, search.parallel_trials)
        ]
        ids = [job.id for job in jobs]
    dispatcher = create_dispatcher(ctx.settings)
    for job_id in ids:
        dispatcher.dispatch(job_id)
    ctx.log(f"Trial jobs {', '.join(map(str, ids))} run trials of this search beside it")
    return ids


def end_trial_jobs(ctx: JobContext, job_ids: list[int]) -> None:
    """Cancel the trial jobs no worker claimed; wait for running ones to end their trial."""
    while _cancel_jobs(ctx, job_ids, running_too=False):
        ctx.check_cancelled()
        time.sleep(_WAIT_SECONDS)


def _cancel_jobs(ctx: JobContext, job_ids: list[int], *, running_too: bool = True) -> list[int]:
    """Cancel the queued trial jobs, and the running ones too if asked; those left running."""
    running = []
    with ctx.db.session() as session:
        states = session.execute(select(Job.id, Job.state).where(Job.id.in_(job_ids))).all()
        for job_id, state in states:
            if state is JobState.QUEUED or (running_too and state is JobState.RUNNING):
                request_cancel(session, job_id)
            elif state is JobState.RUNNING:
                running.append(job_id)
    return running


def _running(ctx: JobContext, job_id: int) -> bool:
    with ctx.db.session() as session:
        return session.scalar(select(Job.state).where(Job.id == job_id)) is JobState.RUNNING


def _stop_when_ended(
    ctx: JobContext, search_job_id: int
) -> Callable[[optuna.Study, FrozenTrial], None]:
    def stop(study: optuna.Study, trial: FrozenTrial) -> None:
        del trial
        if not _running(ctx, search_job_id):
            study.stop()

    return stop


def study_name(ctx: JobContext) -> str:
    """The job's study: its id and creation time, the same for every attempt."""
    with ctx.db.session() as session:
        created = session.scalar(select(Job.created_at).where(Job.id == ctx.job_id))
    stamp = created.strftime("%Y%m%dT%H%M%S%f") if created is not None else "unknown"
    return f"kai-training-{ctx.job_id}-{stamp}"


def open_study(
    ctx: JobContext, config: TrainingConfig, search: SearchConfig, storage: RDBStorage
) -> optuna.Study:
    """The job's study in Kai's database, with trials a dead attempt left running failed."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name(ctx),
        storage=storage,
        sampler=TPESampler(seed=config.seed, n_startup_trials=search.startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials),
        direction="maximize",
        load_if_exists=True,
    )
    _fail_unfinished(ctx, study)
    return study


def _fail_unfinished(ctx: JobContext, study: optuna.Study) -> None:
    """Fail the trials an earlier attempt of this job left running (trial jobs run others)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(JOB_ATTR, ctx.job_id) == ctx.job_id:
            study.tell(trial.number, state=TrialState.FAIL)


def create_storage(database_url: str) -> RDBStorage:
    """Optuna's storage in Kai's database; its tables sit beside Kai's own.

    Kai's Alembic history owns the database's version table, so Optuna's schema
    check, which would read Kai's revision as its own, is skipped: the tables
    Optuna creates are those of the pinned Optuna release.
    """
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if database_url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 30}
    return RDBStorage(database_url, engine_kwargs=engine_kwargs, skip_compatibility_check=True)


def suggest_config(
    trial: BaseTrial, config: TrainingConfig, search: SearchConfig, plan: Plan
) -> TrainingConfig:
    """The run's config with the hyperparameters the trial suggests."""
    changes: dict[str, Any] = {"search": None}
    if search.epochs_per_trial is not None:
        changes["epochs"] = search.epochs_per_trial
    if search.tune_learning_rate:
        changes["learning_rate"] = trial.suggest_float("learning_rate", *LEARNING_RATES, log=True)
    if search.tune_weight_decay:
        changes["weight_decay"] = trial.suggest_float("weight_decay", *WEIGHT_DECAYS, log=True)
    if search.tune_batch_size:
        sizes = fitting_batch_sizes(len(plan.samples.train))
        changes["batch_size"] = trial.suggest_categorical("batch_size", sizes)
    if search.tune_trainable_layers:
        groups = max(1, len(plan.layer_groups) or 1)
        changes["trainable_layers_count"] = trial.suggest_int("trainable_layers", 1, groups)
        changes["freeze_base_model"] = True
    if search.tune_augmentation:
        preset = trial.suggest_categorical("augmentation", AUGMENTATIONS)
        changes["augmentation"] = AugmentationPreset(preset)
        changes["enable_data_augmentation"] = True
    if search.tune_label_smoothing:
        changes["label_smoothing"] = trial.suggest_float(
            "label_smoothing", 0.0, LABEL_SMOOTHING_MAX
        )
    return config.model_copy(update=changes)


def fitting_batch_sizes(train_count: int) -> list[int]:
    """The batch sizes to try: those no larger than the training split, at least one."""
    sizes = [size for size in BATCH_SIZES if size <= train_count]
    return sizes or [max(1, train_count)]


class _Objective:
    """One trial: train with the suggested config and answer the best validation accuracy."""

    def __init__(
        self,
        ctx: JobContext,
        plan: Plan,
        config: TrainingConfig,
        search: SearchConfig,
        folder: Path,
        *,
        kind: runs.NetworkKind,
        keep: Keeper | None = None,
    ) -> None:
        self.ctx, self.plan, self.config = ctx, plan, config
        self.search, self.folder, self.kind = search, folder, kind
        self.keep = keep or self._keep_if_best
        self.started = time.monotonic()

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(JOB_ATTR, self.ctx.job_id)
        trial_config = suggest_config(trial, self.config, self.search, self.plan)
        torch.manual_seed(self.config.seed + trial.number)
        state = self.kind.create_state(self.ctx, self.plan, trial_config)
        state.progress_span = self._span(trial.number)
        self._emit(trial, "running", params=trial.params)
        try:
            runs.train_epochs(self.ctx, trial_config, state, self._reporter(trial), self.plan)
        except optuna.TrialPruned:
            self._emit(trial, "pruned", epochs=len(state.history))
            raise
        except TrainingDiverged as exc:
            # A diverging trial says the learning rate is too high, which TPE should learn.
            self._emit(trial, "diverged", error=exc.message)
            raise optuna.TrialPruned(exc.message) from exc
        value = best_accuracy(state)
        self.keep(trial, value, state)
        self._emit(trial, "complete", value=value, epochs=len(state.history))
        return value

    def _span(self, number: int) -> tuple[float, float]:
        share = EPOCHS_END / self.search.trials
        position = min(number, self.search.trials - 1)
        return (position * share, (position + 1) * share)

    def _reporter(self, trial: optuna.Trial) -> runs.EpochSink:
        def report(state: RunState, entry: dict[str, Any]) -> None:
            accuracy = float(entry["metrics"]["valAccuracy"])
            trial.report(accuracy, int(entry["epoch"]))
            self._emit(trial, "epoch", epoch=entry["epoch"], metrics=entry["metrics"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"trial {trial.number} trailed the median")

        return report

    def _emit(self, trial: optuna.Trial, status: str, **fields: Any) -> None:
        self.ctx.emit("trial", {"trial": trial.number, "status": status, **fields})

    def _keep_if_best(self, trial: optuna.Trial, value: float, state: RunState) -> None:
        best = load_best_trial(self.folder)
        if best is not None and best.value >= value:
            return
        save_best_trial(self.folder, _best_of(trial, value, state))


def _keep_as_blob(ctx: JobContext) -> Keeper:
    """Store a trial's weights as a blob, named in its attributes, when it beats the study."""

    def keep(trial: optuna.Trial, value: float, state: RunState) -> None:
        finished = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if any(other.value is not None and other.value >= value for other in finished):
            return
        record = _best_of(trial, value, state)
        path = ctx.work_dir / f"trial-{trial.number}.pt"
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        torch.save(record.__dict__, path)
        trial.set_user_attr(WEIGHTS_ATTR, ctx.blobs.put_file(path))
        path.unlink()

    return keep


def _best_of(trial: optuna.Trial, value: float, state: RunState) -> BestTrial:
    return BestTrial(
        number=trial.number,
        value=value,
        params=dict(trial.params),
        history=state.history,
        best_epoch=state.best_epoch,
        network=state.best_network,
    )


def best_trial_of(ctx: JobContext, folder: Path, study: optuna.Study) -> BestTrial | None:
    """The best finished trial, kept by this job or by a trial job, with its weights."""
    kept = load_best_trial(folder)
    stored = [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if WEIGHTS_ATTR in trial.user_attrs and trial.value is not None
    ]
    elsewhere = max(stored, key=lambda t: (t.value, -t.number), default=None)
    if elsewhere is None or elsewhere.value is None:
        return kept
    if kept is not None and kept.value >= elsewhere.value:
        return kept
    data = ctx.blobs.read_bytes(str(elsewhere.user_attrs[WEIGHTS_ATTR]))
    return BestTrial(**torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))


def best_accuracy(state: RunState) -> float:
    """The validation accuracy of the epoch whose weights the run keeps."""
    for entry in state.history:
        if entry["epoch"] == state.best_epoch:
            value = float(entry["metrics"]["valAccuracy"])
            return value if math.isfinite(value) else 0.0
    return 0.0


def save_best_trial(folder: Path, best: BestTrial) -> None:
    """Keep the best trial's weights and record beside the checkpoint, replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (BEST_TRIAL_NAME + ".partial")
    torch.save(best.__dict__, partial)
    partial.replace(folder / BEST_TRIAL_NAME)


def load_best_trial(folder: Path) -> BestTrial | None:
    """The best trial kept so far, or None before any trial finished."""
    path = folder / BEST_TRIAL_NAME
    if not path.exists():
        return None
    return BestTrial(**torch.load(path, map_location="cpu", weights_only=True))


def _finish(
    ctx: JobContext,
    plan: Plan,
    config: TrainingConfig,
    folder: Path,
    best: BestTrial,
    study: optuna.Study,
    kind: runs.NetworkKind,
) -> dict[str, Any]:
    replay = FixedTrial(best.params, best.number)
    trial_config = suggest_config(replay, config, _search_of(config), plan)
    torch.manual_seed(config.seed + best.number)
    state = kind.create_state(ctx, plan, trial_config)
    state.network.load_state_dict(best.network)
    state.history, state.best_epoch = list(best.history), best.best_epoch
    for entry in state.history:
        ctx.emit("metrics", entry)
    ctx.log(f"Best trial {best.number}: validation accuracy {best.value:.4f} with {best.params}")
    summary = {
        "bestTrial": best.number,
        "bestValue": best.value,
        "bestParams": best.params,
        "trials": _trial_counts(study),
        "study": study.study_name,
    }
    return kind.finish(ctx, plan, trial_config, state, folder, {"search": summary})


def _search_of(config: TrainingConfig) -> SearchConfig:
    assert config.search is not None
    return config.search


def _counted(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=_COUNTED))


def _trial_counts(study: optuna.Study) -> dict[str, int]:
    return _count_states(study.get_trials(deepcopy=False))


def _count_states(trials: list[FrozenTrial]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts
