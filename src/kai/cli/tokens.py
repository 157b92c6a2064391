"""``kai tokens``: issue, list and revoke a user's API tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from kai.accounts import create_token, list_tokens, revoke_token
from kai.cli import _presentation
from kai.cli._context import open_runtime
from kai.cli.users import find_user

app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)


@app.command("create")
def create_token_command(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Who the token signs in as")],
    name: Annotated[str, typer.Option(help="A label to recognise the token by")] = "",
) -> None:
    """Issue an API token; it is printed once, alone on the last line."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        grant = create_token(session, find_user(session, username), name=name)
    _presentation.show_new_token(grant.token, username, grant.secret)


@app.command("list")
def list_tokens_command(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose tokens to list")],
) -> None:
    """List a user's tokens (never their secrets)."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        tokens = list_tokens(session, find_user(session, username).id)
    _presentation.show_tokens(tokens)


@app.command("revoke")
def revoke_token_command(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The token's owner")],
    token_id: Annotated[int, typer.Argument(help="The token's id, from 'kai tokens list'")],
) -> None:
    """Revoke a token: it stops working at once."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        revoke_token(session, find_user(session, username).id, token_id)
    _presentation.show_notice(f"Revoked token {token_id} of {username}")
