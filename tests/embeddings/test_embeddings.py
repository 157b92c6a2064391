"""Embeddings: computed once per image and backbone, cached on disk, searched in blocks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kai.embeddings as embeddings
from kai.embeddings import (
    EmbeddingCache,
    VectorIndex,
    compute_embeddings,
    create_index,
    load_random_backbone,
    normalise_rows,
    open_index,
)
from kai.errors import InvalidImage, JobCancelled
from kai.storage.blobs import LocalBlobStore

SIZE_PX = 32


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((SIZE_PX, SIZE_PX, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def backbone() -> embeddings.Backbone:
    return load_random_backbone("test_efficientnet", image_size_px=SIZE_PX)


def test_the_public_surface_is_pinned() -> None:
    assert {"Backbone", "EmbeddingCache", "VectorIndex", "compute_embeddings"} <= set(
        embeddings.__all__
    )
    assert all(hasattr(embeddings, name) for name in embeddings.__all__)


def test_embeddings_are_float32_rows_in_the_order_asked(
    blobs: LocalBlobStore, data_dir: Path, backbone: embeddings.Backbone
) -> None:
    hashes = [blobs.put_bytes(png(seed)) for seed in range(5)]
    cache = EmbeddingCache(data_dir, backbone.identity)
    vectors = compute_embeddings([*hashes, hashes[0]], blobs=blobs, backbone=backbone, cache=cache)
    assert vectors.dtype == np.float32 and vectors.shape[0] == 6 and vectors.shape[1] > 1
    np.testing.assert_array_equal(vectors[0], vectors[5])
    assert not np.allclose(vectors[0], vectors[1])


def test_a_second_run_reads_the_cache_instead_of_embedding(
    blobs: LocalBlobStore,
    data_dir: Path,
    backbone: embeddings.Backbone,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hashes = [blobs.put_bytes(png(seed)) for seed in range(4)]
    first = compute_embeddings(
        hashes, blobs=blobs, backbone=backbone, cache=EmbeddingCache(data_dir, backbone.identity)
    )
    calls: list[int] = []
    original = embeddings._compute.embed_pixels

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(embeddings._compute, "embed_pixels", counting)
    reopened = EmbeddingCache(data_dir, backbone.identity)
    again = compute_embeddings(hashes, blobs=blobs, backbone=backbone, cache=reopened)
    np.testing.assert_allclose(first, again)
    assert calls == []
    extra = blobs.put_bytes(png(99))
    compute_embeddings([*hashes, extra], blobs=blobs, backbone=backbone, cache=reopened)
    assert calls == [1]


def test_backbones_of_different_identity_keep_separate_caches(
    data_dir: Path, backbone: embeddings.Backbone
) -> None:
    other = load_random_backbone("test_efficientnet", image_size_px=48)
    assert other.identity != backbone.identity
    first = EmbeddingCache(data_dir, backbone.identity)
    second = EmbeddingCache(data_dir, other.identity)
    assert first.folder != second.folder
    assert first.folder.parent == data_dir / embeddings.CACHE_DIR_NAME


def test_an_undecodable_image_is_named(
    blobs: LocalBlobStore, data_dir: Path, backbone: embeddings.Backbone
) -> None:
    bad = blobs.put_bytes(b"not an image at all")
    cache = EmbeddingCache(data_dir, backbone.identity)
    with pytest.raises(InvalidImage, match=bad):
        compute_embeddings([bad], blobs=blobs, backbone=backbone, cache=cache)


def test_cancellation_stops_before_the_next_batch(
    blobs: LocalBlobStore, data_dir: Path, backbone: embeddings.Backbone
) -> None:
    hashes = [blobs.put_bytes(png(seed)) for seed in range(6)]
    seen: list[tuple[int, int]] = []

    def cancel() -> None:
        if seen:
            raise JobCancelled("stop")

    cache = EmbeddingCache(data_dir, backbone.identity)
    with pytest.raises(JobCancelled):
        compute_embeddings(
            hashes,
            blobs=blobs,
            backbone=backbone,
            cache=cache,
            batch_size=2,
            progress=lambda done, total: seen.append((done, total)),
            check_cancelled=cancel,
        )
    assert seen == [(2, 6)]


def test_the_index_finds_nearest_rows_block_by_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embeddings._index, "BLOCK_ROWS", 3)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(10, 8)).astype(np.float32)
    vectors[7] = vectors[2] * 3.0 + 0.01
    path = create_index(tmp_path, "v1", vectors, [f"s{i}" for i in range(10)])
    index = open_index(path)
    assert isinstance(index.matrix, np.memmap)
    found = index.search_all(k=2)
    assert found.indices[2, 0] == 7 and found.indices[7, 0] == 2
    assert found.similarities[2, 0] > 0.99
    unit = normalise_rows(vectors)
    exact = unit @ unit.T
    np.fill_diagonal(exact, -np.inf)
    np.testing.assert_array_equal(found.indices[:, 0], exact.argmax(axis=1))


def test_a_tiny_index_returns_what_it_has() -> None:
    index = VectorIndex(normalise_rows(np.ones((1, 4), dtype=np.float32)), ["only"])
    found = index.search_all(k=5)
    assert found.indices.shape == (1, 0)


@pytest.mark.slow
def test_lite0_embeds_a_photo_close_to_its_recompressed_copy(
    blobs: LocalBlobStore, data_dir: Path
) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    backbone = embeddings.load_lite0_backbone()
    photos = [skimage_data.chelsea(), skimage_data.brick()]
    encoded = []
    for photo in [*photos, photos[0]]:
        buffer = io.BytesIO()
        Image.fromarray(photo).convert("RGB").save(buffer, "JPEG", quality=60 + len(encoded))
        encoded.append(blobs.put_bytes(buffer.getvalue()))
    cache = EmbeddingCache(data_dir, backbone.identity)
    unit = normalise_rows(compute_embeddings(encoded, blobs=blobs, backbone=backbone, cache=cache))
    assert unit.shape == (3, 1280)
    assert unit[0] @ unit[2] > 0.95 > unit[0] @ unit[1]


def test_the_same_weights_share_one_identity_however_they_are_loaded(
    tmp_path: Path, backbone: embeddings.Backbone
) -> None:
    import safetensors.torch
    import timm
    import torch

    from kai.models.formats import architectures

    torch.manual_seed(0)
    network = timm.create_model("test_efficientnet", pretrained=False)
    spec = architectures.default_input_spec(network).model_copy(
        update={"size_px": (SIZE_PX, SIZE_PX)}
    )
    path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file(network.state_dict(), path)
    stored = embeddings.load_weights_backbone(
        "test_efficientnet", path, name="stored", spec=spec, num_classes=1000
    )
    assert stored.identity == backbone.identity

    with torch.no_grad():
        next(network.parameters()).add_(1e-3)
    safetensors.torch.save_file(network.state_dict(), path)
    changed = embeddings.load_weights_backbone(
        "test_efficientnet", path, name="changed", spec=spec, num_classes=1000
    )
    assert changed.identity != backbone.identity
