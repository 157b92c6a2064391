"""Fixtures for CLI tests: cheap but real password hashing."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

import kai.security.auth


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real Argon2id, with the cost turned down so the suite stays fast on two cores."""
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(kai.security.auth, "_hasher", lambda: cheap)
    monkeypatch.setattr(kai.security.auth, "_dummy_hash", lambda: cheap.hash("dummy-password"))
