"""Request and response schemas; JSON field names are camelCase."""

from kai.api.schemas.base import ApiModel, ErrorBody, ErrorResponse, Page, UtcDatetime

__all__ = ["ApiModel", "ErrorBody", "ErrorResponse", "Page", "UtcDatetime"]
