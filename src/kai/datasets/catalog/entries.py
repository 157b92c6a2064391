"""The premade catalog: curated public datasets, kept as data beside this module.

``premade.json`` lists each dataset once with the identifiers it has on
every repository that carries it, in the order they are tried. The catalog
is read once per process and never changed; searching it filters a copy.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kai.errors import InvalidInput


class Category(StrEnum):
    """What a catalog dataset shows."""

    MATERIALS = "materials"
    TEXTURES = "textures"
    GENERAL = "general"


class CatalogClass(BaseModel):
    """A class of a catalog dataset, with its image count when known."""

    model_config = ConfigDict(alias_generator=to_camel, frozen=True)

    name: str
    count: int | None = None


class CatalogEntry(BaseModel):
    """One curated dataset.

    Attributes:
        id: The catalog id, used as ``sourceDatasetId`` (``dtd``).
        sources: Direct source ids (``huggingface:tanganke/dtd``), preferred first.
        classes_verified: Whether every source names its classes as listed here,
            so a request naming other classes can be refused before any download.
    """

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, frozen=True)

    id: str
    name: str
    category: Category
    task: str = "image-classification"
    description: str = ""
    license: str = ""
    homepage: str = ""
    num_images: int | None = None
    num_classes: int | None = None
    download_size: str = ""
    classes: tuple[CatalogClass, ...] = ()
    classes_verified: bool = True
    sources: tuple[str, ...] = Field(default=())

    @property
    def class_names(self) -> list[str]:
        """The listed class names, in catalog order."""
        return [item.name for item in self.classes]

    @property
    def class_count(self) -> int:
        """How many classes the dataset has."""
        return self.num_classes or len(self.classes)

    @property
    def repositories(self) -> list[str]:
        """The repositories that carry the dataset, preferred first."""
        return list(dict.fromkeys(source.split(":", 1)[0] for source in self.sources))


class _Catalog(BaseModel):
    entries: tuple[CatalogEntry, ...]


@cache
def load_catalog() -> tuple[CatalogEntry, ...]:
    """Every catalog entry, in catalog order."""
    text = resources.files("kai.datasets.catalog").joinpath("premade.json").read_text("utf-8")
    return _Catalog.model_validate(json.loads(text)).entries


def find_entry(catalog_id: str) -> CatalogEntry | None:
    """The entry with this id (any letter case), or None."""
    wanted = catalog_id.strip().lower()
    return next((entry for entry in load_catalog() if entry.id == wanted), None)


def find_entry_by_source(source_id: str) -> CatalogEntry | None:
    """The entry listing this direct source id (ignoring a revision), or None."""
    wanted = source_id.split("@", 1)[0].lower()
    for entry in load_catalog():
        if any(source.split("@", 1)[0].lower() == wanted for source in entry.sources):
            return entry
    return None


def search_catalog(
    *,
    search: str | None = None,
    category: str | None = None,
    repository: str | None = None,
) -> list[CatalogEntry]:
    """Entries matching every given filter.

    Args:
        search: Words that must each appear in the id, name, description or a class name.
        category: ``materials``, ``textures`` or ``general``.
        repository: ``huggingface``, ``kaggle``, ``tfds`` or ``sample``.

    Raises:
        InvalidInput: An unknown category.
    """
    chosen = _category(category)
    words = (search or "").lower().split()
    wanted_repository = (repository or "").strip().lower()
    return [
        entry
        for entry in load_catalog()
        if (chosen is None or entry.category is chosen)
        and (not wanted_repository or wanted_repository in entry.repositories)
        and all(word in _haystack(entry) for word in words)
    ]


def _category(category: str | None) -> Category | None:
    if not category or not category.strip():
        return None
    try:
        return Category(category.strip().lower())
    except ValueError as exc:
        known = ", ".join(item.value for item in Category)
        raise InvalidInput(
            f"Unknown catalog category {category!r}; use one of {known}",
            details={"field": "category", "valid": [item.value for item in Category]},
        ) from exc


def _haystack(entry: CatalogEntry) -> str:
    parts = [entry.id, entry.name, entry.description, *entry.class_names, *entry.sources]
    return " ".join(parts).lower()
