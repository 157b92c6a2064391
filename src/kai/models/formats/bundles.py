"""Model bundles: a ZIP of a model's files, unpacked beside it with dataset-archive checks.

Formats whose model is several files (an ONNX graph with external data, a
Hugging Face folder) take them as one ZIP. It is unpacked once into a folder
next to the upload, through :class:`~kai.security.archives.SafeZip`, so
names that climb out, links, bombs and oversize entries are refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from kai.security.archives import ArchiveLimits, SafeZip

UNPACKED_SUFFIX = ".unpacked"
BUNDLE_LIMITS = ArchiveLimits(
    max_entries=10_000,
    max_uncompressed_bytes=64 * 1024**3,
    max_entry_bytes=32 * 1024**3,
    max_compression_ratio=200.0,
    max_name_length=255,
    min_free_bytes=512 * 1024**2,
)


def unpacked_bundle(path: Path) -> Path:
    """The folder the ZIP at ``path`` is unpacked into, unpacking it on first use."""
    folder = path.with_name(path.name + UNPACKED_SUFFIX)
    if not folder.is_dir():
        _unpack(path, folder)
    return folder


def _unpack(path: Path, folder: Path) -> None:
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with SafeZip(path, BUNDLE_LIMITS, free_space_dir=staging) as archive:
        for entry in archive.entries:
            target = staging.joinpath(*PurePosixPath(entry.name).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as sink:
                for chunk in archive.iter_chunks(entry):
                    sink.write(chunk)
    staging.rename(folder)
