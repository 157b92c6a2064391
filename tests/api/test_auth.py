"""Signing in by cookie or bearer token, CSRF on cookie requests, revocation and expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.support import ADMIN_PASSWORD, USER_PASSWORD, Account, login
from kai.db.tables import WebSession, utcnow
from kai.runtime import Runtime

pytestmark = pytest.mark.db


def test_login_sets_a_strict_http_only_session_cookie(client: TestClient) -> None:
    response = client.post(
        "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["username"] == "admin"
    assert body["user"]["role"] == "admin"
    assert "passwordHash" not in body["user"]
    session_cookie = next(
        line for line in response.headers.get_list("set-cookie") if line.startswith("kai_session=")
    )
    assert "HttpOnly" in session_cookie
    assert "SameSite=strict" in session_cookie
    assert "Path=/" in session_cookie
    assert "Secure" not in session_cookie
    assert response.cookies["kai_csrf"] == body["csrfToken"]


def test_login_over_https_marks_the_cookie_secure(app: FastAPI) -> None:
    with TestClient(app, base_url="https://testserver") as client:
        response = client.post(
            "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
    assert all("Secure" in line for line in response.headers.get_list("set-cookie"))


def test_unknown_user_and_wrong_password_get_the_same_answer(client: TestClient) -> None:
    wrong = client.post("/api/auth/login", json={"username": "admin", "password": "nope-nope"})
    unknown = client.post("/api/auth/login", json={"username": "ghost", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "kai_session" not in wrong.cookies


def test_me_and_logout_follow_the_session(client: TestClient) -> None:
    assert client.get("/api/auth/me").status_code == 401
    csrf = login(client, "admin", ADMIN_PASSWORD)
    me = client.get("/api/auth/me").json()
    assert me["user"]["username"] == "admin"
    assert me["csrfToken"] == csrf

    refused = client.post("/api/auth/logout")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"

    assert client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/auth/me").status_code == 401


def test_cookie_requests_that_change_things_need_the_csrf_token(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    assert client.get("/api/admin/tokens").status_code == 200

    missing = client.post("/api/admin/tokens", json={"name": "a"})
    wrong = client.post("/api/admin/tokens", json={"name": "a"}, headers={"X-CSRF-Token": "x"})
    right = client.post("/api/admin/tokens", json={"name": "a"}, headers={"X-CSRF-Token": csrf})

    assert missing.status_code == wrong.status_code == 403
    assert missing.json()["error"]["code"] == wrong.json()["error"]["code"] == "csrf_failed"
    assert right.status_code == 201
    listed = client.get("/api/admin/tokens").json()
    assert [token["name"] for token in listed] == ["a"]


def test_bearer_token_needs_no_csrf(client: TestClient, editor: Account) -> None:
    me = client.get("/api/auth/me", headers=editor.headers).json()
    assert me == {"user": me["user"], "csrfToken": None}
    assert me["user"]["username"] == editor.username
    created = client.post("/api/admin/tokens", json={"name": "ci"}, headers=editor.headers)
    assert created.status_code == 201
    assert created.json()["secret"].startswith("kai_")


def test_revoked_token_is_refused(client: TestClient, editor: Account) -> None:
    created = client.post("/api/admin/tokens", json={"name": "short"}, headers=editor.headers)
    token = created.json()
    headers = {"Authorization": f"Bearer {token['secret']}"}
    assert client.get("/api/auth/me", headers=headers).status_code == 200

    revoked = client.delete(f"/api/admin/tokens/{token['token']['id']}", headers=editor.headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked"] is True

    refused = client.get("/api/auth/me", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "not_authenticated"
    assert client.get("/api/auth/me", headers=editor.headers).status_code == 200


def test_unknown_or_malformed_credentials_are_refused(client: TestClient) -> None:
    for value in ("Bearer kai_unknown", "Bearer something", "Basic YTpi", "Bearer "):
        response = client.get("/api/admin/jobs", headers={"Authorization": value})
        assert response.status_code == 401, value
        assert response.headers["www-authenticate"] == "Bearer"
    client.cookies.set("kai_session", "forged")
    assert client.get("/api/admin/jobs").status_code == 401


def test_expired_session_is_refused(client: TestClient, runtime: Runtime) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    assert client.get("/api/auth/me").status_code == 200
    with runtime.db.session() as session:
        session.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/api/auth/me").status_code == 401


def test_deactivated_user_loses_token_and_session(
    client: TestClient, admin: Account, editor: Account
) -> None:
    with TestClient(client.app) as editor_browser:
        login(editor_browser, editor.username, USER_PASSWORD)
        response = client.delete(f"/api/admin/users/{editor.user_id}", headers=admin.headers)
        assert response.json()["isActive"] is False
        assert editor_browser.get("/api/auth/me").status_code == 401
    assert client.get("/api/auth/me", headers=editor.headers).status_code == 401
    relogin = client.post(
        "/api/auth/login", json={"username": editor.username, "password": USER_PASSWORD}
    )
    assert relogin.status_code == 401
