"""Model formats: one adapter per kind of model file, behind :class:`ModelFormat`.

Only this package imports machine learning frameworks. The rest of Kai asks
the :class:`FormatRegistry` built by :func:`create_format_registry` for a
format and talks to it through the interface in :mod:`.base`.
"""

from kai.models.formats.base import (
    ArtifactFile,
    FeatureExtractor,
    ImportOptions,
    InputSpec,
    Inspection,
    LayerGroup,
    ModelFormat,
    ModelSpec,
    Predictor,
)
from kai.models.formats.registry import (
    ENTRY_POINT_GROUP,
    FormatRegistry,
    create_format_registry,
    load_plugins,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ArtifactFile",
    "FeatureExtractor",
    "FormatRegistry",
    "ImportOptions",
    "InputSpec",
    "Inspection",
    "LayerGroup",
    "ModelFormat",
    "ModelSpec",
    "Predictor",
    "create_format_registry",
    "load_plugins",
]
