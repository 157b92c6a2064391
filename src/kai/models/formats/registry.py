"""The registry of model formats: the built-ins, and third parties' through entry points.

A third-party package adds a format by declaring an entry point in the
``kai.model_formats`` group whose object is a :class:`ModelFormat` class or
instance::

    [project.entry-points."kai.model_formats"]
    keras = "kai_keras:KerasFormat"

Entry points are read by :func:`create_format_registry` when an entry point
of Kai builds its registry, never at import time. A plugin that fails to
load is skipped with a warning naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from kai.errors import InvalidInput
from kai.models.formats.base import ModelFormat

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kai.model_formats"


@dataclass
class FormatRegistry:
    """Model formats by name, in the order detection tries them."""

    formats: dict[str, ModelFormat] = field(default_factory=dict)

    def register(self, model_format: ModelFormat) -> None:
        """Add a format; a name registered twice is a programming error."""
        if not isinstance(model_format, ModelFormat):
            raise TypeError(f"{model_format!r} does not implement the ModelFormat interface")
        if model_format.name in self.formats:
            raise ValueError(f"Model format {model_format.name!r} is registered twice")
        self.formats[model_format.name] = model_format

    def get(self, name: str) -> ModelFormat:
        """The format registered under ``name``.

        Raises:
            InvalidInput: No format has that name.
        """
        try:
            return self.formats[name]
        except KeyError as exc:
            raise InvalidInput(
                f"Unknown model format {name!r}; known formats: {sorted(self.formats)}"
            ) from exc

    def resolve(self, path: Path, *, framework: str | None = None) -> ModelFormat:
        """The format of the file at ``path``, among those ``framework`` names when given.

        ``framework`` may name a format (``torchscript``) or a framework (``pytorch``).

        Raises:
            InvalidInput: The framework is unknown, or no candidate format recognises the file.
        """
        candidates = self._candidates(framework)
        for model_format in candidates:
            if model_format.detect(path):
                return model_format
        names = ", ".join(f.name for f in candidates)
        raise InvalidInput(
            f"The file is not a model Kai can read as {names}: its bytes match none of them",
            details={"formats": [f.name for f in candidates], "field": "file"},
        )

    def _candidates(self, framework: str | None) -> list[ModelFormat]:
        if not framework:
            return list(self.formats.values())
        wanted = framework.strip().lower()
        chosen = [f for f in self.formats.values() if wanted in (f.name, f.framework)]
        if not chosen:
            known = sorted({f.name for f in self.formats.values()} | self.frameworks())
            raise InvalidInput(
                f"Unknown framework {framework!r}; use one of: {', '.join(known)}",
                details={"field": "framework"},
            )
        return chosen

    def frameworks(self) -> set[str]:
        """The frameworks of the registered formats."""
        return {f.framework for f in self.formats.values()}


def create_format_registry(*, plugins: bool = True) -> FormatRegistry:
    """The built-in formats, then the ones installed packages declare as entry points.

    Args:
        plugins: Whether to load the ``kai.model_formats`` entry points.
    """
    # The adapters import their frameworks, which takes seconds: only a registry pays for it.
    from kai.models.formats.frozen_heads import HeadFormat
    from kai.models.formats.hf_classifiers import TransformersFormat
    from kai.models.formats.keras_models import KerasFormat
    from kai.models.formats.onnx_graphs import OnnxFormat
    from kai.models.formats.saved_models import SavedModelFormat
    from kai.models.formats.state_dicts import StateDictFormat
    from kai.models.formats.tensorflow_graphs import TensorFlowGraphFormat
    from kai.models.formats.tflite_models import TfliteFormat
    from kai.models.formats.torchscript import TorchScriptFormat

    registry = FormatRegistry()
    # TorchScript before state dicts: both are PyTorch ZIPs, only TorchScript has code.
    registry.register(TorchScriptFormat())
    registry.register(StateDictFormat())
    registry.register(OnnxFormat())
    registry.register(TransformersFormat())
    registry.register(KerasFormat())
    registry.register(TfliteFormat())
    # SavedModel folders before the TensorFlow graphs that are only recognised and refused.
    registry.register(SavedModelFormat())
    registry.register(TensorFlowGraphFormat())
    # Last: it detects no upload, and loads its base version through this registry.
    registry.register(HeadFormat(registry))
    if plugins:
        load_plugins(registry, entry_points(group=ENTRY_POINT_GROUP))
    return registry


def load_plugins(registry: FormatRegistry, points: Iterable[EntryPoint]) -> None:
    """Register the format each entry point names; a broken one is skipped with a warning."""
    for point in points:
        try:
            loaded = point.load()
            model_format = loaded() if isinstance(loaded, type) else loaded
            registry.register(model_format)
        except Exception as exc:  # A broken plugin must not stop Kai from starting.
            logger.warning("Skipped model format plugin %r (%s): %s", point.name, point.value, exc)
            continue
        logger.info("Loaded model format plugin %r", point.name)
