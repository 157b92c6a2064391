"""API tokens: random secrets shown once, stored as SHA-256, revocable by their owner."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from kai.db.tables import ApiToken, User, utcnow
from kai.errors import InvalidInput, NotAuthenticated, NotFound
from kai.security.auth import API_TOKEN_PREFIX, generate_api_token, hash_secret

logger = logging.getLogger(__name__)

MAX_TOKEN_NAME_LENGTH = 128
# Recording every use would turn each read into a write; once a minute is enough to audit.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenGrant:
    """A new token: its record and the secret, which is never shown again."""

    token: ApiToken
    secret: str


def create_token(session: Session, user: User, *, name: str = "") -> TokenGrant:
    """Issue a new API token for ``user``.

    Raises:
        InvalidInput: The name is too long.
    """
    if len(name) > MAX_TOKEN_NAME_LENGTH:
        raise InvalidInput(
            f"Token name is {len(name)} characters long; the limit is {MAX_TOKEN_NAME_LENGTH}",
            details={"field": "name"},
        )
    secret = generate_api_token()
    token = ApiToken(user_id=user.id, name=name, token_hash=hash_secret(secret), revoked=False)
    session.add(token)
    session.flush()
    logger.info("Created API token", extra={"user_id": user.id, "token_id": token.id})
    return TokenGrant(token=token, secret=secret)


def list_tokens(session: Session, user_id: int) -> list[ApiToken]:
    """A user's tokens, revoked ones included, newest first."""
    query = select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())
    return list(session.scalars(query))


def revoke_token(session: Session, user_id: int, token_id: int) -> ApiToken:
    """Revoke one of the user's own tokens.

    Raises:
        NotFound: The user has no token with that id.
    """
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user_id:
        raise NotFound(f"Token {token_id} not found", details={"tokenId": token_id})
    token.revoked = True
    session.flush()
    logger.info("Revoked API token", extra={"user_id": user_id, "token_id": token_id})
    return token


def resolve_token(session: Session, secret: str) -> User:
    """The active user a bearer token belongs to.

    Raises:
        NotAuthenticated: The token is unknown, revoked or its user inactive.
    """
    if not secret.startswith(API_TOKEN_PREFIX):
        raise NotAuthenticated("Invalid API token")
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret)))
    if token is None or token.revoked:
        raise NotAuthenticated("Invalid or revoked API token")
    user = session.get(User, token.user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated("The API token's user is deactivated")
    _record_use(token)
    return user


def _record_use(token: ApiToken) -> None:
    now = utcnow()
    last = token.last_used_at
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=now.tzinfo)
    if last is None or now - last >= _LAST_USED_RESOLUTION:
        token.last_used_at = now
