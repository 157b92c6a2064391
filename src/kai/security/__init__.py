"""Defences against untrusted input: archives and images.

Everything a user uploads is hostile until these checks pass. Authentication,
the SSRF-safe downloader and safe model loading live here too, each in its own
module; import them from their modules.
"""

from kai.security.archives import (
    ArchiveEntry,
    ArchiveLimits,
    ArchiveRule,
    SafeZip,
    SkippedEntry,
    SkipReason,
)
from kai.security.images import (
    ImageFormat,
    ImageLimits,
    ProcessedImage,
    make_thumbnail,
    process_image,
    sniff_format,
)

__all__ = [
    "ArchiveEntry",
    "ArchiveLimits",
    "ArchiveRule",
    "ImageFormat",
    "ImageLimits",
    "ProcessedImage",
    "SafeZip",
    "SkipReason",
    "SkippedEntry",
    "make_thumbnail",
    "process_image",
    "sniff_format",
]
