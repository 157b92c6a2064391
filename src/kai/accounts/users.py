"""Users: creation, roles, deactivation, sign-in and the first admin."""

from __future__ import annotations

import logging
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kai.db.tables import Role, User
from kai.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from kai.security.auth import (
    generate_password,
    hash_password,
    password_needs_rehash,
    verify_password,
)

logger = logging.getLogger(__name__)

ADMIN_USERNAME = "admin"
_USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_ROLE_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.ADMIN: 2}
LOGIN_FAILED_MESSAGE = "Wrong username or password"


def role_allows(role: Role, required: Role) -> bool:
    """Whether ``role`` may do what ``required`` may: admin > editor > viewer."""
    return _ROLE_RANK[role] >= _ROLE_RANK[required]


def create_user(session: Session, *, username: str, password: str, role: Role) -> User:
    """Add an active user.

    Raises:
        InvalidInput: The name or password breaks a rule.
        Conflict: The name is taken.
    """
    _check_username(username)
    if get_user_by_username(session, username) is not None:
        raise Conflict(f"A user named {username!r} already exists", details={"username": username})
    user = User(username=username, password_hash=hash_password(password), role=role)
    user.is_active = True
    session.add(user)
    session.flush()
    logger.info("Created user", extra={"user_id": user.id, "role": role.value})
    return user


def get_user(session: Session, user_id: int) -> User:
    """The user with id ``user_id``.

    Raises:
        NotFound: No such user.
    """
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found", details={"userId": user_id})
    return user


def get_user_by_username(session: Session, username: str) -> User | None:
    """The user named ``username``, or None."""
    return session.scalar(select(User).where(User.username == username))


def list_users(session: Session, *, page: int = 1, page_size: int = 50) -> tuple[list[User], int]:
    """One page of users ordered by id, and the total count."""
    total = session.scalar(select(func.count()).select_from(User)) or 0
    query = select(User).order_by(User.id).offset((page - 1) * page_size).limit(page_size)
    return list(session.scalars(query)), total


def update_user(
    session: Session,
    user_id: int,
    *,
    role: Role | None = None,
    is_active: bool | None = None,
) -> User:
    """Change a user's role or active flag, keeping at least one active admin.

    Raises:
        NotFound: No such user.
        Conflict: The change would leave no active admin.
    """
    user = get_user(session, user_id)
    loses_admin = (role is not None and role != Role.ADMIN) or is_active is False
    if loses_admin and user.role == Role.ADMIN and user.is_active:
        _check_other_admin_exists(session, user)
    if role is not None:
        user.role = role
    if is_active is not None:
        user.is_active = is_active
    session.flush()
    logger.info("Updated user", extra={"user_id": user.id, "role": user.role.value})
    return user


def set_password(session: Session, user_id: int, password: str) -> User:
    """Replace a user's password."""
    user = get_user(session, user_id)
    user.password_hash = hash_password(password)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User:
    """The active user whose name and password match.

    An unknown name, a wrong password and an inactive account all get the
    same error after the same amount of hashing work.

    Raises:
        NotAuthenticated: The credentials do not match an active user.
    """
    user = get_user_by_username(session, username)
    valid = verify_password(user.password_hash if user else None, password)
    if user is None or not valid or not user.is_active:
        raise NotAuthenticated(LOGIN_FAILED_MESSAGE)
    if password_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def bootstrap_admin(session: Session, *, password: str | None) -> str | None:
    """Create the ``admin`` user when there are no users at all.

    Args:
        session: The session to add the user in.
        password: The admin's password; None to generate one.

    Returns:
        The generated password, which the caller shows once; None when a
        password was given or users already exist.
    """
    if session.scalar(select(func.count()).select_from(User)):
        return None
    secret = password or generate_password()
    create_user(session, username=ADMIN_USERNAME, password=secret, role=Role.ADMIN)
    return None if password else secret


def _check_username(username: str) -> None:
    if not _USERNAME_PATTERN.match(username):
        raise InvalidInput(
            f"Invalid username {username!r}: use 1 to 64 letters, digits, '.', '_', '@' or '-',"
            " starting with a letter or digit",
            details={"field": "username"},
        )


def _check_other_admin_exists(session: Session, user: User) -> None:
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == Role.ADMIN, User.is_active.is_(True), User.id != user.id)
    )
    if not others:
        raise Conflict(
            f"User {user.username!r} is the last active admin; make another admin first",
            details={"userId": user.id},
        )
