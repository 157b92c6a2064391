"""``kai users``: create, list and reset users on the server's database."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.orm import Session

from kai.accounts import create_user, get_user_by_username, list_users, set_password
from kai.cli import _presentation
from kai.cli._context import open_runtime
from kai.db.tables import Role, User
from kai.errors import NotFound

app = typer.Typer(help="Manage users.", no_args_is_help=True)


@app.command("create")
def create_user_command(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The new user's name")],
    role: Annotated[Role, typer.Option(help="What the user may do")] = Role.VIEWER,
) -> None:
    """Create a user; asks for the password twice (two lines of stdin when not a terminal)."""
    password = _presentation.ask_new_password()
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        user = create_user(session, username=username, password=password, role=role)
    _presentation.show_user(user, verb="Created")


@app.command("list")
def list_users_command(
    ctx: typer.Context,
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=500)] = 100,
) -> None:
    """List users."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        users, total = list_users(session, page=page, page_size=page_size)
    _presentation.show_users(users, total)


@app.command("set-password")
def set_password_command(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose password to replace")],
) -> None:
    """Replace a user's password; asks for it twice like ``create``."""
    password = _presentation.ask_new_password()
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        user = set_password(session, find_user(session, username).id, password)
    _presentation.show_user(user, verb="Changed the password of")


def find_user(session: Session, username: str) -> User:
    """The user named ``username``.

    Raises:
        NotFound: No such user.
    """
    user = get_user_by_username(session, username)
    if user is None:
        raise NotFound(f"No user named {username!r}; see 'kai users list'")
    return user
