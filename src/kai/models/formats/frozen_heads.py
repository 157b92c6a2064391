"""Frozen heads: a linear head that Kai trained over the features of another version.

A graph model (Keras, TFLite, an ONNX graph that does not convert to
PyTorch) cannot take a new head inside its own file, so training by
feature extraction keeps the base version's artifact files unchanged under
``base/`` (the same blobs, so nothing is copied in storage) and writes the
trained head beside them as ``head.safetensors``: its ``weight``
``(num_classes, D)`` and ``bias`` ``(num_classes,)``, with the base
version's id, format and spec in the file's metadata. A
:class:`HeadPredictor` runs the base's ``extract_features`` and then the
head. Only training writes these versions: an upload is never read as one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from kai.errors import InvalidInput
from kai.models.formats.base import (
    ArtifactFile,
    FeatureExtractor,
    Features,
    ImportOptions,
    Inspection,
    ModelSpec,
    Predictor,
    Probabilities,
)
from kai.models.formats.preprocessing import softmax
from kai.models.formats.registry import FormatRegistry

FORMAT_NAME = "kai_head"
HEAD_NAME = "head.safetensors"
BASE_DIR = "base"


class HeadFormat:
    """The adapter of versions made of a base version's features and a trained linear head.

    Args:
        formats: Where the base version's format is found, at load time.
    """

    name = FORMAT_NAME
    framework = "kai"
    suffixes: tuple[str, ...] = ()

    def __init__(self, formats: FormatRegistry) -> None:
        self.formats = formats

    def detect(self, path: Path) -> bool:
        """Never: only training writes this format."""
        del path
        return False

    def check(self, path: Path, options: ImportOptions) -> None:
        """Refuse: a frozen head is made by training, not uploaded."""
        del path, options
        raise _not_uploadable()

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        """Refuse: a frozen head is made by training, not uploaded."""
        del path, options
        raise _not_uploadable()

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        """Refuse: a frozen head is made by training, not uploaded."""
        del path, inspection, out_dir
        raise _not_uploadable()

    def load(self, artifact_dir: Path, spec: ModelSpec) -> Predictor:
        """The base version's predictor from ``base/``, with the head read from its file.

        Raises:
            InvalidInput: The head file is not one Kai wrote, or the base cannot give features.
        """
        weight, bias, metadata = _read_head(artifact_dir / HEAD_NAME)
        base_spec = ModelSpec.model_validate_json(metadata["base_spec"])
        base = self.formats.get(metadata["base_format"]).load(artifact_dir / BASE_DIR, base_spec)
        if not isinstance(base, FeatureExtractor):
            raise InvalidInput(
                f"The base model of this version ({metadata['base_format']}) gives no features"
            )
        if weight.shape[0] != spec.num_classes:
            raise InvalidInput(
                f"The head has {weight.shape[0]} outputs but the version {spec.num_classes} classes"
            )
        return HeadPredictor(base, weight, bias, spec)


class HeadPredictor:
    """The base's features through the trained linear head; also a feature extractor."""

    def __init__(
        self,
        base: FeatureExtractor,
        weight: np.ndarray[Any, Any],
        bias: np.ndarray[Any, Any],
        spec: ModelSpec,
    ) -> None:
        self.base = base
        self.weight = weight.astype(np.float32, copy=False)
        self.bias = bias.astype(np.float32, copy=False)
        self.spec = spec

    def predict(self, batch: Any) -> Probabilities:
        """Class probabilities ``(N, num_classes)`` for PIL images or a prepared NCHW batch."""
        features = self.extract_features(batch)
        if features.shape[1] != self.weight.shape[1]:
            raise InvalidInput(
                f"The base model gives {features.shape[1]} features per image; "
                f"the head was trained on {self.weight.shape[1]}"
            )
        return softmax(features @ self.weight.T + self.bias)

    def extract_features(self, batch: Any) -> Features:
        """The base model's features, ``(N, D)``: the head's input."""
        features = self.base.extract_features(batch)
        return np.asarray(features, dtype=np.float32).reshape(len(features), -1)


def write_head(
    path: Path,
    weight: np.ndarray[Any, Any],
    bias: np.ndarray[Any, Any],
    *,
    base_version_id: int,
    base_format: str,
    base_spec: ModelSpec,
) -> Path:
    """Save a trained head with what loading its base needs, as ``load`` reads it back."""
    tensors = {
        "weight": np.ascontiguousarray(weight, dtype=np.float32),
        "bias": np.ascontiguousarray(bias, dtype=np.float32),
    }
    metadata = {
        "base_version_id": str(base_version_id),
        "base_format": base_format,
        "base_spec": base_spec.model_dump_json(),
    }
    save_file(tensors, str(path), metadata=metadata)
    return path


def _read_head(
    path: Path,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], dict[str, str]]:
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
            weight, bias = handle.get_tensor("weight"), handle.get_tensor("bias")
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise InvalidInput(f"The head file {path.name} cannot be read: {exc}") from exc
    missing = {"base_format", "base_spec"} - set(metadata)
    if missing or weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise InvalidInput(f"The head file {path.name} is not a linear head Kai wrote")
    return weight, bias, metadata


def _not_uploadable() -> InvalidInput:
    return InvalidInput(
        f"The {FORMAT_NAME} format holds heads that Kai's training writes; it cannot be uploaded"
    )
