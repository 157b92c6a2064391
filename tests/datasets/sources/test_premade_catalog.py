"""The premade catalog, source ids and the checks a request passes before any job."""

from __future__ import annotations

import sys

import pytest

from kai.config import Settings
from kai.datasets.catalog import Category, find_entry, load_catalog, search_catalog
from kai.datasets.sources import (
    PremadeOptions,
    Repository,
    SourceImage,
    cap_per_class,
    open_premade,
    parse_source_id,
    resolve_request,
)
from kai.db.tables import Split
from kai.errors import InvalidInput, NotFound


def test_catalog_holds_the_material_texture_and_general_sets() -> None:
    ids = {entry.id for entry in load_catalog()}
    assert {"dtd", "minc-2500", "fmd", "kth-tips2", "cifar10", "imagenette", "imagenet-1k"} <= ids
    assert "kai-textures" in ids
    for entry in load_catalog():
        for source in entry.sources:
            assert parse_source_id(source).source_id == source
        assert entry.license and entry.description and entry.category in Category


def test_search_filters_by_words_category_and_repository() -> None:
    assert [e.id for e in search_catalog(search="woven")] == ["dtd"]
    assert {e.id for e in search_catalog(category="materials")} == {"minc-2500", "fmd", "kth-tips2"}
    assert {e.id for e in search_catalog(repository="tfds")} == {
        "dtd",
        "cifar10",
        "imagenette",
        "imagenet-1k",
    }
    assert search_catalog(search="stone tile", category="materials")[0].id == "minc-2500"
    with pytest.raises(InvalidInput, match="materials, textures, general"):
        search_catalog(category="fabrics")


@pytest.mark.parametrize(
    ("text", "repository", "reference", "config", "revision"),
    [
        ("huggingface:tanganke/dtd@abc123", Repository.HUGGINGFACE, "tanganke/dtd", None, "abc123"),
        ("kaggle:owner/slug/versions/4", Repository.KAGGLE, "owner/slug", None, "4"),
        ("tfds:imagenette/320px-v2:1.0.0", Repository.TFDS, "imagenette", "320px-v2", "1.0.0"),
        ("imagenet:/data/ilsvrc", Repository.IMAGENET, "/data/ilsvrc", None, None),
    ],
)
def test_source_ids_parse(
    text: str, repository: Repository, reference: str, config: str | None, revision: str | None
) -> None:
    ref = parse_source_id(text)
    assert (ref.repository, ref.reference, ref.config, ref.revision) == (
        repository,
        reference,
        config,
        revision,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hub:org/name", "names no known repository"),
        ("huggingface:justaname", "huggingface:ORG/NAME"),
        ("kaggle:owner/slug/versions/latest", "kaggle:OWNER/SLUG"),
        ("imagenet:relative/path", "imagenet:/ABSOLUTE/PATH"),
    ],
)
def test_bad_source_ids_say_the_form(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[")):
        parse_source_id(text)


def test_catalog_id_resolves_to_its_preferred_source() -> None:
    request = resolve_request("DTD", PremadeOptions())
    assert request.catalog_id == "dtd"
    assert request.source.source_id == "huggingface:tanganke/dtd"
    direct = resolve_request("tfds:dtd", PremadeOptions())
    assert direct.catalog_id == "dtd" and direct.source.repository is Repository.TFDS


def test_bad_requests_are_refused_before_any_job() -> None:
    with pytest.raises(InvalidInput, match="sourceDatasetId is missing"):
        resolve_request("  ", PremadeOptions())
    with pytest.raises(NotFound, match="No premade dataset 'nosuch'"):
        resolve_request("nosuch", PremadeOptions())
    with pytest.raises(InvalidInput, match="selectedClasses is empty"):
        resolve_request("dtd", PremadeOptions(selected_classes=[]))
    with pytest.raises(InvalidInput, match="maxSamplesPerClass must be at least 1, not 0"):
        resolve_request("dtd", PremadeOptions(max_samples_per_class=0))
    with pytest.raises(InvalidInput, match="at least two classes"):
        resolve_request("dtd", PremadeOptions(selected_classes=["woven"]))
    with pytest.raises(InvalidInput, match="not carried by any supported repository"):
        resolve_request("kth-tips2", PremadeOptions())


def test_unknown_class_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        resolve_request("kai-textures", PremadeOptions(selected_classes=["brick", "marble"]))
    assert caught.value.details["unknown"] == ["marble"]
    assert caught.value.details["valid"] == ["brick", "grass", "gravel"]
    assert "valid classes: brick, grass, gravel" in caught.value.message


def test_cap_is_per_class_and_split_and_deterministic() -> None:
    images = [
        SourceImage(f"{split.value}/{label}/{i}", label, split)
        for split in (Split.TRAIN, Split.TEST)
        for label in ("a", "b")
        for i in range(5)
    ]
    chosen = cap_per_class(images, 2, seed=7)
    assert len(chosen) == 8
    assert cap_per_class(list(reversed(images)), 2, seed=7) == list(reversed(chosen))
    per_group = {(image.label, image.split) for image in chosen}
    assert len(per_group) == 4
    assert all(sum(1 for i in chosen if (i.label, i.split) == g) == 2 for g in per_group)


def test_tfds_without_the_extra_says_how_to_add_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry makes importing the module fail as when it is not installed.
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    request = resolve_request("tfds:dtd", PremadeOptions())
    opening = open_premade(request, settings)
    with pytest.raises(InvalidInput, match=r"pip install 'kai\[tfds\]'"), opening:
        pass
    assert find_entry("dtd") is not None
