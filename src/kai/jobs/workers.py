"""Local workers: processes started by ``kai serve`` that claim jobs from the database.

Each worker process polls for a claimable job every ``poll_seconds``, runs
it in a child process (see :mod:`kai.jobs.runner`), and between jobs runs the
reconciler and pending failure hooks. Stopping the pool terminates running
jobs and queues them again, so none is left "running" under a dead worker.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType

from sqlalchemy.exc import SQLAlchemyError

from kai.config import Settings
from kai.db.engine import Database
from kai.jobs.environment import JobEnvironment, create_job_environment
from kai.jobs.leases import claim_job, new_lease_owner, release_leases_of
from kai.jobs.reconciler import maintain_until
from kai.jobs.registry import JobRegistry
from kai.jobs.runner import run_claimed_job, start_job_process_server
from kai.logs import configure_logging

__all__ = ["LocalWorkerPool"]

logger = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 30.0


class LocalWorkerPool:
    """Worker processes on this machine, for the embedded setup.

    Args:
        settings: Kai's settings; ``poll_seconds``, ``lease_seconds`` and
            ``heartbeat_seconds`` pace the workers.
        registry: The job kinds; pickled into each worker by reference.
        num_workers: How many jobs may run at once.
    """

    def __init__(self, settings: Settings, registry: JobRegistry, *, num_workers: int) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, not {num_workers}")
        self._settings = settings
        self._registry = registry
        self._num_workers = num_workers
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._processes: list[BaseProcess] = []

    @property
    def is_running(self) -> bool:
        """Whether the pool has been started and not stopped."""
        return bool(self._processes)

    def start(self) -> None:
        """Start the worker processes."""
        if self._processes:
            raise RuntimeError("The worker pool is already running")
        self._stop.clear()
        log_level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        for index in range(self._num_workers):
            process = self._context.Process(
                target=_worker_main,
                args=(self._settings, self._registry, self._stop, os.getpid(), log_level),
                name=f"kai-worker-{index}",
            )
            process.start()
            self._processes.append(process)
        atexit.register(self.stop)
        logger.info("Local workers started", extra={"num_workers": self._num_workers})

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop the workers; their running jobs are terminated and queued again.

        Args:
            timeout: Seconds to wait for the workers before killing them.
        """
        if not self._processes:
            return
        atexit.unregister(self.stop)
        self._stop.set()
        deadline = time.monotonic() + timeout
        for process in self._processes:
            process.join(max(deadline - time.monotonic(), 0.0))
        killed = [process for process in self._processes if process.is_alive()]
        for process in killed:
            logger.warning("Killing a worker that did not stop", extra={"pid": process.pid})
            process.kill()
            process.join()
        self._release_jobs_of(killed)
        self._processes = []
        logger.info("Local workers stopped")

    def _release_jobs_of(self, processes: list[BaseProcess]) -> None:
        if not processes:
            return
        db = Database(self._settings.resolved_database_url)
        try:
            for process in processes:
                prefix = f"{socket.gethostname()}:{process.pid}:"
                release_leases_of(db, prefix, reason="its worker was killed while stopping")
        finally:
            db.dispose()


def _worker_main(
    settings: Settings,
    registry: JobRegistry,
    stop: Event,
    parent_pid: int,
    log_level: str,
) -> None:
    """Entry point of one local worker process."""
    configure_logging(level=log_level, json_lines=True)
    stop_signal = _StopOrOrphaned(stop, parent_pid)
    # Ctrl-C reaches the whole process group; the pool's owner decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop_signal.on_sigterm)
    env = create_job_environment(settings, registry)
    start_job_process_server()
    try:
        _work(env, stop_signal)
    finally:
        env.close()


def _work(env: JobEnvironment, stop_signal: _StopOrOrphaned) -> None:
    maintenance_stop = threading.Event()
    maintenance = threading.Thread(
        target=maintain_until, args=(env, maintenance_stop), name="kai-reconciler", daemon=True
    )
    maintenance.start()
    try:
        while not stop_signal.is_set():
            try:
                ran = _run_next_job(env, stop_signal)
            except SQLAlchemyError:
                logger.exception("Worker lost the database; retrying")
                ran = False
            if not ran:
                stop_signal.wait(env.settings.poll_seconds)
    finally:
        maintenance_stop.set()
        maintenance.join()


def _run_next_job(env: JobEnvironment, stop_signal: _StopOrOrphaned) -> bool:
    claim = claim_job(
        env.db,
        owner=new_lease_owner(),
        lease_seconds=env.settings.lease_seconds,
        announcer=env.announcer,
    )
    if claim is None:
        return False
    run_claimed_job(env, claim, stop=stop_signal)
    return True


class _StopOrOrphaned:
    """Set when the pool asks to stop, on SIGTERM, or when the pool's process is gone."""

    def __init__(self, stop: Event, parent_pid: int) -> None:
        self._stop = stop
        self._parent_pid = parent_pid
        self._terminated = False

    def on_sigterm(self, _signum: int, _frame: FrameType | None) -> None:
        # Only a flag: taking the event's lock inside a signal handler could deadlock.
        self._terminated = True

    def wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def is_set(self) -> bool:
        if self._stop.is_set() or self._terminated:
            return True
        if os.getppid() != self._parent_pid:
            logger.warning("The process that started this worker is gone; stopping")
            return True
        return False
