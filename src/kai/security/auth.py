"""Secrets for signing in: password hashes, API tokens, session secrets and CSRF tokens.

Passwords are hashed with Argon2id. API tokens and session secrets are random
and only their SHA-256 is stored, so a leaked database yields nothing that
signs in. Every comparison of a secret runs in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kai.errors import CsrfFailed, InvalidInput

API_TOKEN_PREFIX = "kai_"  # noqa: S105 - a public marker, not a secret
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
_SECRET_BYTES = 32


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(_SECRET_BYTES))


def check_password_strength(password: str) -> None:
    """Refuse a password that is too short or absurdly long.

    Raises:
        InvalidInput: The password breaks the length rule.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"The password is too short: use at least {MIN_PASSWORD_LENGTH} characters",
            details={"field": "password", "minLength": MIN_PASSWORD_LENGTH},
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"The password is too long: use at most {MAX_PASSWORD_LENGTH} characters",
            details={"field": "password", "maxLength": MAX_PASSWORD_LENGTH},
        )


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password``, with its salt and parameters."""
    check_password_strength(password)
    return str(_hasher().hash(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``.

    With no hash (an unknown user) a dummy hash is checked instead, so an
    unknown name takes as long to refuse as a wrong password.
    """
    try:
        return bool(_hasher().verify(password_hash or _dummy_hash(), password))
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    return bool(_hasher().check_needs_rehash(password_hash))


def generate_password() -> str:
    """A random password for a generated account, URL-safe and 22 characters long."""
    return secrets.token_urlsafe(16)


def generate_api_token() -> str:
    """A new API token: ``kai_`` followed by 43 random URL-safe characters."""
    return API_TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def generate_session_secret() -> str:
    """A new secret for a web session cookie."""
    return secrets.token_urlsafe(_SECRET_BYTES)


def generate_csrf_token() -> str:
    """A new CSRF token for a web session."""
    return secrets.token_urlsafe(_SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest under which a token or session secret is stored.

    Plain SHA-256 suffices because the secrets carry 256 random bits.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secrets_match(expected: str, given: str | None) -> bool:
    """Compare two secrets in constant time; a missing one never matches."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def check_csrf_token(expected: str, given: str | None) -> None:
    """Refuse a state-changing request whose CSRF token is missing or wrong.

    Raises:
        CsrfFailed: The header is absent or does not match the session's token.
    """
    if not secrets_match(expected, given):
        raise CsrfFailed("Missing or wrong X-CSRF-Token header for this session")
