"""Schemas of users."""

from __future__ import annotations

from pydantic import Field

from kai.api.schemas.base import ApiModel, UtcDatetime
from kai.db.tables import Role


class UserRead(ApiModel):
    """A user as others see it; never the password hash."""

    id: int
    username: str
    role: Role
    is_active: bool
    created_at: UtcDatetime


class UserCreate(ApiModel):
    """A new user."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Role = Role.VIEWER


class UserUpdate(ApiModel):
    """A change of role or active flag; absent fields stay as they are."""

    role: Role | None = None
    is_active: bool | None = None
