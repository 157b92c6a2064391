"""One place that turns errors into HTTP answers of one shape.

Every error body is ``{"error": {"code", "message", "details"}}``. Kai's
domain errors map to statuses by class; request validation becomes
``invalid_input`` with the field errors in ``details``; unknown routes and
methods keep their status; anything else is a bug, logged once and answered
``500 internal_error``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kai import errors

logger = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.KaiError], int] = {
    errors.InvalidInput: 422,
    errors.TooLarge: 413,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.NotAuthenticated: 401,
    errors.PermissionDenied: 403,
    errors.InsufficientStorage: 507,
    errors.JobCancelled: 409,
}
_CODE_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
}


def status_for(error: errors.KaiError) -> int:
    """The HTTP status of a domain error: its nearest mapped class wins."""
    for cls in type(error).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 400


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON error answer in Kai's shape."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(errors.KaiError, _handle_kai_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(HTTPException, _handle_http_exception)
    app.add_middleware(UnexpectedErrorMiddleware)


class UnexpectedErrorMiddleware:
    """Answers an unhandled exception with ``500 internal_error`` and logs it once.

    Starlette's own last-resort handler re-raises after answering, so the
    server would log the same traceback a second time.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            logger.error(
                "Unexpected error answering %s %s", scope["method"], scope["path"], exc_info=exc
            )
            if started:
                raise
            response = error_response(
                500, "internal_error", "Internal server error; see the server log"
            )
            await response(scope, receive, send)


async def _handle_kai_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.KaiError)
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.code, exc.message, exc.details, headers)


async def _handle_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [_field_error(item) for item in exc.errors()]
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in fields[:5])
    return error_response(422, "invalid_input", f"Invalid request: {summary}", {"fields": fields})


async def _handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _CODE_BY_STATUS.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "Request failed"
    if exc.status_code == 404:
        message = f"No route or resource at {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, headers=exc.headers)


def _field_error(item: Any) -> dict[str, Any]:
    location = [str(part) for part in item.get("loc", ()) if part not in ("body",)]
    return {
        "field": ".".join(location) or "body",
        "message": str(item.get("msg", "invalid")),
        "type": str(item.get("type", "")),
    }
