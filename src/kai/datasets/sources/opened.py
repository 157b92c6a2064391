"""An opened premade source: its images by name, and the plan that selects and caps them.

Every repository module opens its source into an :class:`OpenedSource`:
a file set that reads one image's bytes at a time, and the list of images
with their class, split and metadata. :func:`plan_layout` then applies the
request's class selection and per-class cap and hands the ingest the same
:class:`~kai.datasets.layouts.Layout` an upload gets.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from kai.datasets.layouts import Layout, PlannedFile, SkippedFile
from kai.datasets.sources.request import PremadeOptions, require_known_classes
from kai.db.tables import Split
from kai.errors import InvalidDatasetLayout, TooLarge

StageReport = Callable[[str, float], None]
"""Called with a stage (``download``, ``extract``) and how far it is, from 0 to 1."""


def silent_report(stage: str, fraction: float) -> None:
    """A stage report that reports nothing."""
    del stage, fraction


@dataclass(frozen=True)
class SourceImage:
    """One image of a source: a unique name, its class, split and extra fields."""

    name: str
    label: str
    split: Split | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class ReaderFileSet:
    """A file set whose members are read by a function, within the per-file limit.

    Args:
        names: Every member's name.
        read: Returns a member's bytes.
        max_file_bytes: Larger members fail their read.
    """

    def __init__(
        self, names: Sequence[str], read: Callable[[str], bytes], *, max_file_bytes: int
    ) -> None:
        self._names = list(names)
        self._read = read
        self._max_file_bytes = max_file_bytes

    def __enter__(self) -> ReaderFileSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def names(self) -> list[str]:
        return list(self._names)

    @property
    def skipped(self) -> list[SkippedFile]:
        return []

    def read(self, name: str) -> bytes:
        data = self._read(name)
        if len(data) > self._max_file_bytes:
            raise TooLarge(f"{name!r} is larger than the {self._max_file_bytes} bytes allowed")
        return data


@dataclass
class OpenedSource:
    """A source ready to ingest.

    Attributes:
        files: Reads each image's bytes by name.
        images: Every image the source offers, with class and split.
        classes: Every class of the source, in the source's order.
        revision: The exact revision read (a commit, version number or version).
        details: More provenance: columns used, the cache it was read from.
        skipped: Files the source left out while listing, with reasons.
    """

    files: Any
    images: list[SourceImage]
    classes: list[str]
    revision: str
    details: dict[str, Any] = field(default_factory=dict)
    skipped: list[SkippedFile] = field(default_factory=list)


def plan_layout(opened: OpenedSource, options: PremadeOptions, *, subject: str) -> Layout:
    """The images to ingest: the selected classes, capped per class and split.

    Raises:
        InvalidInput: A selected class the source does not have; the message lists
            the valid ones.
        InvalidDatasetLayout: Nothing left to import.
    """
    chosen = opened.images
    if options.selected_classes is not None:
        require_known_classes(options.selected_classes, opened.classes, subject=subject)
        wanted = set(options.selected_classes)
        chosen = [image for image in chosen if image.label in wanted]
    if options.max_samples_per_class is not None:
        chosen = cap_per_class(chosen, options.max_samples_per_class, seed=options.seed)
    if not chosen:
        raise InvalidDatasetLayout(f"{subject} has no images in the selected classes")
    keep_metadata = options.include_metadata
    files = [
        PlannedFile(
            image.name,
            image.label,
            image.split,
            metadata=dict(image.metadata) if keep_metadata else {},
        )
        for image in chosen
    ]
    return Layout(files=files, skipped=list(opened.skipped), shape="premade")


def cap_per_class(images: Sequence[SourceImage], cap: int, *, seed: int) -> list[SourceImage]:
    """At most ``cap`` images of each class in each split, chosen by a seeded shuffle.

    The same images and seed always give the same choice, whatever order they came in.
    """
    groups: dict[tuple[str, str], list[SourceImage]] = defaultdict(list)
    for image in images:
        groups[(image.label, image.split.value if image.split else "")].append(image)
    kept: set[str] = set()
    for (label, split), members in sorted(groups.items()):
        ordered = sorted(members, key=lambda image: image.name)
        random.Random(f"{seed}:{label}:{split}").shuffle(ordered)  # noqa: S311 - not secret
        kept.update(image.name for image in ordered[:cap])
    return [image for image in images if image.name in kept]
