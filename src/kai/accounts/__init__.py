"""Accounts: users with roles, API tokens and admin panel sessions."""

from kai.accounts.sessions import (
    SessionGrant,
    create_web_session,
    end_web_session,
    resolve_web_session,
)
from kai.accounts.tokens import (
    TokenGrant,
    create_token,
    list_tokens,
    resolve_token,
    revoke_token,
)
from kai.accounts.users import (
    ADMIN_USERNAME,
    authenticate,
    bootstrap_admin,
    create_user,
    get_user,
    get_user_by_username,
    list_users,
    role_allows,
    set_password,
    update_user,
)

__all__ = [
    "ADMIN_USERNAME",
    "SessionGrant",
    "TokenGrant",
    "authenticate",
    "bootstrap_admin",
    "create_token",
    "create_user",
    "create_web_session",
    "end_web_session",
    "get_user",
    "get_user_by_username",
    "list_tokens",
    "list_users",
    "resolve_token",
    "resolve_web_session",
    "revoke_token",
    "role_allows",
    "set_password",
    "update_user",
]
