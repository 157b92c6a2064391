"""Per-image statistics, computed in one pass over each sample's reduced copy.

The reduced copy (upright, longest side at most 512 px) is decoded once into
8-bit RGB. Its channel histograms give the mean colour and Pillow compares
its channels for greyness; a float grey version in [0, 1] gives the rest:
sharpness as the variance of the Laplacian of the grey image scaled to unit
contrast (so a dark photo is not called blurry), brightness, contrast,
histogram entropy, and the perceptual hashes that find near duplicates.
Only the EXIF orientation comes from the original, and only its header is
read.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, cast

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageChops, UnidentifiedImageError

from kai.quality.hashes import compute_dhash, compute_phash

logger = logging.getLogger(__name__)

# ITU-R BT.601 luma weights, for pixel values 0 to 255 mapped to [0, 1].
_LUMA_OF_BYTES = np.array([0.299, 0.587, 0.114], dtype=np.float32) / 255.0
_LEVELS = np.arange(256, dtype=np.float64) / 255.0
# The box that re-blurs an image to judge how blurred it already is, in pixels.
_REBLUR_PX = 9
# Mean steps between neighbours below this (in grey levels of 0 to 1) are a flat image.
_FLAT_VARIATION = 1e-4
# Channels within this many levels of each other everywhere count as grey.
_GREY_TOLERANCE_LEVELS = 2
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    UnidentifiedImageError,
    Image.DecompressionBombError,
)


@dataclass(frozen=True)
class ImageStats:
    """What one reduced copy looks like.

    Attributes:
        laplacian_var: Variance of the Laplacian of the grey image scaled to unit standard
            deviation; low is blurry.
        reblur_retained: Share of the edge variation a 9-pixel re-blur leaves, 0 to 1;
            high is blurry.
        brightness: Mean grey level in [0, 1].
        contrast: Standard deviation of the grey levels.
        entropy_bits: Shannon entropy of the 256-bin grey histogram, 0 to 8 bits.
        is_grayscale: The image holds no colour.
        mean_rgb: The mean of each channel, a coarse colour signature.
        phash: 64-bit DCT perceptual hash.
        dhash: 64-bit difference hash.
    """

    laplacian_var: float
    reblur_retained: float
    brightness: float
    contrast: float
    entropy_bits: float
    is_grayscale: bool
    mean_rgb: tuple[float, float, float]
    phash: int
    dhash: int


class UnreadableImage(Exception):
    """A reduced copy that does not decode; the message says why."""


def compute_image_stats(data: bytes) -> ImageStats:
    """Decode a reduced copy and compute all its statistics.

    Raises:
        UnreadableImage: The bytes do not decode to an image.
    """
    flat = decode_flat(data)
    grey = np.asarray(flat, dtype=np.float32) @ _LUMA_OF_BYTES
    histogram = np.asarray(flat.histogram(), dtype=np.float64).reshape(3, 256)
    mean_rgb = histogram @ _LEVELS / (flat.width * flat.height)
    contrast = float(grey.std())
    # Both hashes shrink one float image of the grey pixels.
    grey_image = Image.fromarray(grey)
    return ImageStats(
        laplacian_var=sharpness(grey, contrast),
        reblur_retained=reblur_retained(grey),
        brightness=float(grey.mean()),
        contrast=contrast,
        entropy_bits=histogram_entropy(flat.convert("L").histogram()),
        is_grayscale=_is_grey(flat),
        mean_rgb=(float(mean_rgb[0]), float(mean_rgb[1]), float(mean_rgb[2])),
        phash=compute_phash(grey_image),
        dhash=compute_dhash(grey_image),
    )


def decode_rgb(data: bytes) -> NDArray[np.float32]:
    """The image as an ``(height, width, 3)`` float array in [0, 1]."""
    return np.asarray(decode_flat(data), dtype=np.float32) / 255.0


def decode_flat(data: bytes) -> Image.Image:
    """The image as 8-bit RGB, transparent pixels shown on white as the panel shows them.

    Raises:
        UnreadableImage: The bytes do not decode to an image.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
            return image.convert("RGB")
    except _DECODE_ERRORS as exc:
        raise UnreadableImage(f"does not decode: {exc}") from exc


def _is_grey(flat: Image.Image) -> bool:
    """Whether every pixel's channels lie within the grey tolerance of each other.

    The largest channel minus the smallest is the largest of the three pairwise
    differences, which Pillow finds without copying the image into arrays.
    """
    red, green, blue = flat.split()
    pairs = ((red, green), (green, blue), (red, blue))
    return all(_largest_difference(a, b) <= _GREY_TOLERANCE_LEVELS for a, b in pairs)


def _largest_difference(first: Image.Image, second: Image.Image) -> int:
    # A single band's extrema are one (low, high) pair.
    _, high = cast(tuple[int, int], ImageChops.difference(first, second).getextrema())
    return high


def sharpness(grey: NDArray[np.float32], contrast: float) -> float:
    """Variance of the Laplacian of the grey image scaled to unit contrast.

    Scaling first means exposure never reads as blur. The Laplacian is linear
    and ignores a constant, so the scaled image's variance is the unscaled one
    over the contrast squared. A flat image (contrast under 1/255) is left
    unscaled: it has no edges to judge.
    """
    variance = laplacian_variance(grey)
    return variance if contrast < 1.0 / 255.0 else variance / contrast**2


def reblur_retained(grey: NDArray[np.float32]) -> float:
    """How much of the image's edge variation survives a strong re-blur, from 0 to 1.

    A no-reference blur measure (after Crete et al., 2007): blurring a sharp
    image again removes most of the differences between neighbouring pixels,
    while an image that is already blurred has little left to lose. Each axis
    is blurred with a 9-pixel box; the larger share retained counts. It does
    not depend on how much texture the scene has, so a mislabelled image of a
    smooth material is not called blurry beside a class of coarse ones. A
    flat image retains everything (1.0).
    """
    return max(_retained_along_rows(grey), _retained_along_rows(grey.T))


def _retained_along_rows(grey: NDArray[np.float32]) -> float:
    width = grey.shape[1]
    if width < _REBLUR_PX + 1:
        return 1.0
    half = _REBLUR_PX // 2
    padded = np.pad(grey, ((0, 0), (half, half)), mode="edge")
    blurred = padded[:, :width].copy()
    for shift in range(1, _REBLUR_PX):
        blurred += padded[:, shift : shift + width]
    blurred *= 1.0 / _REBLUR_PX
    sharp_steps = np.abs(np.diff(grey, axis=1))
    blurred_steps = np.abs(np.diff(blurred, axis=1))
    total = float(sharp_steps.sum())
    if total <= _FLAT_VARIATION * sharp_steps.size:
        return 1.0
    lost = float(np.maximum(sharp_steps - blurred_steps, 0.0).sum())
    return (total - lost) / total


def laplacian_variance(grey: NDArray[np.float32]) -> float:
    """Variance of the 4-neighbour Laplacian; 0 for images under 3 px on a side."""
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    centre = grey[1:-1, 1:-1]
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * centre
    return float(laplacian.var())


def histogram_entropy(counts: Sequence[int]) -> float:
    """Entropy in bits of a histogram of grey levels."""
    values = np.asarray(counts, dtype=np.float64)
    probabilities = values[values > 0] / values.sum()
    return float(-(probabilities * np.log2(probabilities)).sum())


def read_orientation(head: IO[bytes]) -> int:
    """The EXIF orientation (1 to 8) from an open original; 1 when absent or unreadable.

    Only the header is parsed: Pillow reads pixels lazily and we never ask for them.
    """
    try:
        with Image.open(head) as image:
            value = image.getexif().get(0x0112, 1)
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1
