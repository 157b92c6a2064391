"""The analysis's embeddings: every readable sample embedded once, indexed, with its neighbours.

Embeddings come from :mod:`kai.embeddings` and its cache, so a second
analysis of the same images (or a training run on the same backbone)
reads them instead of recomputing. The version's unit rows are written as
a similarity index the gallery's "images like this one" searches later.
When the backbone cannot be loaded or an image cannot be embedded, the
analysis goes on without the embedding checks and says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from kai.embeddings import (
    Backbone,
    BackboneUnavailable,
    EmbeddingCache,
    Neighbours,
    VectorIndex,
    compute_embeddings,
    create_index,
    normalise_rows,
    open_index,
)
from kai.errors import Conflict, InvalidImage, NotFound
from kai.quality.samples import Inspected
from kai.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

INDEX_DIR_NAME = "indexes"
# Neighbours kept per sample: enough for outliers and to link copies into clusters.
NEIGHBOURS = 10
_EMBED_ERRORS = (BackboneUnavailable, InvalidImage, NotFound, Conflict, OSError, RuntimeError)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Embedder:
    """How the analysis embeds: a backbone, its cache, and where the version's index goes.

    Attributes:
        backbone: The feature extractor.
        cache: The backbone's embedding cache.
        index_path: Where to write the version's similarity index; None keeps it in memory.
    """

    backbone: Backbone
    cache: EmbeddingCache
    index_path: Path | None = None


@dataclass(frozen=True)
class Features:
    """The readable samples' unit embeddings and each one's nearest others.

    Attributes:
        positions: Each row's position among the inspected samples.
        vectors: ``(n, D)`` unit rows.
        neighbours: The ``NEIGHBOURS`` nearest rows of each row (row numbers, not positions).
        identity: The backbone's identity.
    """

    positions: list[int]
    vectors: NDArray[np.float32]
    neighbours: Neighbours
    identity: str
    rows: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rows = {position: row for row, position in enumerate(self.positions)}
        object.__setattr__(self, "rows", rows)

    def similarity(self, first: int, second: int) -> float | None:
        """Cosine similarity of two inspected samples, None unless both were embedded."""
        a, b = self.rows.get(first), self.rows.get(second)
        if a is None or b is None:
            return None
        return float(self.vectors[a] @ self.vectors[b])


def index_path(data_dir: Path, version_id: int) -> Path:
    """Where the similarity index of dataset version ``version_id`` is kept."""
    return data_dir / INDEX_DIR_NAME / f"version-{version_id}.npy"


def compute_features(
    inspected: Sequence[Inspected],
    blobs: BlobStore,
    embedder: Embedder,
    *,
    progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> Features | str:
    """The features of the readable samples, or why the embedding checks cannot run."""
    positions = [i for i, sample in enumerate(inspected) if sample.stats is not None]
    if not positions:
        return "no image could be read"
    hashes = [inspected[i].record.reduced_sha256 for i in positions]
    try:
        raw = compute_embeddings(
            hashes,
            blobs=blobs,
            backbone=embedder.backbone,
            cache=embedder.cache,
            progress=progress,
            check_cancelled=check_cancelled,
        )
    except _EMBED_ERRORS as exc:
        logger.warning("Embedding checks skipped: %s", exc)
        return f"the images could not be embedded: {exc}"
    uids = [inspected[i].record.uid for i in positions]
    # Centred on the dataset's mean, cosine similarity tells this dataset's images apart.
    index = _index(normalise_rows(raw - raw.mean(axis=0)), uids, embedder.index_path)
    neighbours = index.search_all(NEIGHBOURS)
    vectors = np.asarray(index.matrix, dtype=np.float32)
    return Features(positions, vectors, neighbours, embedder.backbone.identity)


def _index(unit: NDArray[np.float32], uids: list[str], path: Path | None) -> VectorIndex:
    if path is None:
        return VectorIndex(unit, uids)
    create_index(path.parent, path.stem, unit, uids)
    return open_index(path)
