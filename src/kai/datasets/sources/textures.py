"""The sample texture set: crops of scikit-image's brick, grass and gravel photographs.

It needs no network, so demos and tests always have a real dataset. Each
512 by 512 photograph is cut into square crops of 64, 96 and 128 pixels at
many positions. The photograph's top band (rows 0 to 319) gives the
training crops, the next band (320 to 415) the validation crops and the
bottom band (416 to 511) the test crops, so no crop of one split overlaps
one of another; the narrower bands take 64 and 96 pixel crops at a finer
stride. The crops are made the same way every time: 184 per class.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kai.config import Settings
from kai.datasets.sources.opened import (
    OpenedSource,
    ReaderFileSet,
    SourceImage,
    StageReport,
    silent_report,
)
from kai.db.tables import Split
from kai.errors import InvalidInput

logger = logging.getLogger(__name__)

TEXTURE_CLASSES = ("brick", "grass", "gravel")
REVISION = "1"
PHOTO_SIZE_PX = 512
# Each band: (split, first row, last row + 1, ((crop size, stride), ...)).
BANDS: tuple[tuple[Split, int, int, tuple[tuple[int, int], ...]], ...] = (
    (Split.TRAIN, 0, 320, ((128, 64), (96, 64), (64, 64))),
    (Split.VAL, 320, 416, ((96, 32), (64, 32))),
    (Split.TEST, 416, 512, ((96, 32), (64, 32))),
)


@dataclass(frozen=True)
class Crop:
    """Where one crop lies in its photograph."""

    label: str
    split: Split
    top: int
    left: int
    size_px: int

    @property
    def name(self) -> str:
        """The crop's file name: split, class, scale and position."""
        return (
            f"{self.split.value}/{self.label}/"
            f"{self.label}_{self.size_px}px_y{self.top:03d}_x{self.left:03d}.png"
        )


def plan_crops() -> list[Crop]:
    """Every crop of every photograph, in a fixed order."""
    crops: list[Crop] = []
    for label in TEXTURE_CLASSES:
        for split, band_top, band_bottom, scales in BANDS:
            for size_px, stride in scales:
                crops.extend(_band_crops(label, split, band_top, band_bottom, size_px, stride))
    return crops


def _band_crops(
    label: str, split: Split, band_top: int, band_bottom: int, size_px: int, stride: int
) -> Iterator[Crop]:
    for top in range(band_top, band_bottom - size_px + 1, stride):
        for left in range(0, PHOTO_SIZE_PX - size_px + 1, stride):
            yield Crop(label, split, top, left, size_px)


@contextmanager
def open_textures(
    reference: str, settings: Settings, *, report: StageReport = silent_report
) -> Iterator[OpenedSource]:
    """Open the texture set; the crops are cut as the ingest reads them."""
    if reference != "textures":
        raise InvalidInput(f"The sample repository has only 'textures', not {reference!r}")
    report("extract", 0.0)
    photos = _load_photos()
    crops = {crop.name: crop for crop in plan_crops()}
    report("extract", 1.0)

    def read(name: str) -> bytes:
        return _encode(photos[crops[name].label], crops[name])

    images = [
        SourceImage(crop.name, crop.label, crop.split, _crop_metadata(crop))
        for crop in crops.values()
    ]
    yield OpenedSource(
        files=ReaderFileSet(list(crops), read, max_file_bytes=settings.max_entry_bytes),
        images=images,
        classes=list(TEXTURE_CLASSES),
        revision=REVISION,
        details={"photographs": "skimage.data." + ", skimage.data.".join(TEXTURE_CLASSES)},
    )


def _load_photos() -> dict[str, Any]:
    from skimage import data as skimage_data

    return {label: getattr(skimage_data, label)() for label in TEXTURE_CLASSES}


def _encode(photo: Any, crop: Crop) -> bytes:
    from PIL import Image

    pixels = photo[crop.top : crop.top + crop.size_px, crop.left : crop.left + crop.size_px]
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def _crop_metadata(crop: Crop) -> dict[str, Any]:
    return {"photograph": crop.label, "top": crop.top, "left": crop.left, "sizePx": crop.size_px}
