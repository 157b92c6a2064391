"""TensorFlow Datasets, read through ``tensorflow-datasets`` when the ``tfds`` extra is installed.

The builder's prepared data in its data dir (``TFDS_DATA_DIR``, else
~/tensorflow_datasets) is what the client's own ``download_and_prepare``
leaves there; Kai reads it with ``tfds.data_source``, which decodes
without TensorFlow, and asks for a download only when the data is absent.
The class names come from the builder's ``ClassLabel`` feature.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kai.config import Settings
from kai.datasets.layouts import split_from_folder
from kai.datasets.sources.opened import (
    OpenedSource,
    ReaderFileSet,
    SourceImage,
    StageReport,
    silent_report,
)
from kai.datasets.sources.references import SourceRef
from kai.errors import InvalidDatasetLayout, InvalidInput, NotFound

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'kai[tfds]'"


def tfds_data_dir() -> Path:
    """Where TFDS keeps prepared datasets (``TFDS_DATA_DIR``, else ~/tensorflow_datasets)."""
    return Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def import_tfds() -> Any:
    """The ``tensorflow_datasets`` module; InvalidInput saying how to add it when missing."""
    try:
        return importlib.import_module("tensorflow_datasets")
    except ImportError as exc:
        raise InvalidInput(
            "TensorFlow Datasets sources need the optional 'tfds' extra, which this "
            f'installation lacks; add it with "{INSTALL_HINT}" in Kai\'s environment and '
            "restart the server and workers, or import the dataset from Hugging Face",
            details={"extra": "tfds", "install": INSTALL_HINT},
        ) from exc


@contextmanager
def open_tfds(
    ref: SourceRef, settings: Settings, *, report: StageReport = silent_report
) -> Iterator[OpenedSource]:
    """Open a TFDS builder's prepared data, preparing it first when network allows.

    Raises:
        InvalidInput: The ``tfds`` extra is not installed.
        NotFound: No such builder, or not prepared and no network.
        InvalidDatasetLayout: No image feature or no class label.
    """
    tfds = import_tfds()
    name = ref.reference + (f"/{ref.config}" if ref.config else "")
    name += f":{ref.revision}" if ref.revision else ""
    report("download", 0.0)
    builder = _builder(tfds, name, ref)
    report("download", 1.0)
    report("extract", 0.0)
    image_key, label_key, classes = _features(builder, ref)
    sources = {split: builder.as_data_source(split=split) for split in builder.info.splits}
    images: list[SourceImage] = []
    rows: dict[str, tuple[str, int]] = {}
    for split, source in sources.items():
        for index in range(len(source)):
            record = source[index]
            label = classes[int(record[label_key])]
            row_name = f"{split}/{label}/{index:07d}.png"
            rows[row_name] = (split, index)
            images.append(SourceImage(row_name, label, split_from_folder(split), {}))
    report("extract", 1.0)

    def read(row_name: str) -> bytes:
        split, index = rows[row_name]
        return _png(sources[split][index][image_key])

    yield OpenedSource(
        files=ReaderFileSet(list(rows), read, max_file_bytes=settings.max_entry_bytes),
        images=images,
        classes=classes,
        revision=str(builder.info.version),
        details={"dataDir": str(tfds_data_dir()), "builder": name},
    )


def _builder(tfds: Any, name: str, ref: SourceRef) -> Any:
    try:
        builder = tfds.builder(name, data_dir=str(tfds_data_dir()))
    except (ValueError, KeyError) as exc:  # an unknown name or config
        raise NotFound(f"TensorFlow Datasets has no builder {name!r}: {exc}") from exc
    if not builder.is_prepared():
        try:
            builder.download_and_prepare(file_format="array_record")
        except OSError as exc:
            raise NotFound(
                f"TFDS dataset {name!r} is not prepared in {tfds_data_dir()} and could not be "
                f"downloaded ({exc}). On a machine with network, run "
                f'"tfds build {ref.reference} --file_format=array_record" with TFDS_DATA_DIR '
                f"set, then copy the folder into {tfds_data_dir()} here",
                details={"dataDir": str(tfds_data_dir()), "builder": name},
            ) from exc
    return builder


def _features(builder: Any, ref: SourceRef) -> tuple[str, str, list[str]]:
    features = builder.info.features
    kinds = {key: type(feature).__name__ for key, feature in features.items()}
    image_keys = [key for key, kind in kinds.items() if kind == "Image"]
    label_keys = [key for key, kind in kinds.items() if kind == "ClassLabel"]
    if not image_keys or not label_keys:
        raise InvalidDatasetLayout(
            f"TFDS dataset {ref.reference!r} is not image classification: it needs an Image "
            f"and a ClassLabel feature; its features are {kinds}"
        )
    label = "label" if "label" in label_keys else label_keys[0]
    image = "image" if "image" in image_keys else image_keys[0]
    return image, label, [str(name) for name in features[label].names]


def _png(pixels: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    array = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()
