"""Walks every route of the app: none is open by accident, and viewers never change anything."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.support import Account
from kai.api.dependencies import READ_ONLY_MARK

pytestmark = pytest.mark.db

OPEN_ROUTES = {("GET", "/api/health"), ("POST", "/api/auth/login")}
DOCUMENTATION_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
SIGN_OUT = ("POST", "/api/auth/logout")


def http_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app answers, HEAD aside, path parameters filled with 1."""
    found = []
    for context in iter_route_contexts(app.routes):
        methods = getattr(context.original_route, "methods", None) or set()
        path = context.path
        if path is None:
            continue
        filled = re.sub(r"\{[^}]+\}", "1", path)
        found.extend((method, filled) for method in methods if method != "HEAD")
    return sorted(set(found))


def read_only_routes(app: FastAPI) -> set[tuple[str, str]]:
    """The unsafe-method routes marked as changing nothing, path parameters filled with 1."""
    marked = set()
    for context in iter_route_contexts(app.routes):
        extra = getattr(context.original_route, "openapi_extra", None) or {}
        if extra.get(READ_ONLY_MARK) and context.path is not None:
            methods = getattr(context.original_route, "methods", None) or set()
            filled = re.sub(r"\{[^}]+\}", "1", context.path)
            marked.update((method, filled) for method in methods)
    return marked


def websocket_paths(app: FastAPI) -> list[str]:
    return [
        context.path
        for context in iter_route_contexts(app.routes)
        if context.path and type(context.original_route).__name__.endswith("WebSocketRoute")
    ]


def test_walk_finds_the_core_routes(app: FastAPI) -> None:
    routes = http_routes(app)
    assert ("GET", "/api/admin/jobs/1/events") in routes
    assert ("POST", "/api/admin/users") in routes
    assert websocket_paths(app) == ["/ws/training"]


def test_only_documentation_lives_outside_api_and_ws(app: FastAPI) -> None:
    outside = {path for _method, path in http_routes(app) if not path.startswith(("/api", "/ws"))}
    assert outside <= DOCUMENTATION_PATHS


def test_anonymous_requests_are_refused_everywhere_but_health_and_login(
    app: FastAPI, client: TestClient
) -> None:
    checked = 0
    for method, path in http_routes(app):
        if (method, path) in OPEN_ROUTES or path in DOCUMENTATION_PATHS:
            continue
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_authenticated"
        checked += 1
    assert checked >= 12


def test_anonymous_websocket_is_refused(app: FastAPI, client: TestClient) -> None:
    for path in websocket_paths(app):
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(path):
            pass
        assert refused.value.code == 1008


def test_viewer_gets_403_on_every_unsafe_method(
    app: FastAPI, client: TestClient, viewer: Account
) -> None:
    checked = 0
    exempt = OPEN_ROUTES | {SIGN_OUT} | read_only_routes(app)
    for method, path in http_routes(app):
        if method not in UNSAFE_METHODS or (method, path) in exempt:
            continue
        response = client.request(method, path, headers=viewer.headers, json={})
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "permission_denied"
        checked += 1
    assert checked >= 5


def test_viewer_reads_jobs(client: TestClient, viewer: Account) -> None:
    response = client.get("/api/admin/jobs", headers=viewer.headers)
    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 0, "page": 1, "pageSize": 50}


def test_open_routes_answer_without_credentials(client: TestClient) -> None:
    assert client.get("/api/health").json()["status"] == "ok"
    refused = client.post("/api/auth/login", json={"username": "nobody", "password": "x"})
    assert refused.status_code == 401


def test_only_predictions_are_read_only_despite_their_method(app: FastAPI) -> None:
    assert read_only_routes(app) == {("POST", "/api/admin/models/1/predict")}


def test_viewer_may_ask_for_a_prediction(client: TestClient, viewer: Account) -> None:
    response = client.post("/api/admin/models/1/predict", headers=viewer.headers)

    assert response.status_code != 403, response.text
