"""Admins manage users; the last active admin cannot be demoted or deactivated."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.support import Account

pytestmark = pytest.mark.db


def test_admin_creates_lists_and_reads_users(client: TestClient, admin: Account) -> None:
    body = {"username": "carol", "password": "carol-pass-1", "role": "editor"}
    created = client.post("/api/admin/users", json=body, headers=admin.headers)
    assert created.status_code == 201
    user = created.json()
    assert (user["username"], user["role"], user["isActive"]) == ("carol", "editor", True)
    assert user["createdAt"].endswith("Z")

    listed = client.get("/api/admin/users?page=1&pageSize=2", headers=admin.headers).json()
    assert listed["total"] == 3
    assert (listed["page"], listed["pageSize"], len(listed["items"])) == (1, 2, 2)
    read = client.get(f"/api/admin/users/{user['id']}", headers=admin.headers).json()
    assert read == user

    login = client.post("/api/auth/login", json={"username": "carol", "password": "carol-pass-1"})
    assert login.status_code == 200


def test_duplicate_name_weak_password_and_bad_name_are_refused(
    client: TestClient, admin: Account
) -> None:
    def create(username: str, password: str) -> tuple[int, str]:
        body = {"username": username, "password": password, "role": "viewer"}
        response = client.post("/api/admin/users", json=body, headers=admin.headers)
        return response.status_code, response.json()["error"]["code"]

    assert create(admin.username, "long-enough-1") == (409, "conflict")
    assert create("dave", "short") == (422, "invalid_input")
    assert create("../dave", "long-enough-1") == (422, "invalid_input")


def test_role_change_and_last_admin_protection(
    client: TestClient, admin: Account, editor: Account
) -> None:
    promoted = client.patch(
        f"/api/admin/users/{editor.user_id}", json={"role": "admin"}, headers=admin.headers
    )
    assert promoted.json()["role"] == "admin"
    assert client.get("/api/admin/users", headers=editor.headers).status_code == 200

    users = client.get("/api/admin/users", headers=admin.headers).json()["items"]
    for user in users:
        if user["username"] not in (admin.username,):
            client.delete(f"/api/admin/users/{user['id']}", headers=admin.headers)
    last = client.patch(
        f"/api/admin/users/{admin.user_id}", json={"role": "viewer"}, headers=admin.headers
    )
    assert last.status_code == 409
    assert (
        client.delete(f"/api/admin/users/{admin.user_id}", headers=admin.headers).status_code == 409
    )


def test_editors_cannot_manage_users(client: TestClient, editor: Account) -> None:
    response = client.get("/api/admin/users", headers=editor.headers)
    assert response.status_code == 403
    assert response.json()["error"]["details"]["requiredRole"] == "admin"
