"""The one interface every model format implements, and the values it passes around.

A format adapter turns an uploaded file into facts (an :class:`Inspection`),
into the files Kai keeps as the version's artifact, and back into a
:class:`Predictor`. Nothing outside ``kai.models.formats`` imports a machine
learning framework: the rest of Kai speaks only these types.

Lifecycle of an upload, as the import job drives it::

    detect(path)            magic bytes and structure only, nothing is loaded
    check(path, options)    cheap refusals (bad structure, pickled code), before a job runs
    inspect(path, options)  the facts: classes, input spec, parameters, layer groups
    prepare(path, inspection, out_dir)  the artifact files to keep (converted where it helps)
    load(artifact_dir, spec)            a Predictor over the kept files
                                        (also a FeatureExtractor where the format allows)

``inspect``, ``prepare`` and a first ``load`` run inside the sandbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import BaseModel, Field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE_PX = 224


class ImportOptions(BaseModel):
    """What the person importing a model may tell Kai; all optional but a state dict's architecture.

    Attributes:
        framework: A format or framework name that overrides detection.
        architecture: A timm or torchvision architecture name for a state dict.
        input_size_px: Height and width the model expects.
        mean: Per-channel mean the inputs are normalised with.
        std: Per-channel standard deviation the inputs are normalised with.
        class_names: The names of the model's outputs, in order.
        head_layer: The name of the classification layer in a state dict.
        graph_input: The graph input to feed (ONNX).
        graph_output: The graph output to read (ONNX).
    """

    framework: str | None = None
    architecture: str | None = None
    input_size_px: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    class_names: list[str] | None = None
    head_layer: str | None = None
    graph_input: str | None = None
    graph_output: str | None = None


class InputSpec(BaseModel):
    """How an image becomes the model's input tensor.

    Attributes:
        size_px: Height and width of the input.
        mean: Per-channel mean subtracted after scaling pixels to 0..1.
        std: Per-channel standard deviation divided by.
        crop_fraction: The centre crop's share of the resized image's shorter side.
    """

    size_px: tuple[int, int] = (DEFAULT_INPUT_SIZE_PX, DEFAULT_INPUT_SIZE_PX)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_fraction: float = 0.875


class LayerGroup(BaseModel):
    """A run of layers that training freezes or unfreezes together.

    Attributes:
        name: ``stem``, ``stage1`` ... or ``head``.
        modules: The module names in the group, as prefixes of parameter names.
        parameter_count: Parameters in the group.
    """

    name: str
    modules: list[str]
    parameter_count: int


class ModelSpec(BaseModel):
    """What a format needs to load the kept artifact again.

    Attributes:
        format: The format's name.
        architecture: The architecture, for formats that build one.
        num_classes: Outputs of the classifier.
        input: How images become input tensors.
        class_names: Output names, empty when unknown.
        graph_input: The graph input fed, for graph formats.
        graph_output: The graph output read, for graph formats.
        outputs_probabilities: The model ends in a softmax already.
        temperature: Divides the logits before the softmax of a prediction, fitted on
            the validation split by the training job that wrote the version so its
            confidence matches its accuracy; None leaves predictions as the model gives.
    """

    format: str
    architecture: str | None = None
    num_classes: int
    input: InputSpec = Field(default_factory=InputSpec)
    class_names: list[str] = Field(default_factory=list)
    graph_input: str | None = None
    graph_output: str | None = None
    outputs_probabilities: bool = False
    temperature: float | None = Field(None, gt=0)


class Inspection(BaseModel):
    """What an import learned about a model file.

    Attributes:
        spec: What loading needs.
        parameter_count: Parameters (weights) in the model, when countable.
        layer_groups: Groups from the input side to the head.
        notes: Decisions taken on the way, for people (assumed defaults, remapped keys).
        safety_checks: The checks the file passed, for its safety verdict.
        details: Format-specific facts such as graph inputs and opset.
    """

    spec: ModelSpec
    parameter_count: int | None = None
    layer_groups: list[LayerGroup] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    safety_checks: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactFile:
    """A file to keep for a version.

    Attributes:
        role: ``weights`` for what ``load`` reads, ``external_data`` beside it.
        name: The name ``load`` expects it under, relative to the artifact folder.
        path: Where ``prepare`` left it.
    """

    role: str
    name: str
    path: Path


ImageBatch = Sequence[Image.Image]
Probabilities = NDArray[np.float32]
Features = NDArray[np.float32]


@runtime_checkable
class Predictor(Protocol):
    """A loaded model that classifies images."""

    spec: ModelSpec

    def predict(self, batch: ImageBatch | Any) -> Probabilities:
        """Class probabilities, shape ``(N, num_classes)``, each row summing to 1.

        Args:
            batch: PIL images, or a float tensor or array ``(N, C, H, W)`` already
                resized and normalised.
        """
        ...


@runtime_checkable
class FeatureExtractor(Protocol):
    """A loaded model that also gives the embedding its classification head reads.

    Predictors of formats whose graph can be cut before the head implement this, so
    training can use a frozen model as a feature extractor.
    """

    spec: ModelSpec

    def extract_features(self, batch: ImageBatch | Any) -> Features:
        """Penultimate embeddings, shape ``(N, num_features)``, for images or a prepared batch."""
        ...


@runtime_checkable
class ModelFormat(Protocol):
    """An adapter for one kind of model file."""

    name: str
    framework: str
    suffixes: tuple[str, ...]

    def detect(self, path: Path) -> bool:
        """Whether the file is in this format, judged from magic bytes and structure."""
        ...

    def check(self, path: Path, options: ImportOptions) -> None:
        """Refuse a file cheaply before any job runs; raises InvalidInput or a subclass."""
        ...

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        """Learn what the model is; raises InvalidInput when it cannot be used."""
        ...

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        """Write the files Kai keeps for the version into ``out_dir``."""
        ...

    def load(self, artifact_dir: Path, spec: ModelSpec) -> Predictor:
        """A predictor over the files ``prepare`` wrote, found under their names."""
        ...
