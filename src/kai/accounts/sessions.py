"""Admin panel sessions: a cookie secret (stored hashed) with a CSRF token and an expiry."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from kai.db.tables import User, WebSession, utcnow
from kai.errors import NotAuthenticated
from kai.security.auth import generate_csrf_token, generate_session_secret, hash_secret

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionGrant:
    """A new web session: its record and the cookie secret, which is never stored."""

    web_session: WebSession
    secret: str


def create_web_session(session: Session, user: User, *, hours: int) -> SessionGrant:
    """Open a session for ``user`` lasting ``hours``; expired ones are swept on the way."""
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    secret = generate_session_secret()
    web_session = WebSession(
        user_id=user.id,
        token_hash=hash_secret(secret),
        csrf_token=generate_csrf_token(),
        expires_at=now + timedelta(hours=hours),
    )
    session.add(web_session)
    session.flush()
    logger.info("Opened web session", extra={"user_id": user.id})
    return SessionGrant(web_session=web_session, secret=secret)


def resolve_web_session(session: Session, secret: str) -> tuple[WebSession, User]:
    """The live session a cookie secret opens, and its active user.

    Raises:
        NotAuthenticated: The secret is unknown, expired or its user inactive.
    """
    web_session = session.scalar(
        select(WebSession).where(WebSession.token_hash == hash_secret(secret))
    )
    if web_session is None or _aware(web_session.expires_at) <= utcnow():
        raise NotAuthenticated("The session has expired; sign in again")
    user = session.get(User, web_session.user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated("The session's user is deactivated")
    return web_session, user


def end_web_session(session: Session, secret: str) -> None:
    """Forget the session a cookie secret opens; an unknown secret is ignored."""
    session.execute(delete(WebSession).where(WebSession.token_hash == hash_secret(secret)))


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone-aware columns; they were stored in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)
