"""Signing in and out of the admin panel with a session cookie."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from kai.accounts import authenticate, create_web_session, end_web_session
from kai.api.dependencies import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    PrincipalDep,
    RuntimeDep,
    SessionDep,
)
from kai.api.schemas.auth import LoginRequest, SessionRead
from kai.api.schemas.users import UserRead

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/login")
def create_login(
    body: LoginRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    runtime: RuntimeDep,
) -> SessionRead:
    """Check the credentials and open a session: sets the ``kai_session`` cookie.

    The answer carries the session's CSRF token, which the panel sends back in
    ``X-CSRF-Token`` on every unsafe request; the readable ``kai_csrf`` cookie
    holds it too, so a reloaded panel can find it.
    """
    user = authenticate(session, body.username, body.password)
    hours = runtime.settings.session_hours
    grant = create_web_session(session, user, hours=hours)
    csrf_token = grant.web_session.csrf_token
    secure = request.url.scheme == "https"
    max_age = hours * 3600
    response.set_cookie(
        SESSION_COOKIE,
        grant.secret,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    response.set_cookie(
        CSRF_COOKIE, csrf_token, max_age=max_age, path="/", secure=secure, samesite="strict"
    )
    return SessionRead(user=UserRead.model_validate(user), csrf_token=csrf_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def delete_login(request: Request, principal: PrincipalDep, session: SessionDep) -> Response:
    """End the cookie's session and clear the cookies; a bearer token stays valid."""
    secret = request.cookies.get(SESSION_COOKIE)
    if principal.web_session is not None and secret:
        end_web_session(session, secret)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")
    return response


@router.get("/me")
def read_me(principal: PrincipalDep) -> SessionRead:
    """Who is signed in, with the session's CSRF token when a cookie signed the request."""
    csrf_token = principal.web_session.csrf_token if principal.web_session else None
    return SessionRead(user=UserRead.model_validate(principal.user), csrf_token=csrf_token)
