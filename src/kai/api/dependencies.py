"""FastAPI dependencies as ``Annotated`` aliases: runtime, database session, signed-in user.

A request signs in with ``Authorization: Bearer <token>`` or with the admin
panel's session cookie. A cookie request with an unsafe method must also send
the session's CSRF token in ``X-CSRF-Token``; bearer requests need none,
because a browser never adds that header on its own.

Roles rank ``viewer < editor < admin``: viewers read, editors change, admins
manage users. Every route under ``/api/admin`` also passes
:func:`enforce_read_only_viewers`, so a viewer can never change anything
even where a route forgets its role check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.orm import Session

from kai.accounts import resolve_token, resolve_web_session, role_allows
from kai.db.tables import Role, User, WebSession
from kai.errors import InvalidInput, NotAuthenticated, PermissionDenied
from kai.runtime import Runtime
from kai.security.auth import check_csrf_token

SESSION_COOKIE = "kai_session"
CSRF_COOKIE = "kai_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_IDEMPOTENCY_KEY_LENGTH = 100
MAX_PAGE_SIZE = 500


def get_runtime(request: Request) -> Runtime:
    """The runtime the app was created with."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    """One database transaction for the request, committed before the answer is sent."""
    with runtime.db.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class Principal:
    """Who signed a request in, and with which web session when it was the cookie."""

    user: User
    web_session: WebSession | None = None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None when there is no header.

    Raises:
        NotAuthenticated: The header is present but not a bearer token.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("The Authorization header must be 'Bearer <token>'")
    return token.strip()


def get_principal(request: Request, session: SessionDep) -> Principal:
    """Authenticate the request by bearer token or by session cookie.

    Raises:
        NotAuthenticated: No credentials, or invalid ones.
        CsrfFailed: A cookie request with an unsafe method lacks its CSRF token.
    """
    token = bearer_token(request.headers.get("authorization"))
    if token is not None:
        return Principal(user=resolve_token(session, token))
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        raise NotAuthenticated(
            "Sign in first: send 'Authorization: Bearer <token>' or the session cookie"
        )
    web_session, user = resolve_web_session(session, secret)
    if request.method not in SAFE_METHODS:
        check_csrf_token(web_session.csrf_token, request.headers.get(CSRF_HEADER))
    return Principal(user=user, web_session=web_session)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_role(required: Role) -> Callable[[Principal], User]:
    """A dependency giving the signed-in user when their role ranks at least ``required``."""

    def check_role(principal: PrincipalDep) -> User:
        if not role_allows(principal.user.role, required):
            raise PermissionDenied(
                f"This needs the {required.value} role; user {principal.user.username!r}"
                f" is {principal.user.role.value}",
                details={"requiredRole": required.value, "role": principal.user.role.value},
            )
        return principal.user

    check_role.__name__ = f"require_{required.value}"
    return check_role


ViewerUser = Annotated[User, Depends(require_role(Role.VIEWER))]
EditorUser = Annotated[User, Depends(require_role(Role.EDITOR))]
AdminUser = Annotated[User, Depends(require_role(Role.ADMIN))]


# A route that takes POST only to carry files but changes nothing (predictions) sets this
# key in its ``openapi_extra`` so viewers may call it.
READ_ONLY_MARK = "x-kai-read-only"


def enforce_read_only_viewers(request: Request, principal: PrincipalDep) -> None:
    """Refuse every unsafe method to viewers: the router-wide guard of ``/api/admin``."""
    route = request.scope.get("route")
    if (getattr(route, "openapi_extra", None) or {}).get(READ_ONLY_MARK):
        return
    if request.method not in SAFE_METHODS and principal.user.role == Role.VIEWER:
        raise PermissionDenied(
            f"User {principal.user.username!r} is a viewer and may only read",
            details={"requiredRole": Role.EDITOR.value, "role": Role.VIEWER.value},
        )


def read_idempotency_key(
    user: ViewerUser,
    idempotency_key: Annotated[
        str | None,
        Header(description="Repeating a request with the same key returns the first job"),
    ] = None,
) -> str | None:
    """The request's ``Idempotency-Key``, scoped to the user so keys never collide across users.

    Raises:
        InvalidInput: The key is empty, too long or not printable ASCII.
    """
    if idempotency_key is None:
        return None
    key = idempotency_key.strip()
    if (
        not key
        or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH
        or not key.isascii()
        or not key.isprintable()
    ):
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters",
            details={"field": "Idempotency-Key"},
        )
    return f"user-{user.id}:{key}"


IdempotencyKey = Annotated[str | None, Depends(read_idempotency_key)]


@dataclass(frozen=True)
class PageParams:
    """Which page of a list to answer: ``page`` counts from 1."""

    page: int
    page_size: int


def read_page_params(
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> PageParams:
    """The ``page`` and ``pageSize`` query parameters."""
    return PageParams(page=page, page_size=page_size)


PageQuery = Annotated[PageParams, Depends(read_page_params)]
