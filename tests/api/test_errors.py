"""Every error answers in one shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import kai.api.app
from api.support import Account
from kai import errors
from kai.api.app import create_app
from kai.api.errors import status_for
from kai.runtime import Runtime

pytestmark = pytest.mark.db


def assert_error_shape(body: dict[str, object], code: str) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert error["message"]


def test_unknown_route_is_404_in_the_error_shape(client: TestClient) -> None:
    response = client.get("/api/admin/nothing-here")
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


def test_wrong_method_is_405_in_the_error_shape(client: TestClient) -> None:
    response = client.put("/api/health")
    assert response.status_code == 405
    assert_error_shape(response.json(), "method_not_allowed")


def test_missing_resource_is_404(client: TestClient, viewer: Account) -> None:
    response = client.get("/api/admin/jobs/4242", headers=viewer.headers)
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")
    assert "4242" in response.json()["error"]["message"]


def test_validation_errors_are_422_with_field_details(client: TestClient, admin: Account) -> None:
    response = client.post(
        "/api/admin/users", json={"username": "bob", "role": "boss"}, headers=admin.headers
    )
    assert response.status_code == 422
    body = response.json()
    assert_error_shape(body, "invalid_input")
    fields = {item["field"] for item in body["error"]["details"]["fields"]}
    assert fields == {"password", "role"}


def test_bad_query_parameter_is_422(client: TestClient, viewer: Account) -> None:
    response = client.get("/api/admin/jobs?pageSize=0", headers=viewer.headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["fields"][0]["field"] == "query.pageSize"


def test_an_unexpected_exception_is_500_internal_error(
    runtime: Runtime,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(kai.api.app, "WEB_DIST_DIR", tmp_path / "no-panel")
    app = create_app(runtime, start_workers=False)
    app.add_api_route("/api/explode", explode)
    with TestClient(app) as client:
        response = client.get("/api/explode")
    assert response.status_code == 500
    assert_error_shape(response.json(), "internal_error")
    assert "boom" not in response.text
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 1


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInput("x"), 422),
        (errors.UnsafeArchive("x"), 422),
        (errors.TooLarge("x"), 413),
        (errors.NotFound("x"), 404),
        (errors.Conflict("x"), 409),
        (errors.NotAuthenticated("x"), 401),
        (errors.PermissionDenied("x"), 403),
        (errors.CsrfFailed("x"), 403),
        (errors.InsufficientStorage("x"), 507),
    ],
)
def test_domain_errors_map_to_statuses(error: errors.KaiError, status: int) -> None:
    assert status_for(error) == status
