"""The app factory: first admin, the admin panel's files with SPA fallback, the API docs."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import kai.api.app
from api.support import ADMIN_PASSWORD
from kai.api.app import INITIAL_ADMIN_FILENAME, create_app
from kai.jobs.registry import JobRegistry
from kai.runtime import Runtime

pytestmark = pytest.mark.db


def fresh(runtime: Runtime) -> Runtime:
    """The same runtime with an empty registry: every app registers Kai's job kinds once."""
    return replace(runtime, registry=JobRegistry())


@pytest.fixture
def panel_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<html>kai panel</html>")
    (dist / "assets" / "app.js").write_text("console.log('kai')")
    monkeypatch.setattr(kai.api.app, "WEB_DIST_DIR", dist)
    return dist


def test_first_start_generates_the_admin_password_once(runtime: Runtime) -> None:
    runtime.settings.admin_password = None
    with TestClient(create_app(fresh(runtime), start_workers=False)) as client:
        note = runtime.settings.resolved_data_dir / INITIAL_ADMIN_FILENAME
        password = note.read_text().strip()
        assert stat.S_IMODE(note.stat().st_mode) == 0o600
        response = client.post("/api/auth/login", json={"username": "admin", "password": password})
        assert response.status_code == 200
    note.unlink()
    with TestClient(create_app(fresh(runtime), start_workers=False)):
        assert not note.exists()


def test_admin_password_comes_from_settings(client: TestClient, runtime: Runtime) -> None:
    login = {"username": "admin", "password": ADMIN_PASSWORD}
    assert client.post("/api/auth/login", json=login).status_code == 200
    assert not (runtime.settings.resolved_data_dir / INITIAL_ADMIN_FILENAME).exists()


def test_panel_files_and_spa_fallback(runtime: Runtime, panel_dir: Path) -> None:
    with TestClient(create_app(fresh(runtime), start_workers=False)) as client:
        assert "kai panel" in client.get("/").text
        assert "kai panel" in client.get("/datasets/3/versions").text
        assert client.get("/assets/app.js").text == "console.log('kai')"
        missing_asset = client.get("/assets/missing.js")
        unknown_api = client.get("/api/unknown")
        assert client.get("/api/health").json()["status"] == "ok"
    assert missing_asset.status_code == 404
    assert unknown_api.status_code == 404
    assert unknown_api.json()["error"]["code"] == "not_found"


def test_openapi_documents_the_routes_in_camel_case(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/admin/jobs/{job_id}/events" in schema["paths"]
    assert "pageSize" in schema["components"]["schemas"]["Page_JobRead_"]["properties"]
