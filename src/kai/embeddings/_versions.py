"""Backbones from stored model versions of any format whose predictor gives features.

A graph model (ONNX, Keras, TFLite, or a head Kai trained over one) cannot
be cut as a PyTorch module, but its predictor implements
:class:`~kai.models.formats.FeatureExtractor`. The version is loaded the way
predictions load it, through :class:`~kai.models.PredictorCache`, which
checks every artifact file against its blob hash, and the predictor's
``extract_features`` becomes the backbone's network. The identity is
``model-version-<id>`` (a graph has no tensors to digest here), so quality
analysis (``KAI_EMBEDDING_BACKBONE=model:<id>``) and training share the rows.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from kai.embeddings._backbones import Backbone, BackboneUnavailable
from kai.errors import KaiError
from kai.models import PredictorCache, get_version, load_request_for
from kai.models.formats import FeatureExtractor
from kai.storage.blobs import BlobStore

if TYPE_CHECKING:
    from torch import nn


@functools.cache
def _extractor_network_class() -> type[nn.Module]:
    """The module class, made on first use so that importing this service loads no PyTorch."""
    import torch
    from torch import nn

    class ExtractorNetwork(nn.Module):
        """A predictor's ``extract_features`` as a module: ``(B, 3, H, W)`` in, ``(B, D)`` out."""

        def __init__(self, extractor: FeatureExtractor) -> None:
            super().__init__()
            self.extractor = extractor

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            """The features of a normalised batch, as float32 rows."""
            features = self.extractor.extract_features(batch.contiguous())
            return torch.from_numpy(features).to(torch.float32).reshape(len(batch), -1)

    return ExtractorNetwork


def create_extractor_network(extractor: FeatureExtractor) -> Any:
    """An ``nn.Module`` whose forward pass is ``extractor.extract_features``."""
    return _extractor_network_class()(extractor)


def create_extractor_backbone(extractor: FeatureExtractor, *, identity: str) -> Backbone:
    """A backbone that embeds with ``extractor`` at its own square input size.

    Raises:
        BackboneUnavailable: The model's input is not square.
    """
    spec = extractor.spec.input
    height, width = spec.size_px
    if height != width:
        raise BackboneUnavailable(
            f"Backbone {identity!r} takes {height}x{width} images; embedding needs a square input"
        )
    network = create_extractor_network(extractor)
    return Backbone(f"{identity}-{height}px", network, int(height), spec.mean, spec.std)


def load_version_backbone(
    session: Session, blobs: BlobStore, version_id: int, *, cache_dir: Path
) -> Backbone:
    """The backbone of model version ``version_id``, loaded through the predictor cache.

    Args:
        session: An open session, to read the version's rows.
        blobs: Where its artifact files are.
        version_id: The model version.
        cache_dir: Where its files are laid out to load.

    Raises:
        BackboneUnavailable: The version does not exist, does not load, or gives no features.
    """
    try:
        version = get_version(session, version_id)
        request = load_request_for(session, version)
        predictor = PredictorCache(blobs, cache_dir, max_entries=1).get(request)
    except (KaiError, OSError, RuntimeError, ValueError) as exc:
        raise BackboneUnavailable(f"Model version {version_id} does not load: {exc}") from exc
    if not isinstance(predictor, FeatureExtractor):
        raise BackboneUnavailable(
            f"Model version {version_id} is in format {version.format!r}, whose predictor "
            "gives no features to embed with"
        )
    return create_extractor_backbone(predictor, identity=f"model-version-{version_id}")
