"""Schemas of signing in and out."""

from __future__ import annotations

from pydantic import Field

from kai.api.schemas.base import ApiModel
from kai.api.schemas.users import UserRead


class LoginRequest(ApiModel):
    """Credentials for the admin panel."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionRead(ApiModel):
    """Who is signed in; ``csrf_token`` is set when a session cookie signed the request."""

    user: UserRead
    csrf_token: str | None = None
