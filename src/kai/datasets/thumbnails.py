"""Thumbnails of samples, made on first request and cached on local disk.

A thumbnail is made from the sample's reduced copy, which is small already,
and kept under ``<data dir>/cache/thumbnails/<size>/`` by the reduced blob's
hash. The cache is disposable: deleting it only costs the time to remake it.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from kai.config import Settings
from kai.security.images import ImageFormat, make_thumbnail, sniff_format
from kai.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

MEDIA_TYPES = {
    ImageFormat.JPEG: "image/jpeg",
    ImageFormat.PNG: "image/png",
    ImageFormat.GIF: "image/gif",
    ImageFormat.WEBP: "image/webp",
    ImageFormat.BMP: "image/bmp",
    ImageFormat.TIFF: "image/tiff",
}


def media_type(data_head: bytes) -> str:
    """The media type of image bytes, from their magic."""
    image_format = sniff_format(data_head)
    return (
        MEDIA_TYPES.get(image_format, "application/octet-stream")
        if image_format
        else ("application/octet-stream")
    )


def read_thumbnail(blobs: BlobStore, settings: Settings, reduced_sha256: str) -> bytes:
    """The thumbnail of a reduced copy, made and cached when missing."""
    size_px = settings.thumbnail_size_px
    path = thumbnail_path(settings, reduced_sha256, size_px)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data = make_thumbnail(blobs.read_bytes(reduced_sha256), size_px)
    _write_atomically(path, data)
    logger.debug("Thumbnail made", extra={"blob": reduced_sha256, "size_px": size_px})
    return data


def thumbnail_path(settings: Settings, sha256: str, size_px: int) -> Path:
    """Where the cached thumbnail of a blob lives."""
    root = settings.resolved_data_dir / "cache" / "thumbnails" / str(size_px)
    return root / sha256[:2] / sha256


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
    partial.write_bytes(data)
    os.replace(partial, path)
