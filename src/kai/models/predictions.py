"""Classifying images with a model version, with loaded predictors kept in a small LRU cache.

A version's artifact files are copied from the blob store into a folder of
the cache under the names its format expects, then loaded once; the cache
keeps the last few predictors in memory and drops the oldest (and its
folder) beyond that. Before every load each file's SHA-256 is checked
against its blob address, whether it was copied now or found on disk, so a
blob or cached copy changed behind Kai's back is never loaded. Every image
is checked as an untrusted file first.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from kai.db.tables import ModelVersion
from kai.errors import InvalidInput, UnsafeModelFile
from kai.models.formats import FormatRegistry, ModelSpec, Predictor, create_format_registry
from kai.models.formats.preprocessing import apply_temperature
from kai.models.records import list_artifacts
from kai.security.images import ImageLimits, process_image
from kai.security.model_files import file_sha256
from kai.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

DEFAULT_CACHE_ENTRIES = 4
MAX_TOP_K = 100
_COPY_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LoadRequest:
    """What loading a version needs, read from its rows.

    Attributes:
        version_id: The model version.
        format_name: Its format.
        spec: What its format needs to load it.
        artifacts: ``(name, blob address)`` of each file to load, the original left out.
    """

    version_id: int
    format_name: str
    spec: ModelSpec
    artifacts: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ClassScore:
    """One class and its probability."""

    index: int
    label: str
    probability: float


@dataclass(frozen=True)
class ImagePrediction:
    """The top classes of one image, most probable first."""

    name: str
    top: list[ClassScore]


class PredictorCache:
    """Loaded predictors by version, least recently used dropped first; thread-safe.

    Args:
        blobs: Where the artifact files are.
        cache_dir: Where artifact files are laid out for loading.
        max_entries: How many predictors stay loaded.
    """

    def __init__(
        self, blobs: BlobStore, cache_dir: Path, *, max_entries: int = DEFAULT_CACHE_ENTRIES
    ):
        self.blobs = blobs
        self.cache_dir = cache_dir
        self.max_entries = max_entries
        self._loaded: OrderedDict[int, Predictor] = OrderedDict()
        self._lock = threading.Lock()
        self._registry: FormatRegistry | None = None

    def get(self, request: LoadRequest) -> Predictor:
        """The version's predictor, loaded now if it is not in the cache."""
        with self._lock:
            predictor = self._loaded.get(request.version_id)
            if predictor is not None:
                self._loaded.move_to_end(request.version_id)
                return predictor
            predictor = self._load(request)
            self._loaded[request.version_id] = predictor
            while len(self._loaded) > self.max_entries:
                evicted, _ = self._loaded.popitem(last=False)
                shutil.rmtree(self.cache_dir / str(evicted), ignore_errors=True)
            return predictor

    def lay_out(self, request: LoadRequest) -> Path:
        """The version's folder with every file in place and checked, loaded by nobody.

        Raises:
            UnsafeModelFile: A stored file no longer matches its address.
        """
        folder = self.cache_dir / str(request.version_id)
        for name, sha256 in request.artifacts:
            self._materialise(folder / name, sha256)
        return folder

    def _load(self, request: LoadRequest) -> Predictor:
        if self._registry is None:
            self._registry = create_format_registry()
        folder = self.lay_out(request)
        logger.info(
            "Loading model version %d", request.version_id, extra={"format": request.format_name}
        )
        return self._registry.get(request.format_name).load(folder, request.spec)

    def _materialise(self, target: Path, sha256: str) -> None:
        if target.is_file() and file_sha256(target) == sha256:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        with self.blobs.open(sha256) as source, open(partial, "wb") as sink:
            while chunk := source.read(_COPY_CHUNK_BYTES):
                digest.update(chunk)
                sink.write(chunk)
        if digest.hexdigest() != sha256:
            partial.unlink(missing_ok=True)
            raise UnsafeModelFile(
                f"The stored file {target.name!r} no longer matches its SHA-256 {sha256[:12]}...;"
                " it was changed or damaged in the blob store and is not loaded. Import the "
                "model again",
                details={"file": target.name, "sha256": sha256},
            )
        partial.replace(target)


def predict_images(
    predictor: Predictor,
    images: Sequence[tuple[str, bytes]],
    *,
    limits: ImageLimits,
    top_k: int = 5,
) -> list[ImagePrediction]:
    """The ``top_k`` classes of each image, checked as untrusted files first.

    A version whose training fitted a temperature gives its calibrated probabilities.

    Raises:
        InvalidImage: A file is not an acceptable image; the message names it.
        InvalidInput: No images, or ``top_k`` out of range.
    """
    if not images:
        raise InvalidInput("Send at least one image in the 'file' field", details={"field": "file"})
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidInput(f"topK must be between 1 and {MAX_TOP_K}, not {top_k}")
    decoded = [_decode(data, name, limits) for name, data in images]
    probabilities = apply_temperature(predictor.predict(decoded), predictor.spec.temperature)
    names = predictor.spec.class_names
    return [
        ImagePrediction(name, _top(row, names, top_k))
        for (name, _), row in zip(images, probabilities, strict=True)
    ]


def _decode(data: bytes, name: str, limits: ImageLimits) -> Image.Image:
    checked = process_image(data, limits, name=name)
    image = Image.open(io.BytesIO(checked.reduced or data))
    image.load()
    return image.convert("RGB")


def _top(row: np.ndarray, names: list[str], top_k: int) -> list[ClassScore]:
    order = np.argsort(-row, kind="stable")[:top_k]
    return [
        ClassScore(int(i), names[i] if i < len(names) else f"class {i}", float(row[i]))
        for i in order
    ]


def load_request_for(session: Session, version: ModelVersion) -> LoadRequest:
    """What the cache needs to load ``version``, read from its rows."""
    spec = ModelSpec.model_validate(version.inspection["spec"])
    artifacts = tuple(
        (artifact.name, artifact.blob_sha256)
        for artifact in list_artifacts(session, version.id)
        if artifact.role != "original"
    )
    return LoadRequest(version.id, version.format, spec, artifacts)
