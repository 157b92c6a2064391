"""The shared base of every schema: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


def _as_utc(moment: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; Kai stores them in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
"""A timestamp that always carries its UTC offset on the wire."""


class ApiModel(BaseModel):
    """Base schema: camelCase aliases, filled by either name, readable from ORM rows."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        from_attributes=True,
    )


ItemT = TypeVar("ItemT")


class Page(ApiModel, Generic[ItemT]):
    """One page of a list: its items and where it sits in the whole."""

    items: list[ItemT]
    total: int
    page: int
    page_size: int


class ErrorBody(ApiModel):
    """What went wrong: a stable code, a message for people, and details for programs."""

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(ApiModel):
    """The body of every error response."""

    error: ErrorBody
