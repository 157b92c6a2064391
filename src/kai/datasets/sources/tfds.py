"""TensorFlow Datasets, read through ``tensorflow-datasets`` when the ``tfds`` extra is installed.

The builder's prepared data in its data dir (``TFDS_DATA_DIR``, else
~/tensorflow_datasets) is what the client's own
``download_and_prepare(file_format="array_record")`` leaves there:
``NAME[/CONFIG]/VERSION`` with ``dataset_info.json``, ``features.json`` and
one ArrayRecord file per split and shard. Kai reads it with
``as_data_source``, which needs no TensorFlow, and keeps each image's stored
PNG or JPEG bytes as they are. It asks for a download only when the data is
absent. The class names come from the builder's ``ClassLabel`` feature.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
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
JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True)
class _Keys:
    """The features that hold the image and its class, and the class names."""

    image: str
    label: str
    classes: list[str]


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


def tfds_name(ref: SourceRef) -> str:
    """The builder as ``tfds.builder`` and ``tfds build`` name it: NAME[/CONFIG][:VERSION]."""
    name = ref.reference + (f"/{ref.config}" if ref.config else "")
    return name + (f":{ref.revision}" if ref.revision else "")


@contextmanager
def open_tfds(
    ref: SourceRef, settings: Settings, *, report: StageReport = silent_report
) -> Iterator[OpenedSource]:
    """Open a TFDS builder's prepared data, preparing it first when network allows.

    Raises:
        InvalidInput: The ``tfds`` extra is not installed.
        NotFound: No such builder, or not prepared and no way to prepare it here.
        InvalidDatasetLayout: No image feature or no class label.
    """
    tfds = import_tfds()
    name = tfds_name(ref)
    report("download", 0.0)
    builder = _prepared_builder(tfds, name)
    report("download", 1.0)
    report("extract", 0.0)
    keys = _features(builder, name)
    skip = {keys.image: tfds.decode.SkipDecoding()}
    sources = {
        split: builder.as_data_source(split=split, decoders=skip) for split in builder.info.splits
    }
    rows, images = _list_images(sources, keys)
    report("extract", 1.0)

    def read(row_name: str) -> bytes:
        split, index = rows[row_name]
        return bytes(sources[split][index][keys.image])

    yield OpenedSource(
        files=ReaderFileSet(list(rows), read, max_file_bytes=settings.max_entry_bytes),
        images=images,
        classes=keys.classes,
        revision=str(builder.info.version),
        details={"dataDir": str(tfds_data_dir()), "builder": builder.info.full_name},
    )


def _prepared_builder(tfds: Any, name: str) -> Any:
    data_dir = tfds_data_dir()
    # TFDS raises ValueError for an unknown name or config, AssertionError for a version
    # that its code does not offer.
    try:
        builder = tfds.builder(name, data_dir=str(data_dir))
    except (ValueError, KeyError, AssertionError) as exc:
        raise NotFound(
            f"TensorFlow Datasets has no builder {name!r} installed or prepared in {data_dir} "
            f"({_first_line(exc)}). Check the name in the TFDS catalog; for a dataset prepared "
            f"elsewhere, {_copy_hint(name, data_dir)}",
            details={"dataDir": str(data_dir), "builder": name},
        ) from exc
    if builder.is_prepared():
        return builder
    _require_manual_files(builder, name, data_dir)
    logger.info("Preparing TFDS dataset %s in %s", name, data_dir, extra={"builder": name})
    try:
        builder.download_and_prepare(file_format="array_record")
    except (OSError, tfds.download.DownloadError) as exc:
        raise NotFound(
            f"TFDS dataset {name!r} is not prepared in {data_dir} and could not be "
            f"downloaded ({_first_line(exc)}); {_copy_hint(name, data_dir)}",
            details={"dataDir": str(data_dir), "builder": name},
        ) from exc
    return builder


def _require_manual_files(builder: Any, name: str, data_dir: Path) -> None:
    """Raise NotFound when the builder needs files fetched by hand and they are not there."""
    if not getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
        return
    manual_dir = data_dir / "downloads" / "manual"
    if manual_dir.is_dir() and any(manual_dir.iterdir()):
        return
    raise NotFound(
        f"TFDS dataset {name!r} is not prepared in {data_dir}, and TFDS cannot download its "
        f"source files: put them in {manual_dir} as its TFDS catalog page says and import "
        f"again, or {_copy_hint(name, data_dir)}",
        details={"dataDir": str(data_dir), "builder": name, "manualDir": str(manual_dir)},
    )


def _copy_hint(name: str, data_dir: Path) -> str:
    folder = name.split(":", 1)[0].split("/", 1)[0]
    return (
        f'run "tfds build {name} --file_format=array_record" with TFDS_DATA_DIR set on a '
        f"machine with network, then copy its {folder} folder into {data_dir} here"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _features(builder: Any, name: str) -> _Keys:
    features = builder.info.features
    kinds = {key: type(feature).__name__ for key, feature in features.items()}
    image_keys = [key for key, kind in kinds.items() if kind == "Image"]
    label_keys = [key for key, kind in kinds.items() if kind == "ClassLabel"]
    if not image_keys or not label_keys:
        raise InvalidDatasetLayout(
            f"TFDS dataset {name!r} is not image classification: it needs an Image "
            f"and a ClassLabel feature; its features are {kinds}"
        )
    label = "label" if "label" in label_keys else label_keys[0]
    image = "image" if "image" in image_keys else image_keys[0]
    return _Keys(image, label, [str(class_name) for class_name in features[label].names])


def _list_images(
    sources: Mapping[str, Any], keys: _Keys
) -> tuple[dict[str, tuple[str, int]], list[SourceImage]]:
    """Each record as an image named ``SPLIT/CLASS/INDEX.EXT``, with its split and fields."""
    rows: dict[str, tuple[str, int]] = {}
    images: list[SourceImage] = []
    for split, source in sources.items():
        for index in range(len(source)):
            record = source[index]
            label = keys.classes[int(record[keys.label])]
            suffix = ".jpg" if bytes(record[keys.image][:2]) == JPEG_MAGIC else ".png"
            row_name = f"{split}/{label}/{index:07d}{suffix}"
            rows[row_name] = (split, index)
            metadata = _metadata(record, keys)
            images.append(SourceImage(row_name, label, split_from_folder(split), metadata))
    return rows, images


def _metadata(record: Mapping[str, Any], keys: _Keys) -> dict[str, Any]:
    """The record's other scalar fields: numbers, and text as UTF-8."""
    fields: dict[str, Any] = {}
    for key, value in record.items():
        if key in (keys.image, keys.label):
            continue
        plain = value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value
        if isinstance(plain, bytes):
            fields[key] = plain.decode("utf-8", errors="replace")
        elif isinstance(plain, str | int | float | bool):
            fields[key] = plain
    return fields
