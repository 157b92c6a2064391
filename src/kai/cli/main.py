"""The ``kai`` command: root options, the noun sub-commands, and error reporting.

A :class:`~kai.errors.KaiError` from any command is printed as one line and
ends the process with status 1; only a bug shows a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from kai import __version__
from kai.cli import (
    _presentation,
    datasets,
    gc,
    jobs,
    models,
    serve,
    tokens,
    training,
    users,
    worker,
)
from kai.cli._context import CliOptions
from kai.errors import KaiError


class _KaiGroup(TyperGroup):
    """Turns Kai's errors from any sub-command into a message and exit status 1."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except KaiError as exc:
            _presentation.show_error(exc)
            raise typer.Exit(code=1) from None


app = typer.Typer(
    name="kai",
    cls=_KaiGroup,
    help="Kai: image-classification datasets and models, self-hosted.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("serve")(serve.serve)
app.command("worker")(worker.worker)
app.add_typer(users.app, name="users")
app.add_typer(tokens.app, name="tokens")
app.add_typer(jobs.app, name="jobs")
app.add_typer(datasets.app, name="dataset")
app.add_typer(models.app, name="model")
app.command("gc")(gc.gc)
app.command("train")(training.train)


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None, typer.Option(help="The data dir (KAI_DATA_DIR); default ./kai-data")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="The metadata database (KAI_DATABASE_URL)")
    ] = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit")] = False,
) -> None:
    """Kai's command line; it reads the same KAI_* settings as the server."""
    if version:
        _presentation.show_notice(f"kai {__version__}")
        raise typer.Exit()
    overrides = {"data_dir": data_dir, "database_url": database_url}
    ctx.obj = CliOptions({key: value for key, value in overrides.items() if value is not None})


def main() -> None:
    """The ``kai`` console script."""
    _presentation.install_log_handler(os.environ.get("KAI_LOG_LEVEL", "WARNING").upper())
    app()
