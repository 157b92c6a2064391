"""What a premade import asks for, checked before any job is queued.

A request names a catalog entry (``dtd``) or a source directly
(``huggingface:tanganke/dtd``), and carries the options: which classes,
how many images per class and split, and whether the source's extra
columns go into each sample's metadata. Everything that can be checked
without the data is checked here, so a bad request is a 4xx at once.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from kai.datasets.catalog import CatalogEntry, find_entry, find_entry_by_source
from kai.datasets.layouts import MIN_CLASSES
from kai.datasets.sources.references import SourceRef, looks_like_source_id, parse_source_id
from kai.errors import InvalidInput, NotFound

MAX_SELECTED_CLASSES = 10_000


class PremadeOptions(BaseModel):
    """The options of a premade import.

    Attributes:
        selected_classes: Classes to import; None imports every class.
        max_samples_per_class: At most this many images per class in each split.
        include_metadata: Copy the source's extra columns into each sample's metadata.
        seed: Seeds the choice of images when a cap applies.
    """

    selected_classes: list[str] | None = None
    max_samples_per_class: int | None = None
    include_metadata: bool = False
    seed: int = 42

    def provenance(self) -> dict[str, object]:
        """The options as stored in the version's provenance."""
        return {
            "selectedClasses": self.selected_classes,
            "maxSamplesPerClass": self.max_samples_per_class,
            "includeMetadata": self.include_metadata,
            "seed": self.seed,
        }


class PremadeRequest(BaseModel):
    """A checked premade import: the source, its catalog entry if any, and the options."""

    source_dataset_id: str
    source: SourceRef
    catalog_id: str | None = None
    options: PremadeOptions = Field(default_factory=PremadeOptions)


def resolve_request(source_dataset_id: str, options: PremadeOptions) -> PremadeRequest:
    """Check a request and pick its source.

    A catalog id uses the entry's preferred source; a direct id is used as
    written. Options are checked against the entry's classes when the
    catalog knows them for every source.

    Raises:
        InvalidInput: A missing or malformed id, an empty or unknown class
            selection, a cap below one, or a catalog entry no repository carries.
        NotFound: An id that is neither a catalog id nor a source id.
    """
    requested = source_dataset_id.strip()
    if not requested:
        raise InvalidInput(
            "sourceDatasetId is missing; name a catalog id such as 'dtd' or a source id "
            "such as 'huggingface:ORG/NAME'",
            details={"field": "sourceDatasetId"},
        )
    entry, source = _source_of(requested)
    checked = check_options(options, entry)
    return PremadeRequest(
        source_dataset_id=requested,
        source=source,
        catalog_id=entry.id if entry else None,
        options=checked,
    )


def check_options(options: PremadeOptions, entry: CatalogEntry | None) -> PremadeOptions:
    """The options with the selection de-duplicated; InvalidInput when they cannot work."""
    cap = options.max_samples_per_class
    if cap is not None and cap < 1:
        raise InvalidInput(
            f"maxSamplesPerClass must be at least 1, not {cap}; omit it to import every image",
            details={"field": "maxSamplesPerClass"},
        )
    selected = options.selected_classes
    if selected is None:
        return options
    cleaned = list(dict.fromkeys(name.strip() for name in selected if name.strip()))
    if not cleaned:
        raise InvalidInput(
            "selectedClasses is empty; name at least two classes, or omit it to import them all",
            details={"field": "selectedClasses"},
        )
    if len(cleaned) > MAX_SELECTED_CLASSES:
        raise InvalidInput(f"selectedClasses may name {MAX_SELECTED_CLASSES} classes at most")
    if entry is not None and entry.classes and entry.classes_verified:
        require_known_classes(cleaned, entry.class_names, subject=entry.name)
    if len(cleaned) < MIN_CLASSES:
        raise InvalidInput(
            f"selectedClasses names only {cleaned}; a classification dataset needs at least "
            "two classes",
            details={"field": "selectedClasses"},
        )
    return options.model_copy(update={"selected_classes": cleaned})


def require_known_classes(selected: list[str], valid: list[str], *, subject: str) -> None:
    """Raise InvalidInput naming the valid classes when a selected one is not among them."""
    known = set(valid)
    unknown = [name for name in selected if name not in known]
    if unknown:
        shown = ", ".join(valid[:60]) + (" ..." if len(valid) > 60 else "")
        raise InvalidInput(
            f"{subject} has no class {', '.join(repr(n) for n in unknown[:10])}; "
            f"valid classes: {shown}",
            details={"field": "selectedClasses", "unknown": unknown, "valid": valid},
        )


def _source_of(requested: str) -> tuple[CatalogEntry | None, SourceRef]:
    if looks_like_source_id(requested):
        source = parse_source_id(requested)
        return find_entry_by_source(source.source_id), source
    entry = find_entry(requested)
    if entry is None:
        raise NotFound(
            f"No premade dataset {requested!r} in the catalog; list it with "
            "GET /api/admin/datasets/premade, or name a source such as 'huggingface:ORG/NAME'",
            details={"field": "sourceDatasetId"},
        )
    if not entry.sources:
        where = f" from {entry.homepage}" if entry.homepage else ""
        raise InvalidInput(
            f"{entry.name} is not carried by any supported repository; download it{where} "
            "and import its folder instead",
            details={"field": "sourceDatasetId", "homepage": entry.homepage},
        )
    return entry, parse_source_id(entry.sources[0])
