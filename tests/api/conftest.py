"""Fixtures for API tests: an app on the test's database, clients and signed-in users."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

import kai.security.auth
from api.support import ADMIN_PASSWORD, USER_PASSWORD, Account
from kai.accounts import create_token, create_user
from kai.api.app import create_app
from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import Role
from kai.jobs.dispatch import PollingDispatcher
from kai.jobs.registry import JobRegistry
from kai.runtime import Runtime
from kai.storage.blobs import LocalBlobStore


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real Argon2id, with the cost turned down so the suite stays fast on two cores."""
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(kai.security.auth, "_hasher", lambda: cheap)
    monkeypatch.setattr(kai.security.auth, "_dummy_hash", lambda: cheap.hash("dummy-password"))


@pytest.fixture
def runtime(settings: Settings, database: Database, blobs: LocalBlobStore) -> Runtime:
    """A runtime on the test's migrated database; the first admin's password is known."""
    settings.admin_password = SecretStr(ADMIN_PASSWORD)
    return Runtime(
        settings=settings,
        db=database,
        blobs=blobs,
        dispatcher=PollingDispatcher(),
        registry=JobRegistry(),
    )


@pytest.fixture
def app(runtime: Runtime) -> FastAPI:
    """The API without local worker processes."""
    return create_app(runtime, start_workers=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client with the app's lifespan running."""
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def make_account(runtime: Runtime, client: TestClient) -> Callable[[Role], Account]:
    """Creates a user of a role with a bearer token."""
    del client  # The lifespan must have migrated and bootstrapped first.
    counter = iter(range(1, 1000))

    def make(role: Role) -> Account:
        username = f"{role.value}{next(counter)}"
        with runtime.db.session() as session:
            user = create_user(session, username=username, password=USER_PASSWORD, role=role)
            grant = create_token(session, user, name="test")
        return Account(user.id, username, role, grant.secret)

    return make


@pytest.fixture
def admin(make_account: Callable[[Role], Account]) -> Account:
    return make_account(Role.ADMIN)


@pytest.fixture
def editor(make_account: Callable[[Role], Account]) -> Account:
    return make_account(Role.EDITOR)


@pytest.fixture
def viewer(make_account: Callable[[Role], Account]) -> Account:
    return make_account(Role.VIEWER)
