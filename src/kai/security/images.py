"""Checking untrusted image files and making their reduced copies, in one decode.

An uploaded file is an image only when its magic bytes say so, its header
claims no more pixels than the limit (checked before any pixel is decoded,
against decompression-bomb images) and it decodes to the end (so truncated
files are caught). Pillow's own globals are never changed: its bomb warning
is handled locally, and truncated images are never tolerated.

A JPEG is decoded straight at a reduced scale with the decoder's draft mode
when only a reduced copy is needed, which is several times faster than a
full decode followed by a resize for camera-sized photos. Reduced copies and
thumbnails are upright: the EXIF orientation is applied.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

import numpy as np
from PIL import Image, ImageOps

from kai.config import Settings
from kai.errors import InvalidImage

logger = logging.getLogger(__name__)

JPEG_QUALITY = 90
THUMBNAIL_QUALITY = 80
DEFAULT_MAX_PIXELS = 100_000_000
_SNIFF_BYTES = 32
# EXIF orientations 5 to 8 turn the image a quarter, swapping width and height.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_GRAY_MODES = frozenset({"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


class ImageFormat(StrEnum):
    """Image formats Kai accepts, as stored in a sample's ``format``."""

    JPEG = "jpeg"
    PNG = "png"
    GIF = "gif"
    WEBP = "webp"
    BMP = "bmp"
    TIFF = "tiff"

    @property
    def pillow_name(self) -> str:
        """The name Pillow's plugins use for the format."""
        return self.value.upper()


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be, and the sizes of the copies made from it.

    Attributes:
        max_pixels: Width times height, checked before decoding.
        reduced_size_px: Longest side of the reduced copy.
        thumbnail_size_px: Longest side of a thumbnail.
    """

    max_pixels: int
    reduced_size_px: int
    thumbnail_size_px: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        """The limits configured by ``KAI_MAX_IMAGE_PIXELS`` and the size settings."""
        return cls(
            max_pixels=settings.max_image_pixels,
            reduced_size_px=settings.reduced_size_px,
            thumbnail_size_px=settings.thumbnail_size_px,
        )


@dataclass(frozen=True)
class ProcessedImage:
    """An accepted image and its reduced copy.

    Attributes:
        format: The format its bytes are in.
        width: Width in pixels as displayed, after the EXIF orientation.
        height: Height in pixels as displayed, after the EXIF orientation.
        mode: Pillow's pixel mode of the original, such as ``RGB`` or ``L``.
        reduced: An upright copy whose longest side is ``reduced_size_px``;
            None when the original is already that small and upright.
        reduced_format: ``jpeg``, or ``png`` for images with transparency;
            None when ``reduced`` is None.
    """

    format: ImageFormat
    width: int
    height: int
    mode: str
    reduced: bytes | None
    reduced_format: ImageFormat | None


def sniff_format(head: bytes) -> ImageFormat | None:
    """The image format that ``head`` (the first bytes of a file) starts, if any."""
    if head.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return ImageFormat.GIF
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if head.startswith(b"BM") and len(head) >= 26:
        return ImageFormat.BMP
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return ImageFormat.TIFF
    return None


def process_image(data: bytes, limits: ImageLimits, *, name: str) -> ProcessedImage:
    """Check an untrusted image and make its reduced copy.

    Args:
        data: The file's bytes.
        limits: Pixel limit and copy sizes.
        name: The file's name, used in error messages.

    Raises:
        InvalidImage: The file is not an image, claims too many pixels, or is
            corrupt or truncated; the message names the file and the reason.
    """
    image_format = _require_image(data, name)
    with _decoding(name):
        image = _open(data, image_format, name, max_pixels=limits.max_pixels)
        width, height = image.size
        mode = image.mode
        orientation = _orientation(image)
        needs_reduced = max(width, height) > limits.reduced_size_px or orientation != 1
        if not needs_reduced and image_format in _END_MARKERS:
            # The header is decoded and the stream ends where its format says it must,
            # which catches truncation; a full decode happens in the quality analysis,
            # which reads every image anyway and reports the unreadable ones.
            _require_end_marker(data, image_format, name)
        else:
            if image_format is ImageFormat.JPEG:
                _draft(image, limits.reduced_size_px)
            image.load()

        if orientation in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
        reduced, reduced_format = None, None
        if needs_reduced:
            upright = ImageOps.exif_transpose(image)
            reduced, reduced_format = _encode_reduced(upright, limits.reduced_size_px)
    return ProcessedImage(
        format=image_format,
        width=width,
        height=height,
        mode=mode,
        reduced=reduced,
        reduced_format=reduced_format,
    )


def make_thumbnail(data: bytes, size_px: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """An upright thumbnail whose longest side is at most ``size_px``.

    Args:
        data: An image's bytes.
        size_px: Longest side of the thumbnail.
        max_pixels: The pixel limit for the source image.

    Returns:
        JPEG bytes, or WebP bytes when the image has transparency.

    Raises:
        InvalidImage: The bytes are not an acceptable image.
    """
    name = "thumbnail source"
    image_format = _require_image(data, name)
    with _decoding(name):
        image = _open(data, image_format, name, max_pixels=max_pixels)
        if image_format is ImageFormat.JPEG:
            _draft(image, size_px)
        image.load()
        image = ImageOps.exif_transpose(image)
        image.thumbnail((size_px, size_px), Image.Resampling.LANCZOS)

    output = io.BytesIO()
    if _has_alpha(image):
        image.convert("RGBA").save(output, format="WEBP", quality=THUMBNAIL_QUALITY)
    else:
        _to_rgb_or_gray(image).save(output, format="JPEG", quality=THUMBNAIL_QUALITY)
    return output.getvalue()


# Recognising and opening.


def _require_image(data: bytes, name: str) -> ImageFormat:
    image_format = sniff_format(data[:_SNIFF_BYTES])
    if image_format is None:
        raise InvalidImage(
            f"{name} is {_describe_non_image(data[:_SNIFF_BYTES])}, not an image; "
            "Kai reads JPEG, PNG, GIF, WebP, BMP and TIFF files",
            details={"file": name, "reason": "not_an_image"},
        )
    return image_format


def _describe_non_image(head: bytes) -> str:
    known = {
        b"%PDF": "a PDF",
        b"PK\x03\x04": "a ZIP archive",
        b"\x1f\x8b": "a gzip file",
        b"<svg": "an SVG drawing",
        b"<?xml": "an XML document",
    }
    for magic, description in known.items():
        if head.lstrip().startswith(magic):
            return description
    if head[4:8] == b"ftyp":
        return "a HEIC, AVIF or video file (convert it to JPEG or PNG)"
    if not head:
        return "empty"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "an unknown kind of file"
    return "a text file"


def _open(data: bytes, image_format: ImageFormat, name: str, *, max_pixels: int) -> Image.Image:
    """Read the header only, and refuse too many pixels before decoding any."""
    image = Image.open(io.BytesIO(data), formats=[image_format.pillow_name])
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"{name} has no pixels ({width}x{height})", details={"file": name})
    if width * height > max_pixels:
        _refuse_pixels(name, width, height, max_pixels)
    return image


def _refuse_pixels(name: str, width: int, height: int, max_pixels: int) -> NoReturn:
    raise InvalidImage(
        f"{name} claims {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), "
        f"over the limit of {max_pixels / 1e6:.0f} megapixels (KAI_MAX_IMAGE_PIXELS); "
        "it may be a decompression bomb",
        details={"file": name, "reason": "too_many_pixels", "width": width, "height": height},
    )


@contextmanager
def _decoding(name: str) -> Iterator[None]:
    """Translate Pillow's failures into InvalidImage, with its bomb warning handled here."""
    with warnings.catch_warnings():
        # Kai's own pixel limit is the one that applies; Pillow's hard error still stands.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except Image.DecompressionBombError as exc:
            raise InvalidImage(
                f"{name} has too many pixels to decode safely ({exc})",
                details={"file": name, "reason": "too_many_pixels"},
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
            raise InvalidImage(
                f"{name} is corrupt or truncated: {exc}",
                details={"file": name, "reason": "corrupt"},
            ) from exc


def _orientation(image: Image.Image) -> int:
    orientation = image.getexif().get(0x0112, 1)
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


_END_MARKERS = {
    ImageFormat.JPEG: b"\xff\xd9",
    ImageFormat.PNG: b"IEND\xaeB`\x82",
}
# Cameras and editors may pad a file after its end marker; look this far back for it.
_END_MARKER_WINDOW_BYTES = 4096


def _require_end_marker(data: bytes, image_format: ImageFormat, name: str) -> None:
    """Refuse a JPEG without its end-of-image marker or a PNG without its IEND chunk.

    Entropy-coded JPEG data escapes every 0xFF byte, so the end marker cannot
    appear by chance near the end of a cut-off scan.
    """
    if _END_MARKERS[image_format] not in data[-_END_MARKER_WINDOW_BYTES:]:
        raise InvalidImage(
            f"{name} is truncated: its {image_format.value.upper()} data has no end marker",
            details={"file": name, "reason": "truncated"},
        )


def _draft(image: Image.Image, size_px: int) -> None:
    """Let the JPEG decoder scale down by 1/2, 1/4 or 1/8 while staying above ``size_px``."""
    width, height = image.size
    scale = size_px / max(width, height)
    if scale < 1:
        image.draft(None, (max(1, round(width * scale)), max(1, round(height * scale))))


# Reduced copies.


def _encode_reduced(image: Image.Image, size_px: int) -> tuple[bytes, ImageFormat]:
    image = image.copy()
    image.thumbnail((size_px, size_px), Image.Resampling.LANCZOS)
    output = io.BytesIO()
    if _has_alpha(image):
        image.convert("LA" if image.mode in ("LA", "La") else "RGBA").save(output, format="PNG")
        return output.getvalue(), ImageFormat.PNG
    _to_rgb_or_gray(image).save(output, format="JPEG", quality=JPEG_QUALITY)
    return output.getvalue(), ImageFormat.JPEG


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def _to_rgb_or_gray(image: Image.Image) -> Image.Image:
    """An 8-bit RGB or L image that JPEG can hold."""
    if image.mode in ("RGB", "L"):
        return image
    if image.mode not in _GRAY_MODES:
        return image.convert("RGB")
    if image.mode in ("1", "L"):
        return image.convert("L")
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        return Image.fromarray((values / 257.0).round().astype(np.uint8))
    low, high = float(values.min()), float(values.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return Image.fromarray(((values - low) * scale).round().astype(np.uint8))
