"""A similarity index over embeddings that scales past memory.

The index is a memory-mapped ``(N, D)`` float32 matrix of unit rows on disk,
beside a JSON list of the N item keys. Searches read it block by block, so
only a block of rows and a block of scores are in memory at once: cosine
similarity is a dot product of unit rows, taken for one query block against
every column block while the best k per query are kept.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from kai.errors import InvalidInput

BLOCK_ROWS = 2048
_EPSILON = 1e-12


@dataclass(frozen=True)
class Neighbours:
    """The k nearest items of each query, nearest first.

    Attributes:
        indices: ``(Q, k)`` item positions; -1 where fewer than k items exist.
        similarities: ``(Q, k)`` cosine similarities; -inf where there is no item.
    """

    indices: NDArray[np.int64]
    similarities: NDArray[np.float32]


class VectorIndex:
    """Unit-normalised embeddings on disk, with their keys, searched in blocks."""

    def __init__(self, matrix: NDArray[np.float32], keys: Sequence[str]) -> None:
        """Wrap a (possibly memory-mapped) matrix of unit rows and one key per row."""
        if len(keys) != len(matrix):
            raise ValueError(f"{len(keys)} keys for {len(matrix)} rows")
        self.matrix = matrix
        self.keys = list(keys)
        self._positions = {key: position for position, key in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def position(self, key: str) -> int | None:
        """The row of ``key``, None when the index does not hold it."""
        return self._positions.get(key)

    def search(
        self, queries: NDArray[np.float32], k: int, *, exclude: Sequence[int] | None = None
    ) -> Neighbours:
        """The ``k`` most similar items of each query row (unit rows expected).

        Args:
            queries: ``(Q, D)`` unit rows.
            k: Neighbours per query.
            exclude: Per query, one item position never returned (the query itself).
        """
        count = len(queries)
        k = max(0, min(k, len(self) - (1 if exclude is not None else 0)))
        best_sim = np.full((count, k), -np.inf, dtype=np.float32)
        best_idx = np.full((count, k), -1, dtype=np.int64)
        if k == 0 or count == 0:
            return Neighbours(best_idx, best_sim)
        for start, block in self._blocks():
            scores = queries @ block.T
            if exclude is not None:
                _mask_self(scores, exclude, start)
            best_sim, best_idx = _merge_top(best_sim, best_idx, scores, start, k)
        return Neighbours(best_idx, best_sim)

    def search_all(self, k: int) -> Neighbours:
        """The ``k`` nearest other items of every item, query block by query block."""
        parts: list[Neighbours] = []
        for start, block in self._blocks():
            rows = np.arange(start, start + len(block))
            parts.append(self.search(np.asarray(block), k, exclude=rows.tolist()))
        if not parts:
            empty = np.zeros((0, 0))
            return Neighbours(empty.astype(np.int64), empty.astype(np.float32))
        indices = np.concatenate([part.indices for part in parts])
        similarities = np.concatenate([part.similarities for part in parts])
        return Neighbours(indices, similarities)

    def _blocks(self) -> Iterator[tuple[int, NDArray[np.float32]]]:
        for start in range(0, len(self), BLOCK_ROWS):
            yield start, np.asarray(self.matrix[start : start + BLOCK_ROWS], dtype=np.float32)


def normalise_rows(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """Each row scaled to unit length; zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: NDArray[np.float32] = (vectors / np.maximum(norms, _EPSILON)).astype(np.float32)
    return unit


def create_index(
    folder: Path, name: str, vectors: NDArray[np.float32], keys: Sequence[str]
) -> Path:
    """Write an index of ``vectors`` (normalised here) and ``keys`` to ``folder``; its path.

    The matrix and keys are written to temporary files and renamed into place,
    so a reader sees the old index or the new one, never a mix.
    """
    if len(vectors) != len(keys):
        raise ValueError(f"{len(keys)} keys for {len(vectors)} rows")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.npy"
    token = uuid.uuid4().hex
    matrix_tmp = folder / f".{name}.{token}.npy"
    keys_tmp = folder / f".{name}.{token}.json"
    np.save(matrix_tmp, normalise_rows(vectors))
    keys_tmp.write_text(json.dumps(list(keys)))
    os.replace(keys_tmp, folder / f"{name}.json")
    os.replace(matrix_tmp, target)
    return target


def open_index(path: Path) -> VectorIndex:
    """The index written at ``path`` by :func:`create_index`, memory-mapped.

    Raises:
        InvalidInput: The files are missing or do not match.
    """
    keys_path = path.with_suffix(".json")
    if not path.is_file() or not keys_path.is_file():
        raise InvalidInput(f"No similarity index at {path}")
    matrix = np.load(path, mmap_mode="r")
    keys = json.loads(keys_path.read_text())
    if not isinstance(keys, list) or len(keys) != len(matrix):
        raise InvalidInput(f"The similarity index at {path} is damaged; analyse the version again")
    return VectorIndex(matrix, [str(key) for key in keys])


def _mask_self(scores: NDArray[np.float32], exclude: Sequence[int], start: int) -> None:
    positions = np.asarray(exclude, dtype=np.int64) - start
    inside = (positions >= 0) & (positions < scores.shape[1])
    scores[np.nonzero(inside)[0], positions[inside]] = -np.inf


def _merge_top(
    best_sim: NDArray[np.float32],
    best_idx: NDArray[np.int64],
    scores: NDArray[np.float32],
    start: int,
    k: int,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    columns = np.arange(start, start + scores.shape[1], dtype=np.int64)
    sims = np.concatenate([best_sim, scores.astype(np.float32)], axis=1)
    idx = np.concatenate([best_idx, np.broadcast_to(columns, scores.shape)], axis=1)
    keep = np.argpartition(-sims, k - 1, axis=1)[:, :k] if sims.shape[1] > k else None
    if keep is not None:
        sims = np.take_along_axis(sims, keep, axis=1)
        idx = np.take_along_axis(idx, keep, axis=1)
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(idx, order, axis=1)
