"""Schemas of API tokens."""

from __future__ import annotations

from pydantic import Field

from kai.api.schemas.base import ApiModel, UtcDatetime


class TokenRead(ApiModel):
    """A token's record; never its secret."""

    id: int
    name: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None
    revoked: bool


class TokenCreate(ApiModel):
    """A new token for the signed-in user."""

    name: str = Field(default="", max_length=128)


class TokenCreated(ApiModel):
    """A new token with its secret, shown only in this answer."""

    token: TokenRead
    secret: str
