"""``kai serve``: the HTTP API, the WebSocket hub, the admin panel and local workers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from kai.accounts import ADMIN_USERNAME
from kai.api.app import create_app, create_default_runtime, prepare_database
from kai.cli import _presentation
from kai.cli._context import load_cli_settings
from kai.logs import configure_logging


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on (KAI_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (KAI_PORT)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="The data dir (KAI_DATA_DIR)")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Local job workers when no broker is set (KAI_LOCAL_WORKERS)")
    ] = None,
) -> None:
    """Serve the API, the live job events and the admin panel."""
    settings = load_cli_settings(
        ctx, host=host, port=port, data_dir=data_dir, local_workers=workers
    )
    configure_logging(level="INFO")
    runtime = create_default_runtime(settings)
    generated = prepare_database(runtime)
    if generated is not None:
        _presentation.show_initial_admin(ADMIN_USERNAME, generated)
    _presentation.show_serving(settings.host, settings.port)
    uvicorn.run(
        create_app(runtime),
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=True,
    )
