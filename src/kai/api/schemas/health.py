"""Schemas of the health route."""

from __future__ import annotations

from kai.api.schemas.base import ApiModel


class HealthRead(ApiModel):
    """The server is alive; which version it runs."""

    status: str
    version: str
