"""Liveness, open to all."""

from __future__ import annotations

from fastapi import APIRouter

from kai import __version__
from kai.api.schemas.health import HealthRead

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health")
def read_health() -> HealthRead:
    """The server answers; no credentials needed."""
    return HealthRead(status="ok", version=__version__)
