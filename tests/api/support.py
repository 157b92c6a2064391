"""Helpers shared by the API tests."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.testclient import TestClient

from kai.db.tables import Role

ADMIN_PASSWORD = "admin-pass-123"
USER_PASSWORD = "user-pass-123"


@dataclass(frozen=True)
class Account:
    """A user made for a test, with a bearer token."""

    user_id: int
    username: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def login(client: TestClient, username: str, password: str) -> str:
    """Sign the client in by cookie; returns the session's CSRF token."""
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    csrf_token: str = response.json()["csrfToken"]
    return csrf_token
