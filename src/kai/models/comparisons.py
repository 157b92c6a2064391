"""Model versions side by side: what each is, how its classes changed, how it measured.

:func:`compare_versions` reads two to :data:`MAX_COMPARED` versions of one
model and lines up their facts (format, architecture, input, classes,
parameters, size, origin), the class names each added or dropped against
the first one named, and their metrics: for every dataset version any of
them was evaluated on, each numeric metric of the latest evaluation there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from kai.db.tables import ModelEvaluation, ModelVersion
from kai.errors import InvalidInput
from kai.models.records import list_evaluations, resolve_version

MAX_COMPARED = 10
# The facts compared, in the order they are shown.
COMPARED_FACTS = (
    "format",
    "framework",
    "architecture",
    "numClasses",
    "parameterCount",
    "inputSizePx",
    "mean",
    "std",
    "sizeBytes",
    "origin",
    "parentVersion",
)


@dataclass(frozen=True)
class VersionFacts:
    """One version's facts, under the names in :data:`COMPARED_FACTS`."""

    number: int
    version_id: int
    created_at: datetime
    facts: dict[str, Any]


@dataclass(frozen=True)
class ClassChange:
    """The class names a version has that the first lacks, and the ones it lacks."""

    number: int
    added: list[str]
    removed: list[str]


@dataclass(frozen=True)
class MetricRow:
    """One metric on one dataset version, for each compared version in order (None: not run)."""

    dataset_version_id: int | None
    metric: str
    values: list[float | None]


@dataclass(frozen=True)
class VersionComparison:
    """Versions of one model side by side.

    Attributes:
        model_id: The model.
        versions: The versions' facts, in the order asked for.
        differing: The facts whose values are not all equal.
        class_changes: Each version after the first against the first.
        metrics: Every numeric metric of the latest evaluation per dataset version.
    """

    model_id: int
    versions: list[VersionFacts]
    differing: list[str]
    class_changes: list[ClassChange] = field(default_factory=list)
    metrics: list[MetricRow] = field(default_factory=list)


def parse_version_numbers(text: str) -> list[int]:
    """``"1,3"`` as ``[1, 3]``; InvalidInput unless 2 to MAX_COMPARED distinct numbers."""
    try:
        numbers = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise InvalidInput(
            f"versions must be numbers separated by commas, such as 1,2, not {text!r}",
            details={"field": "versions"},
        ) from exc
    if not 2 <= len(numbers) <= MAX_COMPARED or len(set(numbers)) != len(numbers):
        raise InvalidInput(
            f"Compare 2 to {MAX_COMPARED} different versions, not {text!r}",
            details={"field": "versions"},
        )
    return numbers


def compare_versions(session: Session, model_id: int, numbers: Sequence[int]) -> VersionComparison:
    """The versions ``numbers`` of the model, side by side.

    Raises:
        NotFound: No such model or version.
        InvalidInput: Fewer than two or more than MAX_COMPARED versions, or repeats.
    """
    parse_version_numbers(",".join(str(n) for n in numbers))
    versions = [resolve_version(session, model_id, number) for number in numbers]
    parents = {v.parent_id for v in versions if v.parent_id is not None}
    parent_numbers = {
        v.id: f"{v.model_id}/{v.number}"
        for v in (session.get(ModelVersion, p) for p in parents)
        if v is not None
    }
    facts = [_facts(version, parent_numbers) for version in versions]
    differing = [name for name in COMPARED_FACTS if len({repr(f.facts[name]) for f in facts}) > 1]
    evaluations = [list_evaluations(session, version.id) for version in versions]
    return VersionComparison(
        model_id=model_id,
        versions=facts,
        differing=differing,
        class_changes=_class_changes(versions),
        metrics=_metric_rows(evaluations),
    )


def _facts(version: ModelVersion, parent_numbers: dict[int, str]) -> VersionFacts:
    spec = version.input_spec or {}
    size = spec.get("size_px")
    values = {
        "format": version.format,
        "framework": version.framework,
        "architecture": version.architecture,
        "numClasses": version.num_classes,
        "parameterCount": version.parameter_count,
        "inputSizePx": list(size) if size else None,
        "mean": list(spec["mean"]) if spec.get("mean") else None,
        "std": list(spec["std"]) if spec.get("std") else None,
        "sizeBytes": version.size_bytes,
        "origin": version.provenance.get("kind"),
        "parentVersion": parent_numbers.get(version.parent_id or -1),
    }
    return VersionFacts(version.number, version.id, version.created_at, values)


def _class_changes(versions: list[ModelVersion]) -> list[ClassChange]:
    first = [str(name) for name in versions[0].class_names]
    changes = []
    for version in versions[1:]:
        names = [str(name) for name in version.class_names]
        added = [name for name in names if name not in set(first)]
        removed = [name for name in first if name not in set(names)]
        changes.append(ClassChange(version.number, added, removed))
    return changes


def _metric_rows(evaluations: list[list[ModelEvaluation]]) -> list[MetricRow]:
    latest: list[dict[int | None, dict[str, float]]] = [_latest_numeric(e) for e in evaluations]
    datasets = sorted({d for per in latest for d in per}, key=lambda d: (d is None, d or 0))
    rows = []
    for dataset in datasets:
        names = sorted({name for per in latest for name in per.get(dataset, {})})
        for name in names:
            values = [per.get(dataset, {}).get(name) for per in latest]
            rows.append(MetricRow(dataset, name, values))
    return rows


def _latest_numeric(evaluations: list[ModelEvaluation]) -> dict[int | None, dict[str, float]]:
    """Per dataset version, the numeric metrics of the newest evaluation (oldest come first)."""
    latest: dict[int | None, dict[str, float]] = {}
    for evaluation in evaluations:
        latest[evaluation.dataset_version_id] = {
            name: float(value)
            for name, value in evaluation.metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
    return latest
