"""Importing a model from a repository through the Models page's dialog, in Chromium.

An untrained ``test_efficientnet`` (a tiny timm architecture) is imported by
name, so the real import job builds it with fresh weights and needs no
network; a malformed id is refused by the API, and the dialog shows the
API's own message.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from .conftest import ApiSession, SignIn

# The import job runs in a sandboxed child process that imports torch and timm.
SLOW_JOB_MS = 180_000
ARCHITECTURE = "test_efficientnet"
DIALOG_NAME = "Import from a repository"


def _open_import_dialog(page: Page, sign_in: SignIn) -> Locator:
    sign_in(page)
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    page.get_by_role("button", name=DIALOG_NAME).click()
    dialog = page.get_by_role("dialog", name=DIALOG_NAME)
    expect(dialog).to_be_visible()
    return dialog


def _import_button(dialog: Locator) -> Locator:
    return dialog.get_by_role("button", name="Import", exact=True)


def test_an_untrained_architecture_imports_from_the_dialog_and_becomes_ready(
    page: Page, sign_in: SignIn, screenshot_dir: Path
) -> None:
    dialog = _open_import_dialog(page, sign_in)
    dialog.get_by_label("Repository", exact=True).select_option("architecture")
    model_id = dialog.get_by_label("Model id", exact=True)
    expect(model_id).to_have_accessible_description(
        "Such as resnet18. A timm or torchvision name, bare or as timm:NAME or torchvision:NAME. "
        "The model starts untrained, with fresh weights, and trains from scratch; "
        "no network needed."
    )
    model_id.fill(ARCHITECTURE)
    name = dialog.get_by_label("Name (optional)", exact=True)
    expect(name).to_have_attribute("placeholder", ARCHITECTURE)
    dialog.get_by_label("Description (optional)", exact=True).fill("Built by the browser tests")
    dialog.get_by_text("Advanced", exact=True).click()
    expect(dialog.get_by_label("Revision (optional)", exact=True)).to_have_count(0)
    dialog.get_by_label("Class names (optional)", exact=True).fill("porcelain, wood ,stone")
    page.screenshot(path=screenshot_dir / "models-10-repository-import-dialog.png")
    _import_button(dialog).click()

    expect(dialog).to_be_hidden()
    link = page.get_by_role("link", name=ARCHITECTURE, exact=True)
    row = page.get_by_role("row").filter(has=link)
    expect(row).to_have_count(1)
    expect(row.locator('[data-status="ready"]')).to_be_visible(timeout=SLOW_JOB_MS)
    expect(row).to_contain_text("Built by the browser tests")
    expect(row).to_contain_text("v1")
    # The new head has one output per class name given.
    expect(row.locator("td.numeric")).to_have_text("3")
    page.screenshot(path=screenshot_dir / "models-11-repository-import-listed.png")

    # The model's page says where the version came from: no weights to start with.
    link.click()
    provenance = page.locator('[data-provenance="untrained"]')
    expect(provenance).to_contain_text(f"built from the architecture {ARCHITECTURE}")
    expect(provenance).to_contain_text("training starts it from scratch")


def test_a_malformed_id_shows_the_apis_message_in_the_dialog(
    page: Page, sign_in: SignIn, api_session: ApiSession, screenshot_dir: Path
) -> None:
    refused = api_session.client.post(
        "/api/admin/models/import/repository",
        data={"repository": "architecture", "modelId": "keras:resnet18"},
        headers={"X-CSRF-Token": api_session.csrf_token},
    )
    assert 400 <= refused.status_code < 500, refused.text
    message = refused.json()["error"]["message"]
    assert "keras:resnet18" in message

    dialog = _open_import_dialog(page, sign_in)
    expect(dialog.get_by_label("Model id", exact=True)).to_have_accessible_description(
        "Such as timm/resnet18.a1_in1k. ORG/NAME, in timm's or transformers' layout. "
        "Without a network, Kai reads huggingface_hub's local cache."
    )
    dialog.get_by_text("Advanced", exact=True).click()
    expect(dialog.get_by_label("Revision (optional)", exact=True)).to_be_visible()
    page.screenshot(path=screenshot_dir / "models-12-repository-import-advanced.png")
    dialog.get_by_label("Repository", exact=True).select_option("architecture")
    expect(dialog.get_by_label("Revision (optional)", exact=True)).to_have_count(0)
    dialog.get_by_label("Model id", exact=True).fill("keras:resnet18")
    _import_button(dialog).click()

    expect(dialog.get_by_role("alert")).to_have_text(message)
    expect(_import_button(dialog)).to_be_enabled()
    page.screenshot(path=screenshot_dir / "models-13-repository-import-refused.png")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    models = api_session.client.get("/api/admin/models", params={"pageSize": 100}).json()
    assert all(model["name"] != "keras:resnet18" for model in models["items"])
