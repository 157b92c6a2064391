"""The embedding cache: one folder per backbone identity, rows keyed by image blob hash.

Rows are written in shards: ``<name>.npy`` holds a ``(n, D)`` float32 matrix
and ``<name>.keys`` its n blob hashes, one a line. A shard's keys file is
renamed into place only after its matrix, so a reader never sees half a
shard, and shard names are random, so two writers never clash. Shards are
memory-mapped on read: a cache larger than memory still serves its rows.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray

from kai.errors import Conflict

logger = logging.getLogger(__name__)

CACHE_DIR_NAME = "embeddings"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MANIFEST = "backbone.json"


class EmbeddingCache:
    """Cached embeddings of one backbone, by image blob hash."""

    def __init__(self, data_dir: Path, identity: str) -> None:
        """Open (creating when needed) the cache of ``identity`` under ``data_dir``."""
        self.identity = identity
        self.folder = data_dir / CACHE_DIR_NAME / _UNSAFE.sub("-", identity)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, tuple[str, int]] = {}
        self._shards: dict[str, NDArray[np.float32]] = {}
        self.refresh()

    @property
    def dimension(self) -> int | None:
        """Features per row, None while the cache is empty."""
        manifest = self.folder / _MANIFEST
        if not manifest.exists():
            return None
        return int(json.loads(manifest.read_text())["dimension"])

    def refresh(self) -> None:
        """Read the shard list again, seeing rows other processes wrote since."""
        for keys in sorted(self.folder.glob("*.keys")):
            if keys.stem in self._shards:
                continue
            matrix = np.load(keys.with_suffix(".npy"), mmap_mode="r")
            self._shards[keys.stem] = matrix
            for row, blob in enumerate(keys.read_text().split()):
                self._rows.setdefault(blob, (keys.stem, row))

    def missing(self, hashes: Sequence[str]) -> list[str]:
        """The distinct hashes without a cached row, in first-seen order."""
        return [blob for blob in dict.fromkeys(hashes) if blob not in self._rows]

    def read(self, hashes: Sequence[str]) -> NDArray[np.float32]:
        """The ``(len(hashes), D)`` rows in the order asked.

        Raises:
            KeyError: A hash has no cached row.
        """
        dimension = self.dimension or 0
        out = np.empty((len(hashes), dimension), dtype=np.float32)
        for index, blob in enumerate(hashes):
            shard, row = self._rows[blob]
            out[index] = self._shards[shard][row]
        return out

    def write(self, rows: Mapping[str, NDArray[np.float32]]) -> None:
        """Add rows as one new shard.

        Raises:
            Conflict: The rows' width differs from the cache's.
        """
        if not rows:
            return
        matrix = np.stack(list(rows.values())).astype(np.float32, copy=False)
        self._check_dimension(int(matrix.shape[1]))
        name = uuid.uuid4().hex
        matrix_path = self.folder / f"{name}.npy"
        _write_atomically(matrix_path, lambda handle: np.save(handle, matrix))
        keys_path = self.folder / f"{name}.keys"
        text = "\n".join(rows) + "\n"
        _write_atomically(keys_path, lambda handle: handle.write(text.encode()))
        self.refresh()

    def _check_dimension(self, dimension: int) -> None:
        known = self.dimension
        if known is None:
            manifest = {"identity": self.identity, "dimension": dimension}
            text = json.dumps(manifest)
            _write_atomically(self.folder / _MANIFEST, lambda handle: handle.write(text.encode()))
        elif known != dimension:
            raise Conflict(
                f"Embeddings of width {dimension} do not fit the cache of {self.identity!r}, "
                f"whose rows have {known}; remove {self.folder} to rebuild it"
            )


def _write_atomically(target: Path, write: Callable[[IO[bytes]], object]) -> None:
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    with temporary.open("wb") as handle:
        write(handle)
    os.replace(temporary, target)
