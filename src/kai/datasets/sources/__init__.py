"""Premade dataset sources: one module per repository, and the sample texture set.

Each repository is read through its own client (``huggingface_hub`` and
``datasets``, ``kagglehub``, ``tensorflow-datasets``, a server folder for
ImageNet), which falls back on the cache its own download fills when the
network is out of reach. :func:`open_premade` opens a checked
:class:`PremadeRequest` and plans the images to ingest; the job that runs a
premade import lives in :mod:`kai.datasets.sources.premade`, imported
explicitly by the entry points.
"""

from kai.datasets.sources.opened import OpenedSource, SourceImage, cap_per_class
from kai.datasets.sources.opening import describe_source, open_premade
from kai.datasets.sources.references import Repository, SourceRef, parse_source_id
from kai.datasets.sources.request import PremadeOptions, PremadeRequest, resolve_request

__all__ = [
    "OpenedSource",
    "PremadeOptions",
    "PremadeRequest",
    "Repository",
    "SourceImage",
    "SourceRef",
    "cap_per_class",
    "describe_source",
    "open_premade",
    "parse_source_id",
    "resolve_request",
]
