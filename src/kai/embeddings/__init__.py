"""Image embeddings from pretrained backbones, cached on disk, with a similarity index.

Quality analysis and training's feature-extraction mode both call
:func:`compute_embeddings`: it returns an ``(N, D)`` float32 array for N
image blob hashes, computing only the rows the cache lacks. The cache lives
under the data dir, one folder per backbone identity (its architecture, a
digest of its weights, its input size), one row per image blob hash, so a
second analysis or a training run reads rows instead of recomputing them.

    from kai.embeddings import EmbeddingCache, compute_embeddings, load_lite0_backbone

    backbone = load_lite0_backbone()
    cache = EmbeddingCache(settings.resolved_data_dir, backbone.identity)
    vectors = compute_embeddings(hashes, blobs=blobs, backbone=backbone, cache=cache)

A model version of any format whose predictor gives features (ONNX, Keras,
TFLite, ...) embeds through :func:`load_version_backbone`, under the
identity ``model-version-<id>``: its graph has no tensors to digest here.

:class:`VectorIndex` answers "images like this one" over a memory-mapped
matrix of unit rows, block by block.
"""

from kai.embeddings._backbones import (
    DEFAULT_BACKBONE,
    Backbone,
    BackboneUnavailable,
    create_backbone,
    load_lite0_backbone,
    load_random_backbone,
    load_weights_backbone,
)
from kai.embeddings._cache import CACHE_DIR_NAME, EmbeddingCache
from kai.embeddings._compute import compute_embeddings, embed_pixels, fit_image
from kai.embeddings._index import (
    Neighbours,
    VectorIndex,
    create_index,
    normalise_rows,
    open_index,
)
from kai.embeddings._versions import (
    create_extractor_backbone,
    create_extractor_network,
    load_version_backbone,
)

__all__ = [
    "CACHE_DIR_NAME",
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneUnavailable",
    "EmbeddingCache",
    "Neighbours",
    "VectorIndex",
    "compute_embeddings",
    "create_backbone",
    "create_extractor_backbone",
    "create_extractor_network",
    "create_index",
    "embed_pixels",
    "fit_image",
    "load_lite0_backbone",
    "load_random_backbone",
    "load_version_backbone",
    "load_weights_backbone",
    "normalise_rows",
    "open_index",
]
