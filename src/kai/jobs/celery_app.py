"""Celery transport for the distributed setup: "job N is ready" over Redis or RabbitMQ.

The broker carries only job ids. A worker that receives one claims the job's
lease in the database before it runs anything, so a redelivered or duplicate
message finds the job taken and is dropped. Messages are acknowledged late
and prefetched one at a time, so a worker that dies mid-job leaves its message
to another; the reconciler requeues the job once its lease expires.

Tasks run on Celery's thread pool: each thread only watches the job's own
child process, which does the work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import Celery, signals
from kombu.exceptions import OperationalError

from kai.config import Settings
from kai.jobs.environment import JobEnvironment, create_job_environment
from kai.jobs.leases import claim_job, new_lease_owner
from kai.jobs.reconciler import maintain_until
from kai.jobs.registry import JobRegistry
from kai.jobs.runner import run_claimed_job, start_job_process_server

__all__ = ["QUEUE_NAME", "TASK_NAME", "CeleryDispatcher", "create_celery_app", "run_celery_worker"]

logger = logging.getLogger(__name__)

TASK_NAME = "kai.run_job"
QUEUE_NAME = "kai"
PUBLISH_RETRIES = 2


def create_celery_app(settings: Settings) -> Any:
    """A Celery app on ``settings.broker_url`` configured for Kai's job messages.

    Raises:
        ValueError: No broker URL is configured.
    """
    if not settings.broker_url:
        raise ValueError("KAI_BROKER_URL is not set; the Celery setup needs a broker")
    app = Celery("kai", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=QUEUE_NAME,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
    )
    return app


class CeleryDispatcher:
    """Sends task ``kai.run_job(job_id)`` for each queued job.

    A failed publish is logged and not raised: the job is safely queued in the
    database, and the workers' reconciler re-sends messages for jobs left waiting.
    """

    def __init__(self, app: Any) -> None:
        self._app = app

    def dispatch(self, job_id: int) -> None:
        try:
            self._app.send_task(
                TASK_NAME,
                args=[job_id],
                queue=QUEUE_NAME,
                retry_policy={"max_retries": PUBLISH_RETRIES},
            )
        except OperationalError as exc:
            logger.warning(
                "Could not send the job to the broker: %s", exc, extra={"job_id": job_id}
            )


def run_celery_worker(settings: Settings, registry: JobRegistry, *, concurrency: int = 1) -> None:
    """Run a Celery worker for Kai's jobs until it is told to stop (SIGTERM or SIGINT).

    Besides running jobs, the worker runs the reconciler every few seconds. On a
    warm shutdown it terminates its running jobs and queues them again.

    Args:
        settings: Kai's settings; ``broker_url`` must be set.
        registry: The job kinds this worker runs.
        concurrency: How many jobs may run at once.
    """
    app = create_celery_app(settings)
    env = create_job_environment(settings, registry, dispatcher=CeleryDispatcher(app))
    stop = threading.Event()
    app.task(name=TASK_NAME, acks_late=True, ignore_result=True)(_job_task(env, stop))

    def on_shutdown(**_: Any) -> None:
        stop.set()

    signals.worker_shutting_down.connect(on_shutdown, weak=False)
    start_job_process_server()
    maintenance = threading.Thread(
        target=maintain_until, args=(env, stop), name="kai-reconciler", daemon=True
    )
    maintenance.start()
    try:
        _start_worker(app, concurrency)
    finally:
        stop.set()
        signals.worker_shutting_down.disconnect(on_shutdown)
        maintenance.join()
        env.close()


def _start_worker(app: Any, concurrency: int) -> None:
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    worker = app.Worker(
        hostname=f"kai-{os.getpid()}@{socket.gethostname()}",
        pool="threads",
        concurrency=concurrency,
        loglevel=level,
        quiet=True,
        without_gossip=True,
        without_mingle=True,
        queues=[QUEUE_NAME],
    )
    logger.info("Celery worker starting", extra={"concurrency": concurrency})
    worker.start()


def _job_task(env: JobEnvironment, stop: threading.Event) -> Any:
    def run_job(job_id: int) -> None:
        """Claim job ``job_id`` and run it; a job already taken is left alone."""
        claim = claim_job(
            env.db,
            owner=new_lease_owner(),
            lease_seconds=env.settings.lease_seconds,
            job_id=job_id,
            announcer=env.announcer,
        )
        if claim is None:
            logger.info("Job is not claimable; message dropped", extra={"job_id": job_id})
            return
        run_claimed_job(env, claim, stop=stop)

    return run_job
