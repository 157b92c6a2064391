"""The premade catalog in Chromium against a real server: search, filters, import and its errors.

The imports use the texture sample made from scikit-image's photographs, the
one catalog entry that needs no network.
"""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Locator, Page, Route, expect

from .conftest import SignIn

IMPORT_SECONDS_MS = 120_000
TEXTURES = "Kai sample textures"
IMPORT_ROUTE = "**/api/admin/datasets/import/premade"


def _open_catalog(page: Page, sign_in: SignIn) -> Locator:
    sign_in(page)
    page.get_by_role("link", name="Browse catalog").click()
    expect(page.get_by_role("heading", name="Dataset catalog")).to_be_visible()
    return page.get_by_role("list", name="Catalog")


def _open_import_form(page: Page, catalog: Locator) -> Locator:
    page.get_by_role("searchbox", name="Search").fill("gravel")
    expect(catalog.get_by_role("listitem")).to_have_count(1)
    catalog.get_by_role("listitem", name=TEXTURES).get_by_role("button", name="Import").click()
    return page.get_by_role("dialog", name=f"Import {TEXTURES}")


def test_catalog_search_and_filters_narrow_the_entries(
    page: Page, sign_in: SignIn, screenshot_dir: Path
) -> None:
    catalog = _open_catalog(page, sign_in)
    entries = catalog.get_by_role("listitem")
    expect(entries.first).to_be_visible()
    assert entries.count() > 3
    page.screenshot(path=screenshot_dir / "catalog-01-all.png", full_page=True)

    page.get_by_role("searchbox", name="Search").fill("gravel")
    expect(page.get_by_test_id("catalog-count")).to_have_text("1 dataset match")
    expect(entries).to_have_count(1)
    textures = catalog.get_by_role("listitem", name=TEXTURES)
    expect(textures).to_contain_text("Textures")
    expect(textures).to_contain_text("Built in")
    expect(textures).to_contain_text("Public domain")
    expect(textures).to_contain_text("none (generated locally)")
    expect(textures).to_contain_text("scikit-image")
    for label in ("brick", "grass", "gravel"):
        expect(textures.locator(f'.chip[data-class="{label}"]')).to_have_text(f"{label} 184")
    page.screenshot(path=screenshot_dir / "catalog-02-search.png")

    page.get_by_label("Category").select_option("materials")
    expect(entries).to_have_count(0)
    expect(page.get_by_text("Nothing matches")).to_be_visible()

    page.get_by_role("searchbox", name="Search").fill("")
    page.get_by_label("Category").select_option("")
    page.get_by_label("Repository").select_option("sample")
    expect(entries).to_have_count(1)
    expect(catalog.get_by_role("listitem", name=TEXTURES)).to_be_visible()
    expect(page.get_by_test_id("catalog-count")).to_have_text("1 dataset match")


def test_catalog_imports_two_texture_classes_with_a_cap(
    page: Page, sign_in: SignIn, screenshot_dir: Path
) -> None:
    dialog = _open_import_form(page, _open_catalog(page, sign_in))
    expect(dialog.get_by_label("Name")).to_have_value(TEXTURES)
    dialog.get_by_label("Name").fill("Catalog textures")
    dialog.get_by_role("button", name="None").click()
    expect(dialog.get_by_role("button", name="Import")).to_be_disabled()
    dialog.get_by_role("checkbox", name="brick").check()
    dialog.get_by_role("checkbox", name="gravel").check()
    expect(dialog).to_contain_text("2 of 3 selected")
    dialog.get_by_label("Images per class").fill("4")
    page.screenshot(path=screenshot_dir / "catalog-03-import-form.png")
    dialog.get_by_role("button", name="Import").click()

    expect(dialog.get_by_role("status")).to_contain_text("ready", timeout=IMPORT_SECONDS_MS)
    page.screenshot(path=screenshot_dir / "catalog-04-import-ready.png")
    dialog.get_by_role("link", name="Open it").click()

    expect(page.get_by_role("heading", name="Catalog textures")).to_be_visible()
    for label in ("brick", "gravel"):
        row = page.locator(f'.class-row[data-class="{label}"]')
        expect(row.locator(".class-count")).to_have_text("12")
        expect(row.locator(".bar")).to_have_attribute("title", "train 4, validation 4, test 4")
    expect(page.locator('.class-row[data-class="grass"]')).to_have_count(0)
    gallery = page.get_by_role("list", name="Samples")
    expect(gallery.get_by_role("img").first).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.gallery img')]"
        ".every((img) => img.complete && img.naturalWidth > 0)"
    )
    page.screenshot(path=screenshot_dir / "catalog-05-imported-dataset.png", full_page=True)


def test_a_refused_import_names_the_valid_classes(
    page: Page, sign_in: SignIn, screenshot_dir: Path
) -> None:
    def ask_for_an_unknown_class(route: Route) -> None:
        # Stands in for a catalog that changed since the page was loaded.
        body = json.loads(route.request.post_data or "{}")
        body["selectedClasses"] = ["brick", "marble"]
        route.continue_(post_data=json.dumps(body))

    dialog = _open_import_form(page, _open_catalog(page, sign_in))
    dialog.get_by_label("Name").fill("Refused textures")
    dialog.get_by_role("checkbox", name="grass").uncheck()
    page.route(IMPORT_ROUTE, ask_for_an_unknown_class)
    dialog.get_by_role("button", name="Import").click()

    alert = dialog.get_by_role("alert")
    expect(alert).to_contain_text("has no class 'marble'")
    expect(alert).to_contain_text("valid classes: brick, grass, gravel")
    expect(dialog.get_by_label("Name")).to_have_value("Refused textures")
    expect(dialog.get_by_role("checkbox", name="grass")).not_to_be_checked()
    page.screenshot(path=screenshot_dir / "catalog-06-import-refused.png")


def test_an_entry_no_repository_carries_says_where_to_get_it(
    page: Page, sign_in: SignIn, screenshot_dir: Path
) -> None:
    catalog = _open_catalog(page, sign_in)
    page.get_by_role("searchbox", name="Search").fill("kth")
    expect(page.get_by_test_id("catalog-count")).to_have_text("1 dataset match")
    entry = catalog.get_by_role("listitem")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("KTH-TIPS2-b")
    expect(entry).to_contain_text("No supported repository carries this dataset")
    expect(entry.get_by_role("link", name="its homepage")).to_have_attribute(
        "href", "https://www.csc.kth.se/cvap/databases/kth-tips/"
    )
    expect(entry.get_by_role("button", name="Import")).to_be_disabled()
    page.screenshot(path=screenshot_dir / "catalog-07-manual-download.png")
