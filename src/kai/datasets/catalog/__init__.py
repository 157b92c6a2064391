"""The premade dataset catalog: curated public datasets, listed and searched."""

from kai.datasets.catalog.entries import (
    CatalogClass,
    CatalogEntry,
    Category,
    find_entry,
    find_entry_by_source,
    load_catalog,
    search_catalog,
)

__all__ = [
    "CatalogClass",
    "CatalogEntry",
    "Category",
    "find_entry",
    "find_entry_by_source",
    "load_catalog",
    "search_catalog",
]
