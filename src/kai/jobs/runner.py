"""Running a claimed job in its own child process and recording how it ended.

The worker (the parent) never forks itself: the child is forked from a
fork server, a clean single-threaded process that has imported Kai's job
code once, so a job starts in milliseconds instead of re-importing Kai, and
shares no state with the worker: a crash, an out-of-memory kill or a hostile
file ends that job only. Where the platform has no fork server, the child is
spawned instead. Either way it gets the worker's environment and working
directory as they are when the job starts. While the child runs, the parent renews the lease,
watches for a cancellation request and for the worker's own shutdown. When
the child ends, the parent records the outcome under its lease:

- the handler returned: ``succeeded``, with a ``completed`` event;
- the handler raised: ``failed`` (or ``cancelled``), with an ``error`` event;
- the child died without a word: queued again while attempts remain, else
  ``failed`` with its exit code;
- cancellation requested: the child is terminated and the job ``cancelled``.
"""

from __future__ import annotations

import enum
import logging
import multiprocessing
import os
import pickle
import signal
import time
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from kai.db.tables import FINISHED_STATES, Job, JobState
from kai.jobs._child import ChildOutcome, ChildSurroundings, child_main, remove_work_dir
from kai.jobs.environment import JobEnvironment
from kai.jobs.hooks import run_failure_hook
from kai.jobs.leases import ClaimedJob, Heartbeat, finish_job, release_job, renew_lease

__all__ = [
    "StopSignal",
    "dispatch_dependents",
    "exit_reason",
    "job_process_context",
    "run_claimed_job",
    "start_job_process_server",
]

logger = logging.getLogger(__name__)

TERMINATE_GRACE_SECONDS = 5.0
EXIT_GRACE_SECONDS = 10.0
STOP_CHECK_SECONDS = 1.0
# What the fork server imports once; job handlers' heavy libraries (torch) load in the job.
PRELOADED_MODULES = ["kai.jobs._child", "kai.registrations"]


class StopSignal(Protocol):
    """Set when the worker is shutting down (a threading or multiprocessing Event)."""

    def is_set(self) -> bool:
        """Whether the worker should stop."""


class _Ending(enum.Enum):
    REPORTED = "reported"
    EXITED = "exited"
    CANCELLED = "cancelled"
    STOPPING = "stopping"
    LEASE_LOST = "lease lost"


@dataclass(frozen=True)
class _Watched:
    ending: _Ending
    outcome: ChildOutcome | None = None
    exit_code: int | None = None


def run_claimed_job(
    env: JobEnvironment,
    claim: ClaimedJob,
    *,
    stop: StopSignal | None = None,
) -> JobState | None:
    """Run a claimed job to its end in a child process and record the outcome.

    Args:
        env: The worker's collaborators.
        claim: The job, with the lease this worker holds.
        stop: Set when the worker shuts down; the child is then terminated and
            the job queued again without using up an attempt.

    Returns:
        The job's state afterwards, or None when the lease was lost to another worker.
    """
    try:
        process, connection = _start_child(env, claim)
    except (OSError, pickle.PicklingError, AttributeError, TypeError) as exc:
        logger.exception("Could not start the job's process", extra={"job_id": claim.id})
        error = f"Internal error: could not start the job's process: {exc}"
        recorded = finish_job(
            env.db, claim.id, owner=claim.owner, state=JobState.FAILED, error=error
        )
        return _after(env, claim, JobState.FAILED if recorded else None)
    # The pid lets an operator find (and if need be end) the process running the attempt.
    logger.info(
        "Job started",
        extra={"job_id": claim.id, "attempt": claim.attempt, "pid": process.pid},
    )

    try:
        watched = _watch_child(env, claim, process, connection, stop)
    except BaseException:
        # No one would watch the child any more: end it before the error goes up.
        _terminate(process)
        raise
    finally:
        connection.close()
    remove_work_dir(env.settings.work_dir / str(claim.id))
    return _after(env, claim, _record(env, claim, watched))


def job_process_context() -> ForkServerContext | SpawnContext:
    """The fork server where the platform has one (preloaded with Kai's job code), else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Only takes effect when this process starts its fork server, on its first job.
    context.set_forkserver_preload(PRELOADED_MODULES)
    return context


def start_job_process_server() -> None:
    """Start the fork server now, so that a worker's first job starts as fast as the rest."""
    if job_process_context().get_start_method() == "forkserver":
        forkserver.ensure_running()


def _start_child(env: JobEnvironment, claim: ClaimedJob) -> tuple[BaseProcess, Connection]:
    context = job_process_context()
    receiver, sender = context.Pipe(duplex=False)
    log_level = env.job_log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
    surroundings = ChildSurroundings(environ=dict(os.environ), cwd=os.getcwd())
    process = context.Process(
        target=child_main,
        args=(env.settings, env.registry, claim.id, claim.attempt, sender, log_level),
        kwargs={"surroundings": surroundings},
        name=f"kai-job-{claim.id}",
    )
    try:
        process.start()
    finally:
        sender.close()
    return process, receiver


def _watch_child(
    env: JobEnvironment,
    claim: ClaimedJob,
    process: BaseProcess,
    connection: Connection,
    stop: StopSignal | None,
) -> _Watched:
    heartbeat_seconds = env.settings.heartbeat_seconds
    next_beat = time.monotonic() + heartbeat_seconds
    while True:
        timeout = min(max(next_beat - time.monotonic(), 0.0), STOP_CHECK_SECONDS)
        ready = wait([connection, process.sentinel], timeout)
        if ready:
            return _collect(process, connection)
        if stop is not None and stop.is_set():
            return _Watched(_Ending.STOPPING, exit_code=_terminate(process))
        if time.monotonic() < next_beat:
            continue

        beat = _heartbeat(env, claim)
        next_beat = time.monotonic() + heartbeat_seconds
        if beat is None:
            continue
        if not beat.held:
            return _Watched(_Ending.LEASE_LOST, exit_code=_terminate(process))
        if beat.cancel_requested:
            logger.info("Cancelling job", extra={"job_id": claim.id})
            return _Watched(_Ending.CANCELLED, exit_code=_terminate(process))


def _heartbeat(env: JobEnvironment, claim: ClaimedJob) -> Heartbeat | None:
    try:
        return renew_lease(
            env.db, claim.id, owner=claim.owner, lease_seconds=env.settings.lease_seconds
        )
    except SQLAlchemyError as exc:
        # The lease outlives a few missed beats; the next one tells whether it still holds.
        logger.warning("Heartbeat failed: %s", exc, extra={"job_id": claim.id})
        return None


def _collect(process: BaseProcess, connection: Connection) -> _Watched:
    """The child reported or exited: read its outcome, if any, and reap it."""
    outcome: ChildOutcome | None = None
    if connection.poll():
        try:
            outcome = connection.recv()
        except (EOFError, OSError):
            outcome = None
    process.join(EXIT_GRACE_SECONDS)
    if process.is_alive():
        logger.warning("The job's process did not exit after reporting; terminating it")
        _terminate(process)
    if outcome is None:
        return _Watched(_Ending.EXITED, exit_code=process.exitcode)
    return _Watched(_Ending.REPORTED, outcome=outcome, exit_code=process.exitcode)


def _terminate(process: BaseProcess) -> int | None:
    process.terminate()
    process.join(TERMINATE_GRACE_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()
    return process.exitcode


def _record(env: JobEnvironment, claim: ClaimedJob, watched: _Watched) -> JobState | None:
    owner = claim.owner
    if watched.ending is _Ending.REPORTED:
        assert watched.outcome is not None
        outcome = watched.outcome
        recorded = finish_job(
            env.db,
            claim.id,
            owner=owner,
            state=outcome.state,
            result=outcome.result,
            error=outcome.error,
        )
        return outcome.state if recorded else _lease_lost(claim)
    if watched.ending is _Ending.CANCELLED:
        error = f"Job {claim.id} was cancelled"
        recorded = finish_job(env.db, claim.id, owner=owner, state=JobState.CANCELLED, error=error)
        return JobState.CANCELLED if recorded else _lease_lost(claim)
    if watched.ending is _Ending.STOPPING:
        reason = "the worker was stopped"
        state = release_job(env.db, claim.id, owner=owner, reason=reason, count_attempt=False)
        return state if state is not None else _lease_lost(claim)
    if watched.ending is _Ending.EXITED:
        reason = exit_reason(watched.exit_code)
        state = release_job(env.db, claim.id, owner=owner, reason=reason)
        return state if state is not None else _lease_lost(claim)
    return _lease_lost(claim)


def exit_reason(exit_code: int | None) -> str:
    """Say how a job's process ended without reporting an outcome."""
    if exit_code is None or exit_code >= 0:
        return f"the job's process exited with code {exit_code}"
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        name = f"signal {-exit_code}"
    reason = f"the job's process was killed by {name} (exit code {exit_code})"
    if name == "SIGKILL":
        reason += "; it may have run out of memory"
    return reason


def _lease_lost(claim: ClaimedJob) -> JobState | None:
    logger.warning(
        "The job's lease was lost to another worker; this attempt's outcome is discarded",
        extra={"job_id": claim.id, "attempt": claim.attempt},
    )
    return None


def _after(env: JobEnvironment, claim: ClaimedJob, state: JobState | None) -> JobState | None:
    if state is None:
        return None
    env.announcer.announce(claim.id)
    logger.info("Job attempt ended", extra={"job_id": claim.id, "state": state.value})
    if state in (JobState.FAILED, JobState.CANCELLED):
        run_failure_hook(env, claim.id)
    if state is JobState.QUEUED:
        env.dispatcher.dispatch(claim.id)
    if state in FINISHED_STATES:
        dispatch_dependents(env, claim.id)
    return state


def dispatch_dependents(env: JobEnvironment, job_id: int) -> list[int]:
    """Tell workers about queued jobs waiting for ``job_id``, which just finished."""
    with env.db.session() as session:
        rows = session.execute(
            select(Job.id, Job.depends_on).where(Job.state == JobState.QUEUED)
        ).all()
    dependents = [row.id for row in rows if job_id in (row.depends_on or [])]
    for dependent_id in dependents:
        env.dispatcher.dispatch(dependent_id)
    return dependents
