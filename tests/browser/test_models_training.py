"""Models, training and quality in Chromium against a real server.

A tiny timm model is uploaded through the dialog, trained for one epoch on a
two-class dataset from the training form, and the dataset page shows the
quality report that every import produces.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from .conftest import TINY_ARCHITECTURE, DatasetZip, SignIn, UploadedDataset

# Model import and training run in sandboxed child processes that import torch.
SLOW_JOB_MS = 180_000
ARCHITECTURE = TINY_ARCHITECTURE


def _nav(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def _upload_model(page: Page, model_file: Path, name: str, screenshot_dir: Path) -> None:
    _nav(page, "Models").click()
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    page.get_by_role("button", name="Upload model").first.click()
    dialog = page.get_by_role("dialog", name="Upload a model")
    dialog.get_by_label("Model file").set_input_files(model_file)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Framework").select_option("pytorch")
    dialog.get_by_label("Architecture").fill(ARCHITECTURE)
    page.screenshot(path=screenshot_dir / "models-01-upload-dialog.png")
    dialog.get_by_role("button", name="Upload").click()
    expect(dialog.get_by_role("status")).to_contain_text("model is ready", timeout=SLOW_JOB_MS)
    page.screenshot(path=screenshot_dir / "models-02-upload-finished.png")
    dialog.get_by_role("button", name="Open model").click()


def test_uploaded_model_is_listed_and_trains_on_a_dataset(
    page: Page,
    sign_in: SignIn,
    tiny_model_file: Path,
    dataset_zip: DatasetZip,
    uploaded_dataset: UploadedDataset,
    screenshot_dir: Path,
) -> None:
    uploaded_dataset(dataset_zip("training-tiles"), "Training tiles")
    sign_in(page)
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()
    _upload_model(page, tiny_model_file, "Tiny tile classifier", screenshot_dir)

    expect(page.get_by_role("heading", name="Tiny tile classifier")).to_be_visible()
    versions = page.get_by_role("table", name="Model versions")
    expect(versions.locator('tr[data-version="1"]')).to_contain_text("uploaded")
    expect(page.locator(".facts")).to_contain_text(ARCHITECTURE)
    expect(page.locator(".model-card")).to_contain_text("Provenance")
    page.screenshot(path=screenshot_dir / "models-03-model-detail.png", full_page=True)

    _nav(page, "Models").click()
    row = page.get_by_role("row").filter(has_text="Tiny tile classifier")
    expect(row).to_contain_text("ready")
    expect(row).to_contain_text("v1")
    expect(row).to_contain_text(ARCHITECTURE)
    page.screenshot(path=screenshot_dir / "models-04-list.png")

    _nav(page, "Datasets").click()
    page.get_by_role("link", name="Training tiles").click()
    page.get_by_role("button", name="Train").click()
    form = page.get_by_role("dialog", name="Train a model")
    form.get_by_label("Model", exact=True).select_option(label="Tiny tile classifier")
    form.get_by_label("Epochs", exact=True).fill("1")
    form.get_by_label("Batch size", exact=True).fill("4")
    page.screenshot(path=screenshot_dir / "models-05-train-form.png")
    form.get_by_role("button", name="Start training").click()

    expect(page.get_by_role("heading", name="Job #")).to_be_visible()
    status = page.locator(".card .badge").first
    expect(status).to_have_text("succeeded", timeout=SLOW_JOB_MS)
    epochs = page.get_by_role("table", name="Metrics per epoch")
    expect(epochs.locator("tbody tr")).to_have_count(1)
    expect(epochs.locator("tbody tr").first.locator("td").first).to_have_text("1")
    expect(page.get_by_role("img", name="Loss per epoch")).to_be_visible()
    page.screenshot(path=screenshot_dir / "models-06-training-job.png", full_page=True)

    page.get_by_role("link", name="Open the model").click()
    trained = page.get_by_role("table", name="Model versions").locator('tr[data-version="2"]')
    expect(trained).to_contain_text("trained by")
    expect(trained).to_contain_text("v1")
    page.screenshot(path=screenshot_dir / "models-07-trained-version.png", full_page=True)


def test_a_search_started_from_the_panel_lists_its_trials(
    page: Page,
    sign_in: SignIn,
    tiny_model_file: Path,
    dataset_zip: DatasetZip,
    uploaded_dataset: UploadedDataset,
    screenshot_dir: Path,
) -> None:
    uploaded_dataset(dataset_zip("search-tiles"), "Search tiles")
    sign_in(page)
    _upload_model(page, tiny_model_file, "Searched classifier", screenshot_dir)

    _nav(page, "Datasets").click()
    page.get_by_role("link", name="Search tiles").click()
    page.get_by_role("button", name="Train").click()
    form = page.get_by_role("dialog", name="Train a model")
    form.get_by_label("Model", exact=True).select_option(label="Searched classifier")
    form.get_by_label("Epochs", exact=True).fill("1")
    form.get_by_label("Batch size", exact=True).fill("4")
    expect(form.get_by_label("Search trials")).to_have_count(0)
    form.get_by_label("Search the hyperparameters").check()
    form.get_by_label("Search trials").fill("2")
    expect(form.get_by_label("Trials at once")).to_have_value("1")
    page.screenshot(path=screenshot_dir / "models-08-search-form.png")
    form.get_by_role("button", name="Start training").click()

    expect(page.get_by_role("heading", name="Job #")).to_be_visible()
    expect(page.locator(".card .badge").first).to_have_text("succeeded", timeout=SLOW_JOB_MS)
    trials = page.get_by_role("table", name="Search trials").locator("tbody tr")
    expect(trials).to_have_count(2)
    for row in (trials.nth(0), trials.nth(1)):
        expect(row.locator("td").nth(1)).to_have_text(re.compile(r"complete|pruned|diverged"))
    expect(trials.first.locator("td").nth(3)).to_contain_text("learning_rate")
    page.screenshot(path=screenshot_dir / "models-09-search-job.png", full_page=True)


def test_dataset_page_shows_the_quality_score_after_import(
    page: Page,
    sign_in: SignIn,
    dataset_zip: DatasetZip,
    uploaded_dataset: UploadedDataset,
    screenshot_dir: Path,
) -> None:
    created = uploaded_dataset(dataset_zip("quality-tiles"), "Quality tiles")
    sign_in(page)
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()
    page.goto(f"/#/datasets/{created['id']}")

    score = page.get_by_test_id("quality-score")
    expect(score).to_have_text(re.compile(r"^\d+(\.\d)?$"), timeout=SLOW_JOB_MS)
    assert 0.0 <= float(score.inner_text()) <= 100.0
    expect(page.get_by_role("table", name="Score breakdown")).to_be_visible()
    page.screenshot(path=screenshot_dir / "quality-01-dataset.png", full_page=True)


def test_the_bundled_pretrained_model_is_one_click_away(
    page: Page, sign_in: SignIn, screenshot_dir: Path
) -> None:
    sign_in(page)
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()
    _nav(page, "Models").click()
    page.get_by_role("button", name="Add pretrained EfficientNet-Lite0").click()

    row = page.get_by_role("row").filter(has_text="EfficientNet-Lite0")
    expect(row).to_contain_text("ready", timeout=SLOW_JOB_MS)
    expect(row).to_contain_text("efficientnet_lite0")
    expect(row).to_contain_text("1,000")
    page.screenshot(path=screenshot_dir / "models-08-bundled-lite0.png")
