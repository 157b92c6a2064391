"""The training dialog's mode and advanced options, in Chromium against a real server.

The options chosen in the dialog are read back from the stored job config;
the job itself does not matter here, so the test cancels it instead of
waiting for it. A cross-validation request is caught in the browser and
answered with a refusal, so it starts no job.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page, Route, ViewportSize, expect

from .conftest import ApiSession, DatasetZip, SignIn, UploadedDataset, UploadedModel

SEARCH = re.compile(r"^Search the hyperparameters")
START_ROUTE = "**/api/admin/training/start"
REFUSAL = {"error": {"code": "invalid_input", "message": "Refused by the test", "details": {}}}
# A tall window, so the dialog shows every advanced option in one screenshot.
TALL_VIEWPORT: ViewportSize = {"width": 1280, "height": 2400}


def _open_training_form(page: Page, dataset_id: int, model_name: str) -> Locator:
    page.goto(f"/#/datasets/{dataset_id}")
    page.get_by_role("button", name="Train").click()
    form = page.get_by_role("dialog", name="Train a model")
    form.get_by_label("Model", exact=True).select_option(label=model_name)
    return form


def _check_search_and_cross_validation_exclude_each_other(form: Locator) -> None:
    mode = form.get_by_label("Mode", exact=True)
    search = form.get_by_role("checkbox", name=SEARCH)
    mode.select_option("crossValidation")
    expect(form.get_by_label("Folds", exact=True)).to_have_value("5")
    expect(search).to_be_disabled()
    expect(search).not_to_be_checked()
    expect(search).to_have_accessible_description(re.compile("Cross-validation and a search"))

    mode.select_option("fineTune")
    search.check()
    expect(mode.locator('option[value="crossValidation"]')).to_be_disabled()
    expect(mode.locator('option[value="featureExtraction"]')).to_be_disabled()
    search.uncheck()
    expect(mode.locator('option[value="crossValidation"]')).to_be_enabled()


def _check_cross_validation_request(page: Page, form: Locator) -> None:
    """Cross-validation sends its folds; a canned refusal stands in for the server's answer."""
    bodies: list[Any] = []

    def refuse(route: Route) -> None:
        bodies.append(route.request.post_data_json)
        route.fulfill(status=422, json=REFUSAL)

    page.route(START_ROUTE, refuse)
    form.get_by_label("Mode", exact=True).select_option("crossValidation")
    form.get_by_label("Folds", exact=True).fill("3")
    form.get_by_role("button", name="Start training").click()
    expect(form.get_by_role("alert")).to_contain_text("Refused by the test")
    page.unroute(START_ROUTE, refuse)
    form.get_by_role("button", name="Cancel").click()
    expect(form).to_be_hidden()

    [body] = bodies
    assert body["crossValidationFolds"] == 3
    assert body["enableHyperparameterTuning"] is False
    assert "featureExtraction" not in body and "quickTrial" not in body


def _choose_feature_extraction_with_advanced_options(form: Locator) -> None:
    form.get_by_label("Mode", exact=True).select_option("featureExtraction")
    form.get_by_label("Epochs", exact=True).fill("1")
    form.get_by_label("Batch size", exact=True).fill("4")
    expect(form.get_by_label("Optimizer", exact=True)).to_be_hidden()
    form.get_by_text("Advanced", exact=True).click()
    expect(form.get_by_label("Layer decay", exact=True)).to_be_disabled()

    form.get_by_label("Optimizer", exact=True).select_option("sgd")
    form.get_by_label("Schedule", exact=True).select_option("step")
    expect(form.get_by_label("Warm-up epochs", exact=True)).to_be_disabled()
    form.get_by_label("Label smoothing", exact=True).fill("0.1")
    form.get_by_label("Seed", exact=True).fill("7")
    form.get_by_label("Image size (px)", exact=True).fill("48")


def _start(page: Page, form: Locator) -> tuple[dict[str, Any], int]:
    """Starts the job; gives the request's JSON body and the new job's id."""
    with page.expect_request(lambda request: request.url.endswith("/training/start")) as sent:
        form.get_by_role("button", name="Start training").click()
    request = sent.value
    response = request.response()
    assert response is not None
    assert response.ok, response.text()
    body = request.post_data_json
    assert isinstance(body, dict)
    return body, int(response.json()["jobId"])


def _stored_training_config(api: ApiSession, job_id: int) -> dict[str, Any]:
    answer = api.client.get(f"/api/admin/training/{job_id}")
    assert answer.status_code == 200, answer.text
    config: dict[str, Any] = answer.json()["config"]["training"]
    return config


def test_training_form_sends_the_mode_and_advanced_options(
    page: Page,
    sign_in: SignIn,
    api_session: ApiSession,
    dataset_zip: DatasetZip,
    uploaded_dataset: UploadedDataset,
    uploaded_model: UploadedModel,
    screenshot_dir: Path,
) -> None:
    dataset = uploaded_dataset(dataset_zip("option-tiles"), "Option tiles")
    uploaded_model("Options classifier")
    page.set_viewport_size(TALL_VIEWPORT)
    sign_in(page)
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()
    form = _open_training_form(page, dataset["id"], "Options classifier")

    _check_search_and_cross_validation_exclude_each_other(form)
    _check_cross_validation_request(page, form)
    form = _open_training_form(page, dataset["id"], "Options classifier")
    expect(form.get_by_label("Mode", exact=True)).to_have_value("fineTune")
    _choose_feature_extraction_with_advanced_options(form)
    expect(form.get_by_role("checkbox", name=SEARCH)).to_be_disabled()
    form.screenshot(path=screenshot_dir / "training-01-advanced-options.png")
    body, job_id = _start(page, form)
    expect(page.get_by_role("heading", name="Job #")).to_be_visible()

    try:
        expected = {"featureExtraction": True, "optimizer": "sgd", "schedule": "step"}
        assert body | expected == body
        assert (body["labelSmoothing"], body["seed"], body["imageSizePx"]) == (0.1, 7, 48)
        assert None not in body.values()
        # Defaults, and the warm-up a step schedule does not use, stay out of the request.
        for left_out in ("weightDecay", "warmupEpochs", "unfreezeEveryEpochs", "searchTrials"):
            assert left_out not in body

        stored = _stored_training_config(api_session, job_id)
        assert stored["feature_extraction"] is True
        assert (stored["optimizer"], stored["schedule"]) == ("sgd", "step")
        assert (stored["label_smoothing"], stored["seed"], stored["image_size_px"]) == (0.1, 7, 48)
        assert stored["search"] is None and stored["cross_validation_folds"] is None
    finally:
        api_session.client.post(
            f"/api/admin/jobs/{job_id}/cancel", headers={"X-CSRF-Token": api_session.csrf_token}
        )
