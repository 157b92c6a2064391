"""Perceptual hashes and the banded index that finds hashes a few bits apart.

Two 64-bit hashes of the grey image are kept: the DCT hash (pHash), which
survives resizing, recompression and small crops, and the difference hash
(dHash), which confirms a match cheaply. Near-duplicate candidates come from
splitting each pHash into eight bytes: by the pigeonhole principle two hashes
at most seven bits apart share at least one byte, so only hashes that share
a byte are ever compared, and no all-pairs comparison is made.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image

HASH_BITS = 64
_PHASH_SIZE = 32
_PHASH_KEEP = 8
_BANDS = 8
# A band shared by more distinct hashes than this says nothing (flat images); skip it.
MAX_BUCKET = 2000


def compute_phash(grey: NDArray[np.float32] | Image.Image) -> int:
    """The DCT hash: signs of the 8x8 lowest frequencies against their median."""
    small = _resize(grey, _PHASH_SIZE, _PHASH_SIZE)
    basis = _dct_basis(_PHASH_SIZE)
    coefficients = basis @ small @ basis.T
    low = coefficients[:_PHASH_KEEP, :_PHASH_KEEP].ravel()
    # The DC term says only how bright the image is; leave it out of the median.
    bits = low > np.median(low[1:])
    return _pack(bits)


def compute_dhash(grey: NDArray[np.float32] | Image.Image) -> int:
    """The difference hash: whether each pixel of a 9x8 thumbnail is brighter than its right."""
    small = _resize(grey, 9, 8)
    bits = small[:, 1:] > small[:, :-1]
    return _pack(bits.ravel())


def hamming(a: int, b: int) -> int:
    """How many bits two hashes differ in."""
    return (a ^ b).bit_count()


def find_close_pairs(hashes: Sequence[int], *, max_distance: int) -> Iterator[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose hashes differ in at most ``max_distance`` bits.

    Args:
        hashes: 64-bit hashes; equal hashes are paired too.
        max_distance: At most ``_BANDS - 1`` so that the band index finds every pair.
    """
    if not 0 <= max_distance < _BANDS:
        raise ValueError(f"max_distance must be 0 to {_BANDS - 1}, not {max_distance}")
    seen: set[tuple[int, int]] = set()
    for band in range(_BANDS):
        buckets: dict[int, list[int]] = defaultdict(list)
        for index, value in enumerate(hashes):
            buckets[(value >> (8 * band)) & 0xFF].append(index)
        for members in buckets.values():
            yield from _bucket_pairs(members, hashes, max_distance, seen)


def _bucket_pairs(
    members: list[int],
    hashes: Sequence[int],
    max_distance: int,
    seen: set[tuple[int, int]],
) -> Iterator[tuple[int, int]]:
    if len(members) > MAX_BUCKET:
        return
    for position, i in enumerate(members):
        for j in members[position + 1 :]:
            if (i, j) in seen or hamming(hashes[i], hashes[j]) > max_distance:
                continue
            seen.add((i, j))
            yield i, j


def _resize(
    grey: NDArray[np.float32] | Image.Image, width: int, height: int
) -> NDArray[np.float32]:
    """The grey pixels (an array, or a float image of them) averaged down to the size."""
    image = grey if isinstance(grey, Image.Image) else Image.fromarray(grey.astype(np.float32))
    resized = image.resize((width, height), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.float32)


@functools.cache
def _dct_basis(size: int) -> NDArray[np.float32]:
    """The orthonormal DCT-II matrix, so that ``basis @ x @ basis.T`` is the 2-D DCT."""
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    basis = np.cos(np.pi * (2 * n + 1) * k / (2 * size)) * np.sqrt(2.0 / size)
    basis[0] /= np.sqrt(2.0)
    result: NDArray[np.float32] = basis.astype(np.float32)
    return result


def _pack(bits: NDArray[np.bool_]) -> int:
    """The first 64 bits as an integer, the first bit the most significant."""
    return int.from_bytes(np.packbits(bits.ravel()[:HASH_BITS]).tobytes(), "big")
