"""Images like this one: the gallery asks the version's similarity index for a sample's nearest.

The index is the one the version's last analysis wrote: the samples' unit
embeddings, memory-mapped and searched block by block, so the answer costs
one pass over the matrix and nothing is embedded at request time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from kai.db.tables import DatasetVersion, Sample
from kai.embeddings import open_index
from kai.errors import Conflict, InvalidInput, NotFound
from kai.quality.features import index_path

MAX_SIMILAR = 100


@dataclass(frozen=True)
class SimilarSample:
    """A sample and its cosine similarity to the one asked about."""

    sample: Sample
    similarity: float


def find_similar_samples(
    session: Session,
    version: DatasetVersion,
    sample_uid: str,
    *,
    data_dir: Path,
    limit: int,
) -> list[SimilarSample]:
    """The ``limit`` samples of ``version`` most like sample ``sample_uid``, most similar first.

    Raises:
        InvalidInput: ``limit`` is out of range.
        NotFound: The version has no such sample.
        Conflict: The version has no similarity index yet, or the sample has no embedding.
    """
    if not 1 <= limit <= MAX_SIMILAR:
        raise InvalidInput(f"limit must be between 1 and {MAX_SIMILAR}, not {limit}")
    _require_sample(session, version, sample_uid)
    path = index_path(data_dir, version.id)
    if not path.is_file():
        raise Conflict(
            f"Version {version.number} of dataset {version.dataset_id} has no similarity index; "
            "analyse it (POST .../quality) with the embedding backbone on",
            details={"datasetId": version.dataset_id, "version": version.number},
        )
    index = open_index(path)
    row = index.position(sample_uid)
    if row is None:
        raise Conflict(f"Sample {sample_uid!r} has no embedding: its image could not be read")
    query = np.asarray(index.matrix[row : row + 1], dtype=np.float32)
    found = index.search(query, limit, exclude=[row])
    pairs = [
        (index.keys[int(i)], float(s))
        for i, s in zip(found.indices[0], found.similarities[0], strict=True)
        if i >= 0
    ]
    return _with_rows(session, version, pairs)


def _require_sample(session: Session, version: DatasetVersion, uid: str) -> None:
    query = select(Sample.id).where(Sample.version_id == version.id, Sample.uid == uid)
    if session.scalar(query) is None:
        raise NotFound(
            f"Version {version.number} of dataset {version.dataset_id} has no sample {uid!r}"
        )


def _with_rows(
    session: Session, version: DatasetVersion, pairs: list[tuple[str, float]]
) -> list[SimilarSample]:
    if not pairs:
        return []
    uids = [uid for uid, _ in pairs]
    query = select(Sample).where(Sample.version_id == version.id, Sample.uid.in_(uids))
    rows = {sample.uid: sample for sample in session.scalars(query)}
    return [SimilarSample(rows[uid], round(score, 4)) for uid, score in pairs if uid in rows]
