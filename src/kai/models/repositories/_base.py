"""The values every repository resolver shares: the repository names and what a fetch returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from kai.models.formats.base import ImportOptions


class Repository(StrEnum):
    """The model repositories an import can name."""

    HUGGINGFACE = "huggingface"
    PYTORCH_HUB = "pytorch-hub"
    ONNX_MODEL_ZOO = "onnx-model-zoo"
    TENSORFLOW_HUB = "tensorflow-hub"
    KAGGLE = "kaggle"
    URL = "url"
    BUNDLED = "bundled"
    ARCHITECTURE = "architecture"


@dataclass(frozen=True)
class FetchedModel:
    """A repository's model file on local disk, with what the repository said about it.

    Attributes:
        path: The weights file (inside a client's cache; never deleted by Kai).
        options: The import options, the repository's facts filled in where the person
            gave none.
        provenance: Repository, reference and the resolved revision, for the version's record.
        original_name: The file's name in the repository.
        notes: Decisions taken while resolving, for the job's log.
    """

    path: Path
    options: ImportOptions
    provenance: dict[str, Any]
    original_name: str
    notes: list[str] = field(default_factory=list)


def fill_options(given: ImportOptions, **found: Any) -> ImportOptions:
    """``given`` with ``found``'s values where the person left a field empty."""
    updates = {k: v for k, v in found.items() if v is not None and getattr(given, k) is None}
    return given.model_copy(update=updates)
