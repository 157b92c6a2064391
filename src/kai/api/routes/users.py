"""Users, managed by admins."""

from __future__ import annotations

from fastapi import APIRouter, status

from kai.accounts import create_user, get_user, list_users, update_user
from kai.api.dependencies import AdminUser, PageQuery, SessionDep
from kai.api.schemas import Page
from kai.api.schemas.users import UserCreate, UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.get("")
def list_users_route(_admin: AdminUser, session: SessionDep, paging: PageQuery) -> Page[UserRead]:
    """All users, oldest first."""
    users, total = list_users(session, page=paging.page, page_size=paging.page_size)
    items = [UserRead.model_validate(user) for user in users]
    return Page(items=items, total=total, page=paging.page, page_size=paging.page_size)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_user_route(body: UserCreate, _admin: AdminUser, session: SessionDep) -> UserRead:
    """Add a user with a password and a role."""
    user = create_user(session, username=body.username, password=body.password, role=body.role)
    return UserRead.model_validate(user)


@router.get("/{user_id}")
def read_user(user_id: int, _admin: AdminUser, session: SessionDep) -> UserRead:
    """One user."""
    return UserRead.model_validate(get_user(session, user_id))


@router.patch("/{user_id}")
def update_user_route(
    user_id: int, body: UserUpdate, _admin: AdminUser, session: SessionDep
) -> UserRead:
    """Change a user's role or re-activate them; the last active admin stays an admin."""
    user = update_user(session, user_id, role=body.role, is_active=body.is_active)
    return UserRead.model_validate(user)


@router.delete("/{user_id}")
def delete_user(user_id: int, _admin: AdminUser, session: SessionDep) -> UserRead:
    """Deactivate a user: their tokens and sessions stop working; the record stays."""
    return UserRead.model_validate(update_user(session, user_id, is_active=False))
