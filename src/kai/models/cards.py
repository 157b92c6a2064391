"""Model cards: a Markdown page per model version, written from what Kai knows, then editable.

The generated card says what the model is, what it expects, where it came
from, how it was checked and how it scored. Once a person edits a card,
Kai keeps their text; generating again is an explicit choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from kai.db.tables import Model, ModelEvaluation, ModelVersion, utcnow
from kai.errors import InvalidInput
from kai.models.records import get_model, list_evaluations, resolve_version

MAX_CARD_CHARACTERS = 200_000
_CLASSES_SHOWN = 50


def render_card(
    model: Model, version: ModelVersion, evaluations: Sequence[ModelEvaluation] = ()
) -> str:
    """The generated Markdown card of a model version."""
    sections = [
        _title(model, version),
        _overview(version),
        _inputs(version.input_spec),
        _classes(version.class_names, version.num_classes),
        _layer_groups(version.layer_groups),
        _provenance(version.provenance),
        _safety(version.safety),
        _evaluations(evaluations),
        _notes(version.inspection.get("notes", [])),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def read_card(
    session: Session, model_id: int, number: int | None = None
) -> tuple[ModelVersion, str]:
    """The version and its card; one without a stored card gets a generated one, unstored."""
    version = resolve_version(session, model_id, number)
    if version.card:
        return version, version.card
    model = get_model(session, model_id)
    return version, render_card(model, version, list_evaluations(session, version.id))


def update_card(
    session: Session, model_id: int, number: int | None, markdown: str | None
) -> ModelVersion:
    """Replace the card with ``markdown``, or with a freshly generated one when None.

    Raises:
        InvalidInput: The text is over the size limit.
    """
    version = resolve_version(session, model_id, number)
    if markdown is None:
        model = get_model(session, model_id)
        version.card = render_card(model, version, list_evaluations(session, version.id))
        version.card_edited_at = None
        return version
    if len(markdown) > MAX_CARD_CHARACTERS:
        raise InvalidInput(
            f"A model card may have {MAX_CARD_CHARACTERS} characters, not {len(markdown)}",
            details={"field": "markdown"},
        )
    version.card = markdown
    version.card_edited_at = utcnow()
    return version


def _title(model: Model, version: ModelVersion) -> str:
    lines = [f"# {model.name} (version {version.number})"]
    if model.description:
        lines += ["", model.description]
    return "\n".join(lines)


def _overview(version: ModelVersion) -> str:
    rows = [
        ("Framework", version.framework),
        ("Format", version.format),
        ("Architecture", version.architecture or "recorded in the file"),
        ("Classes", str(version.num_classes)),
        ("Parameters", f"{version.parameter_count:,}" if version.parameter_count else "unknown"),
        ("File size", f"{version.size_bytes:,} bytes"),
        ("SHA-256", f"`{version.sha256}`"),
        (
            "Created",
            version.created_at.strftime("%Y-%m-%d %H:%M UTC") if version.created_at else "",
        ),
    ]
    return "## Overview\n\n" + _table(("", ""), rows)


def _inputs(spec: dict[str, Any]) -> str:
    if not spec:
        return ""
    height, width = spec.get("size_px", ("?", "?"))
    return (
        "## Inputs\n\n"
        f"RGB images resized and centre-cropped to {height}x{width} pixels, scaled to 0..1 and "
        f"normalised with mean {_floats(spec.get('mean'))} and std {_floats(spec.get('std'))}."
    )


def _classes(names: list[Any], num_classes: int) -> str:
    if not names:
        return f"## Classes\n\n{num_classes} outputs, known by index only."
    shown = ", ".join(str(name) for name in names[:_CLASSES_SHOWN])
    more = f", and {len(names) - _CLASSES_SHOWN} more" if len(names) > _CLASSES_SHOWN else ""
    return f"## Classes\n\n{len(names)} classes: {shown}{more}."


def _layer_groups(groups: list[Any]) -> str:
    if not groups:
        return ""
    rows = [
        (
            str(g.get("name")),
            ", ".join(g.get("modules", [])[:6]),
            f"{g.get('parameter_count', 0):,}",
        )
        for g in groups
    ]
    return (
        "## Layer groups\n\nFrom the input side to the head; training freezes them in order.\n\n"
        + _table(("Group", "Modules", "Parameters"), rows)
    )


def _provenance(provenance: dict[str, Any]) -> str:
    kind = provenance.get("kind", "unknown")
    if kind == "url":
        origin = f"Downloaded from <{provenance.get('url', '')}>."
    elif kind == "uploaded":
        origin = f"Uploaded as `{provenance.get('originalName', '')}`."
    elif provenance.get("pretrained") is False:
        origin = (
            f"Built from the architecture `{provenance.get('architecture', '')}` "
            f"({provenance.get('revision', '')}) with fresh weights: never trained."
        )
    elif kind == "repository":
        origin = (
            f"Imported from {provenance.get('repository', '')} "
            f"`{provenance.get('reference', '')}` at revision `{provenance.get('revision', '')}`."
        )
    elif kind == "trained":
        origin = (
            f"Trained by job {provenance.get('jobId')} from model version "
            f"{provenance.get('fromVersionId')} on dataset version "
            f"{provenance.get('datasetVersionId')}."
        )
    elif kind == "ensemble":
        origin = f"An ensemble of model versions {provenance.get('memberVersionIds', [])}."
    else:
        origin = f"Origin: {kind}."
    return f"## Provenance\n\n{origin}"


def _safety(safety: dict[str, Any]) -> str:
    if not safety:
        return ""
    checks = "\n".join(f"- {check}" for check in safety.get("checks", []))
    return f"## Safety\n\nVerdict: **{safety.get('verdict', 'unknown')}**.\n\n{checks}".rstrip()


def _evaluations(evaluations: Sequence[ModelEvaluation]) -> str:
    if not evaluations:
        return "## Evaluation\n\nNot evaluated yet."
    rows = []
    for evaluation in evaluations:
        metrics = ", ".join(f"{k}: {_metric(v)}" for k, v in sorted(evaluation.metrics.items()))
        dataset = str(evaluation.dataset_version_id or "-")
        rows.append((dataset, metrics))
    return "## Evaluation\n\n" + _table(("Dataset version", "Metrics"), rows)


def _notes(notes: list[Any]) -> str:
    if not notes:
        return ""
    return "## Import notes\n\n" + "\n".join(f"- {note}" for note in notes)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _floats(values: Any) -> str:
    if not values:
        return "?"
    return "(" + ", ".join(f"{float(v):.3f}" for v in values) + ")"


def _metric(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
