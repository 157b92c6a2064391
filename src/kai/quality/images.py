"""Per-image statistics, computed in one pass over each sample's reduced copy.

The reduced copy (upright, longest side at most 512 px) is decoded once into
a float RGB array in [0, 1]; every statistic the checks need comes from that
array and its grey version: sharpness as the variance of the Laplacian of
the grey image scaled to unit contrast (so a dark photo is not called
blurry), brightness, contrast, histogram entropy, colourfulness, and the perceptual
hashes that find near duplicates. Only the EXIF orientation comes from the
original, and only its header is read.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from dataclasses import dataclass
from typing import IO

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from kai.quality.hashes import compute_dhash, compute_phash

logger = logging.getLogger(__name__)

# ITU-R BT.601 luma weights.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Channels within this distance of each other everywhere count as grey.
_GREY_TOLERANCE = 2.0 / 255.0
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
        brightness: Mean grey level in [0, 1].
        contrast: Standard deviation of the grey levels.
        entropy_bits: Shannon entropy of the 256-bin grey histogram, 0 to 8 bits.
        is_grayscale: The image holds no colour.
        mean_rgb: The mean of each channel, a coarse colour signature.
        phash: 64-bit DCT perceptual hash.
        dhash: 64-bit difference hash.
    """

    laplacian_var: float
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
    rgb = decode_rgb(data)
    grey = rgb @ _LUMA
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return ImageStats(
        laplacian_var=laplacian_variance(normalise_contrast(grey)),
        brightness=float(grey.mean()),
        contrast=float(grey.std()),
        entropy_bits=histogram_entropy(grey),
        is_grayscale=bool(spread.max() <= _GREY_TOLERANCE),
        mean_rgb=(float(rgb[..., 0].mean()), float(rgb[..., 1].mean()), float(rgb[..., 2].mean())),
        phash=compute_phash(grey),
        dhash=compute_dhash(grey),
    )


def decode_rgb(data: bytes) -> NDArray[np.float32]:
    """The image as an ``(height, width, 3)`` float array in [0, 1]."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                # Transparent pixels are shown on white by the panel; judge them the same way.
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                flat = Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
            else:
                flat = image.convert("RGB")
    except _DECODE_ERRORS as exc:
        raise UnreadableImage(f"does not decode: {exc}") from exc
    return np.asarray(flat, dtype=np.float32) / 255.0


def normalise_contrast(grey: NDArray[np.float32]) -> NDArray[np.float32]:
    """The grey image scaled to unit standard deviation, so exposure never reads as blur.

    A flat image (standard deviation under 1/255) stays as it is: it has no edges to judge.
    """
    spread = float(grey.std())
    if spread < 1.0 / 255.0:
        return grey
    scaled: NDArray[np.float32] = (grey - grey.mean()) / spread
    return scaled


def laplacian_variance(grey: NDArray[np.float32]) -> float:
    """Variance of the 4-neighbour Laplacian; 0 for images under 3 px on a side."""
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    centre = grey[1:-1, 1:-1]
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * centre
    return float(laplacian.var())


def histogram_entropy(grey: NDArray[np.float32]) -> float:
    """Entropy in bits of the grey levels quantised to 256 bins."""
    levels = np.clip((grey * 255.0).round(), 0, 255).astype(np.uint8)
    counts = np.bincount(levels.ravel(), minlength=256).astype(np.float64)
    probabilities = counts[counts > 0] / counts.sum()
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
