"""Everything the CLI shows or asks: Rich tables, messages, secrets and password prompts.

Results go to standard output; notices and errors go to standard error, so a
script can capture a command's result alone (``TOKEN=$(kai tokens create bob)``).
"""

from __future__ import annotations

import getpass
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from kai.db.tables import ApiToken, Job, JobEvent, User
from kai.errors import InvalidInput, KaiError


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def install_log_handler(level: str) -> None:
    """Send log records at ``level`` and above to standard error through Rich."""
    handler = RichHandler(console=_err(), show_path=False, rich_tracebacks=False)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def show_error(error: KaiError) -> None:
    """Print a domain error's message, without a traceback."""
    _err().print(f"[bold red]Error:[/] {error.message}", markup=True)


def show_notice(message: str) -> None:
    """Print a one-line notice to standard error."""
    _err().print(message, markup=False)


def show_initial_admin(username: str, password: str) -> None:
    """Show the generated admin password, once, on standard error."""
    console = _err()
    console.print(f"[bold]Created user [cyan]{username}[/] with a generated password:[/]")
    console.print(password, markup=False)
    console.print("Sign in and keep it safe; it is not shown again.")


def show_serving(host: str, port: int) -> None:
    """Say where the server listens."""
    _err().print(f"Kai serves on [bold]http://{host}:{port}[/] (API docs at /docs)")


def show_user(user: User, *, verb: str) -> None:
    """Say what happened to a user."""
    _out().print(f"{verb} user {user.username} ({user.role.value}, id {user.id})", markup=False)


def show_users(users: Sequence[User], total: int) -> None:
    """A table of users."""
    table = Table("id", "username", "role", "active", "created")
    for user in users:
        created = user.created_at.strftime("%Y-%m-%d %H:%M")
        table.add_row(str(user.id), user.username, user.role.value, _yes(user.is_active), created)
    _out().print(table)
    _err().print(f"{len(users)} of {total} users")


def show_new_token(token: ApiToken, username: str, secret: str) -> None:
    """Describe a new token on standard error, then print its secret alone on the last line."""
    label = f" {token.name!r}" if token.name else ""
    show_notice(f"Created token {token.id}{label} for {username}; it is shown only once:")
    print(secret, flush=True)


def show_tokens(tokens: Sequence[ApiToken]) -> None:
    """A table of tokens, never their secrets."""
    table = Table("id", "name", "created", "last used", "revoked")
    for token in tokens:
        last = token.last_used_at.strftime("%Y-%m-%d %H:%M") if token.last_used_at else "-"
        created = token.created_at.strftime("%Y-%m-%d %H:%M")
        table.add_row(str(token.id), token.name, created, last, _yes(token.revoked))
    _out().print(table)


def show_jobs(jobs: Sequence[Job], *, total: int, page: int) -> None:
    """A table of jobs."""
    table = Table("id", "type", "status", "progress", "attempts", "created")
    for job in jobs:
        table.add_row(
            str(job.id),
            job.type,
            job.state.value,
            f"{job.progress:.0%}",
            f"{job.attempts}/{job.max_attempts}",
            job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    _out().print(table)
    _err().print(f"Page {page}: {len(jobs)} of {total} jobs")


def show_job(job: Job, events: Sequence[JobEvent] = ()) -> None:
    """One job in detail, with its events when given."""
    console = _out()
    fields: dict[str, Any] = {
        "id": job.id,
        "type": job.type,
        "status": job.state.value,
        "progress": f"{job.progress:.0%}",
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "created": job.created_at.isoformat(),
        "started": job.started_at.isoformat() if job.started_at else "-",
        "finished": job.finished_at.isoformat() if job.finished_at else "-",
        "cancel requested": _yes(job.cancel_requested),
    }
    for name, value in fields.items():
        console.print(f"{name:>17}: {value}", markup=False)
    if job.error:
        console.print(f"{'error':>17}: {job.error}", markup=False)
    if job.result is not None:
        console.print(f"{'result':>17}: {json.dumps(job.result, default=str)}", markup=False)
    for event in events:
        payload = json.dumps(event.payload, default=str)
        console.print(f"  #{event.seq} {event.type} {payload}", markup=False)


def ask_new_password() -> str:
    """Ask for a new password twice: hidden on a terminal, two lines of standard input otherwise.

    Raises:
        InvalidInput: The two entries differ, or standard input ends early.
    """
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Repeat the password: ")
    else:
        first, second = _read_line(), _read_line()
    if first != second:
        raise InvalidInput("The two passwords differ; nothing was changed")
    return first


def _read_line() -> str:
    line = sys.stdin.readline()
    if not line:
        raise InvalidInput("Expected the password twice, one per line, on standard input")
    return line.rstrip("\r\n")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
