"""Job handlers for the jobs tests, importable by spawned job processes and Celery workers."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from kai.errors import InvalidInput
from kai.jobs.context import JobContext
from kai.jobs.registry import JobRegistry


def create_registry() -> JobRegistry:
    """Every sample kind, each with the recording failure hook."""
    registry = JobRegistry()
    for name, handler in [
        ("test.succeed", succeed),
        ("test.invalid", raise_invalid_input),
        ("test.bug", raise_bug),
        ("test.crash", crash),
        ("test.sleep", sleep),
        ("test.cooperative", wait_for_cancel),
    ]:
        registry.register(name, handler, on_failure=record_failure)
    return registry


def succeed(ctx: JobContext) -> dict[str, Any]:
    _mark_run(ctx)
    (ctx.work_dir / "scratch.txt").write_text("temporary")
    ctx.progress(0.5, stage="halfway", force=True, currentEpoch=1, totalEpochs=2)
    ctx.emit("metrics", {"epoch": 1, "metrics": {"trainLoss": 0.5}})
    seconds = float(ctx.config.get("seconds", 0))
    time.sleep(seconds)
    return {"answer": ctx.config.get("value", 42), "workDir": str(ctx.work_dir)}


def raise_invalid_input(ctx: JobContext) -> dict[str, Any]:
    raise InvalidInput("The archive holds no images")


def raise_bug(ctx: JobContext) -> dict[str, Any]:
    raise ValueError("unexpected value 7")


def crash(ctx: JobContext) -> dict[str, Any]:
    _mark_run(ctx)
    os._exit(3)


def sleep(ctx: JobContext) -> dict[str, Any]:
    """Sleeps without ever checking for cancellation, so only termination stops it."""
    _mark_run(ctx)
    time.sleep(float(ctx.config.get("seconds", 60)))
    return {"slept": True}


def wait_for_cancel(ctx: JobContext) -> dict[str, Any]:
    _mark_run(ctx)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.05)
    return {}


def record_failure(ctx: JobContext, reason: str) -> None:
    ctx.emit("log", {"message": f"failure hook: {reason}", "hook": True})


def _mark_run(ctx: JobContext) -> None:
    """Append this process's pid to ``<marker_dir>/<job id>.runs``."""
    marker_dir = ctx.config.get("marker_dir")
    if marker_dir:
        with open(Path(marker_dir) / f"{ctx.job_id}.runs", "a") as runs:
            runs.write(f"{os.getpid()}\n")
