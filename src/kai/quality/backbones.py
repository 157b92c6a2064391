"""Which backbone the analysis embeds with, as the ``embedding_backbone`` setting names it.

``efficientnet_lite0`` (the default) is the bundled ImageNet EfficientNet-Lite0;
``model:<id>`` is a stored model version (a state dict's network without its
head, or the features of any other format's predictor); ``random:<arch>`` is a
timm architecture with random weights, which only tests should use; ``none``
turns the embedding checks off. A backbone that cannot be loaded gives the
reason instead, and the analysis runs without the embedding checks.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select

from kai.config import Settings
from kai.db.engine import Database
from kai.db.tables import ModelArtifact, ModelVersion
from kai.embeddings import (
    DEFAULT_BACKBONE,
    Backbone,
    BackboneUnavailable,
    EmbeddingCache,
    load_lite0_backbone,
    load_random_backbone,
    load_version_backbone,
    load_weights_backbone,
)
from kai.models.formats import ModelSpec
from kai.quality.features import Embedder, index_path
from kai.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "weights.safetensors"


def resolve_embedder(
    settings: Settings,
    db: Database,
    blobs: BlobStore,
    *,
    version_id: int,
    work_dir: Path,
) -> Embedder | str:
    """The embedder for dataset version ``version_id``, or why there is none."""
    choice = settings.embedding_backbone.strip()
    if choice.lower() == "none":
        return "the embedding backbone is turned off (KAI_EMBEDDING_BACKBONE=none)"
    try:
        backbone = _load(choice, settings, db, blobs, work_dir)
    except BackboneUnavailable as exc:
        logger.warning("No embedding backbone: %s", exc)
        return f"the backbone {choice!r} could not be loaded: {exc}"
    cache = EmbeddingCache(settings.resolved_data_dir, backbone.identity)
    return Embedder(backbone, cache, index_path(settings.resolved_data_dir, version_id))


def _load(
    choice: str, settings: Settings, db: Database, blobs: BlobStore, work_dir: Path
) -> Backbone:
    size = settings.embedding_image_size_px
    if choice in ("", DEFAULT_BACKBONE):
        return load_lite0_backbone(image_size_px=size)
    kind, _, name = choice.partition(":")
    if kind == "random" and name:
        return load_random_backbone(name, image_size_px=size)
    if kind == "model" and name.isdigit():
        return _model_backbone(int(name), db, blobs, work_dir)
    raise BackboneUnavailable(
        f"Unknown embedding backbone {choice!r}; use {DEFAULT_BACKBONE}, model:<version id>, "
        "random:<timm architecture> or none"
    )


def _model_backbone(version_id: int, db: Database, blobs: BlobStore, work_dir: Path) -> Backbone:
    with db.session() as session:
        version = session.get(ModelVersion, version_id)
        if version is None or "spec" not in version.inspection:
            raise BackboneUnavailable(f"Model version {version_id} does not exist or has no spec")
        spec = ModelSpec.model_validate(version.inspection["spec"])
        sha256 = session.scalar(
            select(ModelArtifact.blob_sha256).where(
                ModelArtifact.version_id == version_id, ModelArtifact.name == WEIGHTS_NAME
            )
        )
        if sha256 is None or not spec.architecture:
            cache_dir = work_dir / "backbone"
            return load_version_backbone(session, blobs, version_id, cache_dir=cache_dir)
    path = blobs.local_path(sha256)
    if path is None:
        work_dir.mkdir(parents=True, exist_ok=True)
        path = work_dir / WEIGHTS_NAME
        path.write_bytes(blobs.read_bytes(sha256))
    return load_weights_backbone(
        spec.architecture,
        path,
        name=f"model version {version_id}",
        spec=spec.input,
        num_classes=spec.num_classes,
        weights_sha256=sha256,
    )
