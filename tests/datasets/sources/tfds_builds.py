"""Prepared TensorFlow Datasets data dirs, made by TFDS itself from images made here.

:func:`prepare_tfds_datasets` runs a tiny ``GeneratorBasedBuilder`` per spec
through ``download_and_prepare(file_format="array_record")`` in a child
Python, so the data dir holds exactly what the client's own preparation
leaves (``NAME/VERSION`` with ``dataset_info.json``, ``features.json`` and
ArrayRecord shards) and TensorFlow never loads into the test process. The
child is this file run as a script with the specs as JSON; a builder defined
there is found later by ``tfds.builder(NAME, data_dir=...)`` from its files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PREPARE_TIMEOUT_SECONDS = 240


@dataclass(frozen=True)
class TfdsSpec:
    """One builder to prepare.

    Attributes:
        name: The builder's name; TFDS must not already have one by that name.
        classes: The ``label`` ClassLabel's names; None leaves the builder without one.
        split_counts: Examples per split; example ``i`` has class ``i % len(classes)``.
        version: The builder's version.
        image_size_px: Side of the square RGB images.
        image_format: How TFDS encodes them: ``png`` or ``jpeg``.
        seed: Seeds the pixels, with the split's name.
    """

    name: str
    classes: Sequence[str] | None
    split_counts: Mapping[str, int] = field(default_factory=lambda: {"train": 6, "test": 3})
    version: str = "1.0.0"
    image_size_px: int = 16
    image_format: str = "png"
    seed: int = 0


def prepare_tfds_datasets(data_dir: Path, specs: Sequence[TfdsSpec]) -> None:
    """Prepare every spec's builder in ``data_dir`` with TFDS, in one child process."""
    payload = json.dumps({"dataDir": str(data_dir), "specs": [asdict(s) for s in specs]})
    # TensorFlow's Keras must run on its own backend, whatever this process chose.
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    completed = _run_preparation(payload, env)
    if completed.returncode < 0:
        # TensorFlow has been seen to die by a signal under heavy load; one more try.
        completed = _run_preparation(payload, env)
    if completed.returncode != 0:
        raise RuntimeError(
            f"TFDS preparation exited with {completed.returncode}:\n{completed.stderr[-4000:]}"
        )


def _run_preparation(payload: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, __file__, payload],
        capture_output=True,
        text=True,
        env=env,
        timeout=PREPARE_TIMEOUT_SECONDS,
        check=False,
    )


def example_pixels(spec: TfdsSpec | Mapping[str, Any], split: str) -> list[Any]:
    """The images the spec's builder writes to a split, in the order it generates them."""
    fields = asdict(spec) if isinstance(spec, TfdsSpec) else spec
    size = fields["image_size_px"]
    rng = np.random.default_rng([fields["seed"], zlib.crc32(split.encode())])
    count = fields["split_counts"][split]
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def _builder_class(spec: Mapping[str, Any]) -> Any:
    import tensorflow_datasets as tfds

    builder_name, classes = spec["name"], spec["classes"]
    size = spec["image_size_px"]

    class Builder(tfds.core.GeneratorBasedBuilder):  # type: ignore[misc]
        name = builder_name
        VERSION = tfds.core.Version(spec["version"])

        def _info(self) -> Any:
            features: dict[str, Any] = {
                "image": tfds.features.Image(
                    shape=(size, size, 3), encoding_format=spec["image_format"]
                ),
                "photographer": tfds.features.Text(),
            }
            if classes:
                features["label"] = tfds.features.ClassLabel(names=list(classes))
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict(features)
            )

        def _split_generators(self, dl_manager: Any) -> Any:
            del dl_manager
            return {split: self._generate_examples(split) for split in spec["split_counts"]}

        def _generate_examples(self, split: str) -> Any:
            for i, pixels in enumerate(example_pixels(spec, split)):
                example = {"image": pixels, "photographer": f"{split}-p{i}"}
                if classes:
                    example["label"] = i % len(classes)
                yield f"{split}-{i:05d}", example

    return Builder


def _prepare(payload: Mapping[str, Any]) -> None:
    for spec in payload["specs"]:
        builder = _builder_class(spec)(data_dir=payload["dataDir"])
        builder.download_and_prepare(file_format="array_record")


if __name__ == "__main__":
    _prepare(json.loads(sys.argv[1]))
