"""The admin panel in Chromium against a real server: sign-in, upload, gallery, edits and jobs."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from .conftest import DatasetZip, SignIn, UploadedDataset

IMPORT_SECONDS_MS = 120_000


def test_sign_in_shows_the_error_for_a_wrong_password_then_the_datasets(
    page: Page, sign_in: SignIn, screenshot_dir: Path
) -> None:
    sign_in(page, password="not-the-password")
    expect(page.get_by_role("alert")).to_contain_text("password")
    expect(page.get_by_role("heading", name="Datasets")).to_have_count(0)
    page.screenshot(path=screenshot_dir / "01-sign-in-wrong-password.png")

    sign_in(page)
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.screenshot(path=screenshot_dir / "02-datasets-after-sign-in.png")


def test_session_survives_a_reload_and_sign_out_ends_it(page: Page, sign_in: SignIn) -> None:
    sign_in(page)
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()

    page.reload()
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_uploaded_zip_becomes_ready_with_classes_and_thumbnails(
    page: Page, sign_in: SignIn, dataset_zip: DatasetZip, screenshot_dir: Path
) -> None:
    archive = dataset_zip("floor-tiles")
    sign_in(page)
    page.get_by_role("button", name="Upload dataset").click()
    dialog = page.get_by_role("dialog", name="Upload a dataset")
    dialog.get_by_label("Archive or CSV").set_input_files(archive)
    dialog.get_by_label("Name").fill("Floor tiles")
    dialog.get_by_label("Description").fill("Porcelain and wood, uploaded in the browser")
    page.screenshot(path=screenshot_dir / "03-upload-dialog.png")
    dialog.get_by_role("button", name="Upload").click()

    expect(dialog.get_by_role("status")).to_contain_text("ready", timeout=IMPORT_SECONDS_MS)
    page.screenshot(path=screenshot_dir / "04-upload-finished.png")
    dialog.get_by_role("button", name="Done").click()

    row = page.get_by_role("row").filter(has_text="Floor tiles")
    expect(row).to_contain_text("ready")
    expect(row).to_contain_text("10")
    expect(row).to_contain_text("porcelain")
    expect(row).to_contain_text("wood")
    page.screenshot(path=screenshot_dir / "05-datasets-list.png")

    row.get_by_role("link", name="Floor tiles").click()
    expect(page.get_by_role("heading", name="Floor tiles")).to_be_visible()
    for label in ("porcelain", "wood"):
        expect(page.locator(f'.class-row[data-class="{label}"]')).to_contain_text("5")
    gallery = page.get_by_role("list", name="Samples")
    expect(gallery.get_by_role("img")).to_have_count(10)
    _expect_thumbnails_loaded(page)
    page.screenshot(path=screenshot_dir / "06-dataset-detail.png", full_page=True)

    page.get_by_label("Filter by class").select_option("wood")
    expect(gallery.get_by_role("img")).to_have_count(5)
    expect(gallery.locator('[data-label="porcelain"]')).to_have_count(0)


def test_relabelling_a_sample_makes_version_two_with_its_diff(
    page: Page,
    sign_in: SignIn,
    dataset_zip: DatasetZip,
    uploaded_dataset: UploadedDataset,
    screenshot_dir: Path,
) -> None:
    created = uploaded_dataset(dataset_zip("relabel"), "Relabel me")
    sign_in(page)
    page.goto(f"/#/datasets/{created['id']}")
    expect(page.get_by_role("heading", name="Relabel me")).to_be_visible()

    tile = page.locator('.tile[data-label="wood"]').first
    name = tile.get_by_role("img").get_attribute("alt")
    tile.get_by_role("checkbox").check()
    toolbar = page.get_by_role("toolbar", name="Edit selected samples")
    expect(toolbar).to_contain_text("1 sample selected")
    toolbar.get_by_label("New label").fill("porcelain")
    page.screenshot(path=screenshot_dir / "07-relabel-selected.png")
    toolbar.get_by_role("button", name="Relabel").click()

    expect(page.get_by_role("status")).to_contain_text("Version 2 created")
    versions = page.get_by_role("list", name="Versions")
    expect(versions.locator('[data-version="2"]')).to_be_visible()
    expect(page.locator('.class-row[data-class="porcelain"]')).to_contain_text("6")
    expect(page.locator('.class-row[data-class="wood"]')).to_contain_text("4")

    page.get_by_role("button", name="Compare").click()
    diff = page.get_by_test_id("version-diff")
    expect(diff).to_contain_text("Version 1 → 2: 1 change")
    expect(diff).to_contain_text("Relabelled 1")
    expect(diff).to_contain_text(f"{name}")
    expect(diff).to_contain_text("wood → porcelain")
    page.screenshot(path=screenshot_dir / "08-version-diff.png", full_page=True)


def test_jobs_page_shows_the_import_job_succeeded(
    page: Page,
    sign_in: SignIn,
    dataset_zip: DatasetZip,
    uploaded_dataset: UploadedDataset,
    screenshot_dir: Path,
) -> None:
    created = uploaded_dataset(dataset_zip("jobs"), "Followed import")
    sign_in(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    row = page.locator(f'tr[data-job-id="{created["jobId"]}"]')
    expect(row).to_contain_text("Dataset import")
    expect(row).to_contain_text("succeeded")
    page.screenshot(path=screenshot_dir / "09-jobs.png")

    row.get_by_role("link").click()
    expect(page.get_by_role("heading", name=f"Job #{created['jobId']}")).to_be_visible()
    expect(page.locator(".badge")).to_have_text("succeeded")
    events = page.get_by_role("list", name="Events")
    expect(events.locator(".event-completed")).to_have_count(1)
    page.screenshot(path=screenshot_dir / "10-job-detail.png", full_page=True)


def _expect_thumbnails_loaded(page: Page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('.gallery img')]"
        ".every((img) => img.complete && img.naturalWidth > 0)"
    )


def test_a_rejected_upload_explains_what_is_wrong(
    page: Page, sign_in: SignIn, tmp_path: Path, screenshot_dir: Path
) -> None:
    notes = tmp_path / "notes.pdf"
    notes.write_bytes(b"%PDF-1.4 not images\n")
    sign_in(page)
    page.get_by_role("button", name="Upload dataset").click()
    dialog = page.get_by_role("dialog", name="Upload a dataset")
    dialog.get_by_label("Archive or CSV").set_input_files(notes)
    dialog.get_by_label("Name").fill("Not a dataset")
    dialog.get_by_role("button", name="Upload").click()

    alert = dialog.get_by_role("alert")
    expect(alert).to_contain_text("notes.pdf")
    expect(alert).to_contain_text("neither a ZIP archive nor a CSV")
    expect(dialog.get_by_label("Name")).to_have_value("Not a dataset")
    page.screenshot(path=screenshot_dir / "11-upload-rejected.png")
