"""Settings and runtime for CLI commands: flags override the ``KAI_*`` environment.

The root command stores its flags in the Typer context; every command reads
the same settings as the server from them, so it works on a stopped server's
data dir. :func:`open_runtime` migrates the database before handing it out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import typer

from kai.config import Settings
from kai.db.migrate import migrate
from kai.jobs.dispatch import create_dispatcher
from kai.jobs.registry import JobRegistry
from kai.registrations import register_job_handlers
from kai.runtime import Runtime, create_runtime


@dataclass
class CliOptions:
    """Settings given as flags to the root command, by setting name."""

    overrides: dict[str, Any] = field(default_factory=dict)


def load_cli_settings(ctx: typer.Context, **overrides: Any) -> Settings:
    """The settings: environment, then root flags, then the command's own non-None flags."""
    options = ctx.find_object(CliOptions) or CliOptions()
    chosen = {**options.overrides, **{k: v for k, v in overrides.items() if v is not None}}
    return Settings(**chosen)


@contextmanager
def open_runtime(ctx: typer.Context, **overrides: Any) -> Iterator[Runtime]:
    """A runtime on a migrated database with Kai's job kinds registered; disposed after."""
    settings = load_cli_settings(ctx, **overrides)
    registry = JobRegistry()
    register_job_handlers(registry)
    runtime = create_runtime(settings, registry=registry, dispatcher=create_dispatcher(settings))
    try:
        migrate(runtime.db)
        yield runtime
    finally:
        runtime.db.dispose()
