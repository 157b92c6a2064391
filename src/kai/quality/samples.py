"""What the analysis knows of each sample: its row and what its reduced copy showed."""

from __future__ import annotations

from dataclasses import dataclass

from kai.db.tables import Split
from kai.quality.images import ImageStats


@dataclass(frozen=True)
class SampleRecord:
    """The columns of a sample row the checks read."""

    uid: str
    label: str
    split: Split
    group: str | None
    blob_sha256: str
    reduced_sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class Inspected:
    """A sample with the outcome of reading its reduced copy.

    Attributes:
        record: The sample's row.
        stats: The image's statistics; None when it could not be read.
        error: Why the image could not be read.
        orientation: The original's EXIF orientation, 1 when upright.
    """

    record: SampleRecord
    stats: ImageStats | None
    error: str | None = None
    orientation: int = 1
