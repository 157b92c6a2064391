"""The API app factory: routes, error handling, the WebSocket hub, local workers and the panel.

``create_app`` builds the app for one :class:`~kai.runtime.Runtime`. Its
lifespan migrates the database, creates the first admin when there are no
users, starts local worker processes in the embedded setup, and stops them
on shutdown. Every router under ``/api/admin`` is included with the
authentication guard, so no route there is reachable without credentials.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from kai import __version__
from kai.accounts import ADMIN_USERNAME, bootstrap_admin
from kai.api import websocket
from kai.api.dependencies import CSRF_HEADER, enforce_read_only_viewers
from kai.api.errors import install_error_handlers
from kai.api.routes import (
    auth,
    datasets,
    evaluations,
    health,
    jobs,
    models,
    premade,
    quality,
    tokens,
    training,
    users,
)
from kai.config import Settings, load_settings
from kai.db.migrate import migrate
from kai.jobs.announcements import create_event_listener
from kai.jobs.dispatch import create_dispatcher
from kai.jobs.workers import LocalWorkerPool
from kai.registrations import register_job_handlers
from kai.runtime import Runtime, create_runtime

logger = logging.getLogger(__name__)

WEB_DIST_DIR = Path(__file__).resolve().parent.parent / "web" / "dist"
INITIAL_ADMIN_FILENAME = "initial-admin-password"
_NOT_PANEL_PREFIXES = ("api/", "ws/", "docs", "openapi.json")


def create_app(runtime: Runtime | None = None, *, start_workers: bool = True) -> FastAPI:
    """Build Kai's API.

    Args:
        runtime: The process's runtime; built from the ``KAI_*`` settings when None.
            Kai's job kinds are registered into its registry here.
        start_workers: Whether the lifespan starts local worker processes when
            no broker is configured.

    Returns:
        The app, with the runtime in ``app.state.runtime``.
    """
    runtime = runtime or create_default_runtime(load_settings())
    register_job_handlers(runtime.registry)
    app = FastAPI(
        title="Kai",
        version=__version__,
        summary="Image-classification datasets and models",
        lifespan=_lifespan(runtime, start_workers=start_workers),
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    _install_cors(app, runtime.settings)
    _include_routers(app)
    _mount_admin_panel(app, WEB_DIST_DIR)
    return app


def create_default_runtime(settings: Settings) -> Runtime:
    """The runtime of a server process: the dispatcher follows ``KAI_BROKER_URL``."""
    return create_runtime(settings, dispatcher=create_dispatcher(settings))


def prepare_database(runtime: Runtime) -> str | None:
    """Migrate the database and create the first admin when there are no users.

    Returns:
        The admin's generated password when one was generated just now.
    """
    migrate(runtime.db)
    configured = runtime.settings.admin_password
    with runtime.db.session() as session:
        generated = bootstrap_admin(
            session, password=configured.get_secret_value() if configured else None
        )
    return generated


def _include_routers(app: FastAPI) -> None:
    app.include_router(health.router)
    app.include_router(auth.router)
    admin = APIRouter(prefix="/api/admin", dependencies=[Depends(enforce_read_only_viewers)])
    admin.include_router(users.router)
    admin.include_router(tokens.router)
    admin.include_router(jobs.router)
    admin.include_router(premade.router)  # before datasets: 'premade' is no dataset id
    admin.include_router(quality.router)
    admin.include_router(datasets.router)
    admin.include_router(models.router)
    admin.include_router(training.router)
    admin.include_router(evaluations.router)
    app.include_router(admin)
    app.include_router(websocket.router)


def _install_cors(app: FastAPI, settings: Settings) -> None:
    if not settings.allowed_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", CSRF_HEADER, "Idempotency-Key"],
    )


def _lifespan(
    runtime: Runtime, *, start_workers: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        generated = await anyio.to_thread.run_sync(prepare_database, runtime)
        if generated is not None:
            _keep_initial_password(runtime.settings, generated)
        pool = _start_local_workers(runtime) if start_workers else None
        listener = create_event_listener(runtime.settings)
        app.state.hub = websocket.TrainingHub(runtime, listener)
        try:
            yield
        finally:
            await app.state.hub.close()
            await listener.close()
            if pool is not None:
                await anyio.to_thread.run_sync(pool.stop)

    return lifespan


def _start_local_workers(runtime: Runtime) -> LocalWorkerPool | None:
    settings = runtime.settings
    if settings.broker_url:
        logger.info("Jobs go to the broker; run 'kai worker' to execute them")
        return None
    pool = LocalWorkerPool(settings, runtime.registry, num_workers=settings.local_workers)
    pool.start()
    return pool


def _keep_initial_password(settings: Settings, password: str) -> None:
    # Reached when the app starts outside 'kai serve', which prints the password itself.
    path = settings.resolved_data_dir / INITIAL_ADMIN_FILENAME
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(password + "\n")
    logger.info(
        "Created user %r; its generated password is in %s (delete the file after reading)",
        ADMIN_USERNAME,
        path,
    )


class AdminPanelFiles(StaticFiles):
    """The panel's built files; unknown paths without an extension get ``index.html``."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or not _is_panel_route(path):
                raise
            return FileResponse(Path(str(self.directory)) / "index.html")


def _is_panel_route(path: str) -> bool:
    path = path.lstrip("/")
    if path == "api" or path.startswith(_NOT_PANEL_PREFIXES):
        return False
    return "." not in path.rsplit("/", 1)[-1]


def _mount_admin_panel(app: FastAPI, dist_dir: Path) -> None:
    if not (dist_dir / "index.html").is_file():
        logger.debug("No admin panel build at %s", dist_dir)
        return
    app.mount("/", AdminPanelFiles(directory=dist_dir, html=True), name="admin-panel")
