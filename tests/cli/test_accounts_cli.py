"""``kai users`` and ``kai tokens`` on a stopped server's data dir, then used against the app."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from kai.api.app import create_app, create_default_runtime
from kai.cli.main import app
from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import JobState
from kai.jobs.records import submit_job

pytestmark = pytest.mark.db


def kai(settings: Settings, args: Sequence[str], stdin: str = "") -> Result:
    """Run the CLI on the test's data dir and database."""
    root = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        root += ["--database-url", settings.database_url]
    return CliRunner().invoke(app, [*root, *args], input=stdin)


def test_create_user_reads_the_password_twice_from_stdin(
    settings: Settings, database: Database
) -> None:
    created = kai(settings, ["users", "create", "alice", "--role", "editor"], "pw-alice-1\n" * 2)
    assert created.exit_code == 0, created.output
    assert "alice" in created.stdout
    listed = kai(settings, ["users", "list"])
    assert "alice" in listed.stdout and "editor" in listed.stdout


def test_mismatched_passwords_fail_without_a_traceback(
    settings: Settings, database: Database
) -> None:
    result = kai(settings, ["users", "create", "bob"], "pw-bob-111\npw-bob-222\n")
    assert result.exit_code == 1
    assert "differ" in result.stderr
    assert "Traceback" not in result.output
    assert "bob" not in kai(settings, ["users", "list"]).stdout


def test_too_short_password_and_unknown_user_are_errors(
    settings: Settings, database: Database
) -> None:
    short = kai(settings, ["users", "create", "carl"], "short\nshort\n")
    assert short.exit_code == 1
    assert "too short" in short.stderr
    missing = kai(settings, ["tokens", "create", "nobody"])
    assert missing.exit_code == 1
    assert "nobody" in missing.stderr


def test_token_is_printed_alone_on_the_last_line_and_signs_in(
    settings: Settings, database: Database
) -> None:
    kai(settings, ["users", "create", "dora", "--role", "viewer"], "pw-dora-11\n" * 2)
    result = kai(settings, ["tokens", "create", "dora", "--name", "laptop"])
    assert result.exit_code == 0, result.output
    token = result.stdout.rstrip("\n").splitlines()[-1]
    assert token.startswith("kai_") and " " not in token
    assert token not in result.stderr

    runtime = create_default_runtime(settings)
    try:
        with TestClient(create_app(runtime, start_workers=False)) as client:
            me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    finally:
        runtime.db.dispose()
    assert me.status_code == 200
    assert me.json()["user"]["username"] == "dora"

    revoked = kai(settings, ["tokens", "revoke", "dora", "1"])
    assert revoked.exit_code == 0, revoked.output
    listed = kai(settings, ["tokens", "list", "dora"])
    assert "laptop" in listed.stdout and "yes" in listed.stdout


def test_jobs_list_show_and_cancel(settings: Settings, database: Database) -> None:
    with database.session() as session:
        job_id = submit_job(session, job_type="test.cli", config={}).id
    assert "test.cli" in kai(settings, ["jobs", "list", "--status", "queued"]).stdout
    shown = kai(settings, ["jobs", "show", str(job_id), "--events"])
    assert "queued" in shown.stdout
    cancelled = kai(settings, ["jobs", "cancel", str(job_id)])
    assert cancelled.exit_code == 0, cancelled.output
    assert JobState.CANCELLED.value in cancelled.stdout
    again = kai(settings, ["jobs", "cancel", str(job_id)])
    assert again.exit_code == 1
    missing = kai(settings, ["jobs", "show", "999"])
    assert missing.exit_code == 1
    assert "999" in missing.stderr
