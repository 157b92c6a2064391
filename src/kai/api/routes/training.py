"""Training: start a job that trains a model on a dataset, and read one.

The start route answers at once with the ``jobId``; progress and per-epoch
metrics follow on ``/ws/training`` and the job routes.
"""

from __future__ import annotations

from fastapi import APIRouter

from kai.api.dependencies import EditorUser, IdempotencyKey, RuntimeDep, SessionDep, ViewerUser
from kai.api.schemas.training import TrainingRead, TrainingStartCreate, TrainingStarted
from kai.errors import NotFound
from kai.jobs.records import get_job
from kai.training import TRAIN_JOB, start_training

router = APIRouter(prefix="/training", tags=["training"])


@router.post("/start", status_code=202)
def create_training(
    body: TrainingStartCreate,
    runtime: RuntimeDep,
    user: EditorUser,
    session: SessionDep,
    idempotency_key: IdempotencyKey,
) -> TrainingStarted:
    """Queue a training job; it waits for a model or dataset import that is still running."""
    job = start_training(
        session,
        body.job_config(),
        hyperparameter_search=body.enable_hyperparameter_tuning,
        created_by=user.id,
        idempotency_key=idempotency_key,
        max_attempts=runtime.settings.max_attempts,
    )
    started = TrainingStarted(job_id=job.id, waits_for=[int(i) for i in job.depends_on])
    session.commit()
    runtime.dispatcher.dispatch(started.job_id)
    return started


@router.get("/{job_id}")
def read_training(job_id: int, _user: ViewerUser, session: SessionDep) -> TrainingRead:
    """A training job's state, configuration and results."""
    job = get_job(session, job_id)
    if job.type != TRAIN_JOB:
        raise NotFound(f"Job {job_id} is a {job.type} job, not a training job")
    return TrainingRead(
        job_id=job.id,
        status=job.state.value,
        progress=job.progress,
        config=job.config,
        results=job.result,
        error=job.error,
    )
