"""Embedding images: decode reduced copies, batch them through a backbone, cache the rows.

Only hashes the cache lacks are computed, each once however often it is
asked for. Images are fitted whole to the backbone's square input (scaled
and centre-cropped to the square, with no further crop), because duplicate
and outlier checks need the whole frame. The next batch decodes on a few
threads while the current one runs through the network.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from kai.embeddings._backbones import Backbone
from kai.embeddings._cache import EmbeddingCache
from kai.errors import InvalidImage
from kai.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
DECODE_THREADS = 4
# Rows are written to the cache in shards of about this many, so a cancelled run keeps most.
_FLUSH_ROWS = 1024

Progress = Callable[[int, int], None]


def compute_embeddings(
    hashes: Sequence[str],
    *,
    blobs: BlobStore,
    backbone: Backbone,
    cache: EmbeddingCache,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> NDArray[np.float32]:
    """The ``(len(hashes), D)`` float32 embeddings of the images stored under ``hashes``.

    Args:
        hashes: Blob hashes of images (Kai passes the reduced copies), repeats allowed.
        blobs: Where the images are.
        backbone: The network that embeds them; ``cache`` must be its cache.
        cache: Read first; the rows computed here are added to it.
        batch_size: Images per forward pass.
        progress: Called with (computed, to compute) after each batch.
        check_cancelled: Called before each batch; raises to stop.

    Raises:
        InvalidImage: A blob does not decode to an image; the message names it.
        NotFound: A blob is missing from the store.
    """
    if cache.identity != backbone.identity:
        raise ValueError(f"cache {cache.identity!r} is not backbone {backbone.identity!r}'s")
    missing = cache.missing(hashes)
    if missing:
        logger.info("Embedding %d images with %s", len(missing), backbone.identity)
        _embed_into_cache(missing, blobs, backbone, cache, batch_size, progress, check_cancelled)
    return cache.read(hashes)


def _embed_into_cache(
    missing: list[str],
    blobs: BlobStore,
    backbone: Backbone,
    cache: EmbeddingCache,
    batch_size: int,
    progress: Progress | None,
    check_cancelled: Callable[[], None] | None,
) -> None:
    batches = [missing[i : i + batch_size] for i in range(0, len(missing), batch_size)]
    pending: dict[str, NDArray[np.float32]] = {}
    done = 0
    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="embed") as pool:
        upcoming = _decode_batch(pool, batches[0], blobs, backbone)
        for index, batch in enumerate(batches):
            if check_cancelled is not None:
                check_cancelled()
            pixels = np.stack([future.result() for future in upcoming])
            if index + 1 < len(batches):
                upcoming = _decode_batch(pool, batches[index + 1], blobs, backbone)
            features = embed_pixels(backbone, pixels)
            pending.update(zip(batch, features, strict=True))
            if len(pending) >= _FLUSH_ROWS:
                cache.write(pending)
                pending = {}
            done += len(batch)
            if progress is not None:
                progress(done, len(missing))
    cache.write(pending)


def embed_pixels(backbone: Backbone, pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Features of a ``(B, H, W, 3)`` uint8 batch already fitted to the backbone's size."""
    import torch

    batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    mean = torch.tensor(backbone.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, dtype=torch.float32).view(1, 3, 1, 1)
    batch = ((batch - mean) / std).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        features = backbone.network(batch)
    return np.ascontiguousarray(features.reshape(len(pixels), -1).numpy(), dtype=np.float32)


def fit_image(data: bytes, size_px: int, *, name: str) -> NDArray[np.uint8]:
    """An image's bytes as a ``(size, size, 3)`` uint8 array, scaled and centre-cropped.

    Raises:
        InvalidImage: The bytes do not decode; the message names ``name``.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"Image {name} cannot be decoded for embedding: {exc}") from exc
    fitted = ImageOps.fit(rgb, (size_px, size_px), method=Image.Resampling.BILINEAR)
    return np.asarray(fitted, dtype=np.uint8)


def _decode_batch(
    pool: ThreadPoolExecutor, batch: list[str], blobs: BlobStore, backbone: Backbone
) -> list[Future[NDArray[np.uint8]]]:
    return [pool.submit(_decode, blobs, blob, backbone.image_size_px) for blob in batch]


def _decode(blobs: BlobStore, blob: str, size_px: int) -> NDArray[np.uint8]:
    return fit_image(blobs.read_bytes(blob), size_px, name=blob)
