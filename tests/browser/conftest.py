"""Fixtures of the browser tests: a real Kai server, Debian's Chromium, and small datasets.

The server is the real app under uvicorn with its local workers, on a free
port and a fresh data dir. Chromium is ``/usr/bin/chromium`` driven by
Playwright; no browser is ever downloaded. Screenshots go to
``KAI_BROWSER_SCREENSHOTS`` when it is set, otherwise to a temporary folder.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import pytest
from PIL import Image
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "browser-test-password"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
PANEL_INDEX = Path(__file__).resolve().parents[2] / "src" / "kai" / "web" / "dist" / "index.html"
STARTUP_SECONDS = 60.0

BROWSER_TESTS_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``browser``."""
    for item in items:
        if BROWSER_TESTS_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@dataclass(frozen=True)
class KaiServer:
    """A running ``kai serve`` equivalent."""

    base_url: str
    data_dir: Path
    log_path: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"kai serve exited early:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"kai serve did not answer /api/health:\n{log_path.read_text(errors='replace')}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def kai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KaiServer]:
    """The real server on a free port, with a fresh data dir and a known admin password."""
    if not PANEL_INDEX.is_file():
        pytest.fail(
            "The admin panel is not built; run `make web` (or npm ci && npm run build in web/)"
        )
    root = tmp_path_factory.mktemp("kai-server")
    data_dir = root / "data"
    log_path = root / "server.log"
    port = _free_port()
    env = {
        **os.environ,
        "KAI_DATA_DIR": str(data_dir),
        "KAI_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "KAI_POLL_SECONDS": "0.2",
    }
    env.pop("KAI_DATABASE_URL", None)
    env.pop("KAI_BROKER_URL", None)
    env.pop("KAI_STORAGE_URL", None)
    command = [
        sys.executable, "-m", "uvicorn", "kai.api.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(base_url, process, log_path)
        yield KaiServer(base_url=base_url, data_dir=data_dir, log_path=log_path)
    finally:
        _stop(process)


# Module scope: the sync API keeps an event loop running in the main thread while it
# lives, which would break later tests that start their own loop with asyncio.run.
@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Playwright]:
    """Playwright's driver for one test module."""
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; install Debian's chromium package (make browser-deps)")
    browser = playwright_instance.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser, kai_server: KaiServer) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) at the panel's size."""
    context = browser.new_context(base_url=kai_server.base_url, viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab in the fresh profile, failing the test on any uncaught script error.

    Errors are collected and checked after the test: failing inside Playwright's
    event callback would tear down its connection and hide the message.
    """
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack or ''}"))
    yield page
    assert not errors, "Uncaught errors in the panel:\n" + "\n".join(errors)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests keep their screenshots."""
    configured = os.environ.get("KAI_BROWSER_SCREENSHOTS")
    if not configured:
        return tmp_path_factory.mktemp("screenshots")
    path = Path(configured)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class SignIn(Protocol):
    """Signs in through the form, as the admin with the right password unless told otherwise."""

    def __call__(self, page: Page, password: str = ...) -> None: ...


@pytest.fixture
def sign_in() -> SignIn:
    """Signing in through the form."""

    def sign_in(page: Page, password: str = ADMIN_PASSWORD) -> None:
        page.goto("/")
        page.get_by_label("Username").fill(ADMIN_USERNAME)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()

    return sign_in


def _image_bytes(rng: random.Random, base: tuple[int, int, int], size_px: int = 32) -> bytes:
    image = Image.new("RGB", (size_px, size_px), base)
    pixels = image.load()
    assert pixels is not None
    for _ in range(size_px * 4):
        x, y = rng.randrange(size_px), rng.randrange(size_px)
        pixels[x, y] = tuple(min(255, max(0, c + rng.randint(-60, 60))) for c in base)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


CLASS_COLOURS = {"porcelain": (226, 222, 210), "wood": (133, 94, 58)}


def _write_dataset_zip(path: Path, *, per_class: int, seed: int) -> Path:
    rng = random.Random(seed)
    with zipfile.ZipFile(path, "w") as archive:
        for label, colour in CLASS_COLOURS.items():
            for index in range(per_class):
                archive.writestr(f"{label}/{label}-{index}.png", _image_bytes(rng, colour))
    return path


DatasetZip = Callable[[str], Path]


@pytest.fixture
def dataset_zip(tmp_path: Path) -> DatasetZip:
    """Makes a ZIP named NAME.zip with folders porcelain/ and wood/ of five distinct PNGs each."""
    seeds = iter(range(1000))

    def make(name: str) -> Path:
        return _write_dataset_zip(tmp_path / f"{name}.zip", per_class=5, seed=next(seeds))

    return make


@dataclass(frozen=True)
class ApiSession:
    """An httpx client signed in with the session cookie, and its CSRF token."""

    client: httpx.Client
    csrf_token: str


@pytest.fixture
def api_session(kai_server: KaiServer) -> Iterator[ApiSession]:
    """The API signed in as the admin, for setting up data without the UI."""
    with httpx.Client(base_url=kai_server.base_url, timeout=30.0) as client:
        answer = client.post(
            "/api/auth/login", json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
        )
        answer.raise_for_status()
        yield ApiSession(client, answer.json()["csrfToken"])


UploadedDataset = Callable[[Path, str], dict[str, int]]


@pytest.fixture
def uploaded_dataset(api_session: ApiSession) -> UploadedDataset:
    """Uploads an archive through the API and waits for its import; gives ``{id, jobId}``."""
    return lambda archive, name: _upload_dataset(api_session, archive, name)


def _upload_dataset(api: ApiSession, archive: Path, name: str) -> dict[str, int]:
    with archive.open("rb") as file:
        answer = api.client.post(
            "/api/admin/datasets/upload",
            files={"file": (archive.name, file, "application/zip")},
            data={"name": name, "description": "Made by the browser tests"},
            headers={"X-CSRF-Token": api.csrf_token},
        )
    assert answer.status_code < 300, answer.text
    created: dict[str, int] = answer.json()
    _wait_for_import(api, created["jobId"], deadline_seconds=120)
    return created


def _wait_for_import(api: ApiSession, job_id: int, *, deadline_seconds: float) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        job = api.client.get(f"/api/admin/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            return
        time.sleep(0.3)
    pytest.fail(f"The import job {job_id} did not finish")


TINY_ARCHITECTURE = "test_efficientnet"

# Written in a child process, so torch's threads never share the process that drives the browser.
_WRITE_MODEL = """
import sys
import timm
from safetensors.torch import save_file
model = timm.create_model(sys.argv[1], pretrained=False, num_classes=2)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[2])
"""


@pytest.fixture
def tiny_model_file(tmp_path: Path) -> Path:
    """A two-class ``test_efficientnet`` state dict as safetensors."""
    path = tmp_path / "tiny-efficientnet.safetensors"
    command = [sys.executable, "-c", _WRITE_MODEL, TINY_ARCHITECTURE, str(path)]
    subprocess.run(command, check=True, timeout=120)
    return path


UploadedModel = Callable[[str], dict[str, int]]


@pytest.fixture
def uploaded_model(api_session: ApiSession, tiny_model_file: Path) -> UploadedModel:
    """Uploads the tiny model under a name through the API and waits for its import."""
    return lambda name: _upload_model(api_session, tiny_model_file, name)


def _upload_model(api: ApiSession, model_file: Path, name: str) -> dict[str, int]:
    with model_file.open("rb") as file:
        answer = api.client.post(
            "/api/admin/models/upload",
            files={"file": (model_file.name, file, "application/octet-stream")},
            data={"name": name, "framework": "pytorch", "architecture": TINY_ARCHITECTURE},
            headers={"X-CSRF-Token": api.csrf_token},
        )
    assert answer.status_code < 300, answer.text
    created: dict[str, int] = answer.json()
    # The import inspects the model in a sandboxed child process that imports torch.
    _wait_for_import(api, created["jobId"], deadline_seconds=180)
    return created
