"""Matching a model's output classes with a dataset's classes by name.

Names match when they are equal after trimming and case folding, so
``Ceramic`` in a dataset finds ``ceramic`` in a model. Only the classes
present on both sides are evaluated: samples of other dataset classes are
left out, and the model's probabilities are restricted to the matched
outputs and renormalised, so an evaluation of a 1000-class ImageNet model on
a three-class dataset scores the three-way choice. The mapping is stored
with the evaluation, so a reader sees what was left out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kai.errors import InvalidInput

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassMapping:
    """Which model outputs the evaluation keeps, and the dataset label behind each.

    Attributes:
        model_classes: The model's class names, in output order.
        dataset_classes: The dataset version's classes.
        columns: The model outputs kept, in output order.
        labels: The dataset label matched to each kept output.
    """

    model_classes: list[str]
    dataset_classes: list[str]
    columns: list[int]
    labels: list[str]

    @property
    def class_names(self) -> list[str]:
        """The evaluated classes' names, as the model calls them."""
        return [self.model_classes[column] for column in self.columns]

    @property
    def is_complete(self) -> bool:
        """Whether every model output and every dataset class was matched."""
        return len(self.columns) == len(self.model_classes) == len(self.dataset_classes)

    def target_of(self, label: str) -> int | None:
        """The evaluated class index of a dataset label, or None when it is left out."""
        try:
            return self.labels.index(label)
        except ValueError:
            return None

    def restrict(self, probabilities: np.ndarray) -> np.ndarray:
        """The kept outputs' probabilities, shape ``(N, K)``, each row renormalised to 1.

        A row whose kept outputs all have probability 0 becomes uniform.
        """
        kept = np.asarray(probabilities, dtype=np.float64)[:, self.columns]
        totals = kept.sum(axis=1, keepdims=True)
        uniform = np.full_like(kept, 1.0 / len(self.columns))
        out: np.ndarray = np.divide(kept, totals, out=uniform, where=totals > 0)
        return out

    def to_json(self) -> dict[str, Any]:
        """The mapping as stored with the evaluation."""
        matched, kept = set(self.labels), set(self.columns)
        return {
            "complete": self.is_complete,
            "evaluatedClasses": self.class_names,
            "datasetLabels": self.labels,
            "unmappedDatasetClasses": [c for c in self.dataset_classes if c not in matched],
            "unmappedModelClasses": [
                name for i, name in enumerate(self.model_classes) if i not in kept
            ][:100],
            "numUnmappedModelClasses": len(self.model_classes) - len(self.columns),
        }


def map_classes(model_classes: Sequence[str], dataset_classes: Sequence[str]) -> ClassMapping:
    """Match the model's outputs with the dataset's classes by name.

    Raises:
        InvalidInput: The model has no class names, or no class matches.
    """
    if not model_classes:
        raise InvalidInput(
            "The model version has no class names, so its outputs cannot be matched with the "
            "dataset's classes; import it again with class names",
        )
    by_key = {_key(label): label for label in dataset_classes}
    columns, labels = [], []
    for column, name in enumerate(model_classes):
        label = by_key.pop(_key(name), None)
        if label is not None:
            columns.append(column)
            labels.append(label)
    if not columns:
        raise InvalidInput(
            "None of the dataset's classes is among the model's classes: the dataset has "
            f"{_preview(dataset_classes)} and the model {_preview(model_classes)}",
            details={"datasetClasses": list(dataset_classes)[:100]},
        )
    return ClassMapping(list(model_classes), list(dataset_classes), columns, labels)


def _key(name: str) -> str:
    return name.strip().casefold()


def _preview(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(name) for name in list(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
