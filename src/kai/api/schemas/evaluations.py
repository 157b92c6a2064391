"""Schemas of model evaluations: starting one, comparing them, reading one in full."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kai.api.schemas.base import ApiModel, UtcDatetime
from kai.evaluation import EvaluationSplit, EvaluationStart, EvaluationView, headline


class EvaluationCreate(ApiModel):
    """Evaluate a model version on a dataset version's samples."""

    dataset_id: int
    dataset_version: int | None = Field(default=None, ge=1, description="The latest if absent")
    model_version: int | None = Field(default=None, ge=1, description="The latest if absent")
    split: EvaluationSplit | None = Field(
        default=None, description="The samples scored: test, else val, else all when absent"
    )


class EvaluationStarted(ApiModel):
    """A queued evaluation job and what it will score."""

    job_id: int
    model_id: int
    model_version: int
    dataset_id: int
    dataset_version: int
    split: EvaluationSplit
    num_samples: int
    evaluated_classes: list[str]
    unmapped_dataset_classes: list[str]

    @classmethod
    def from_start(cls, model_id: int, start: EvaluationStart) -> EvaluationStarted:
        """The answer to a start request."""
        mapping = start.mapping.to_json()
        return cls(
            job_id=start.job.id,
            model_id=model_id,
            model_version=start.version.number,
            dataset_id=start.dataset_version.dataset_id,
            dataset_version=start.dataset_version.number,
            split=start.split,
            num_samples=start.num_samples,
            evaluated_classes=mapping["evaluatedClasses"],
            unmapped_dataset_classes=mapping["unmappedDatasetClasses"],
        )


class EvaluationSummaryRead(ApiModel):
    """One evaluation's headline numbers, comparable across versions."""

    id: int
    model_id: int
    model_version: int
    model_version_id: int
    dataset_id: int | None
    dataset_name: str | None
    dataset_version: int | None
    split: str | None
    job_id: int | None
    num_samples: int | None
    accuracy: float | None
    balanced_accuracy: float | None
    top3_accuracy: float | None
    macro_f1: float | None
    weighted_f1: float | None
    log_loss: float | None
    ece: float | None
    plots: list[str]
    created_at: UtcDatetime

    @classmethod
    def from_view(cls, view: EvaluationView) -> EvaluationSummaryRead:
        """The summary of an evaluation row with its versions."""
        metrics = view.evaluation.metrics
        num_samples = metrics.get("numSamples")
        return cls(
            id=view.evaluation.id,
            model_id=view.version.model_id,
            model_version=view.version.number,
            model_version_id=view.version.id,
            dataset_id=view.dataset.id if view.dataset else None,
            dataset_name=view.dataset.name if view.dataset else None,
            dataset_version=view.dataset_version.number if view.dataset_version else None,
            split=str(metrics["split"]) if "split" in metrics else None,
            job_id=view.evaluation.created_by_job_id,
            num_samples=int(num_samples) if isinstance(num_samples, int) else None,
            **_snake(headline(metrics)),
            plots=sorted(dict(metrics.get("plots") or {})),
            created_at=view.evaluation.created_at,
        )


class EvaluationRead(EvaluationSummaryRead):
    """One evaluation with its whole metrics document."""

    metrics: dict[str, Any]

    @classmethod
    def from_view(cls, view: EvaluationView) -> EvaluationRead:
        """The evaluation in full."""
        summary = EvaluationSummaryRead.from_view(view)
        return cls(**summary.model_dump(by_alias=False), metrics=view.evaluation.metrics)


def _snake(values: dict[str, float | None]) -> dict[str, float | None]:
    names = {
        "accuracy": "accuracy",
        "balancedAccuracy": "balanced_accuracy",
        "top3Accuracy": "top3_accuracy",
        "macroF1": "macro_f1",
        "weightedF1": "weighted_f1",
        "logLoss": "log_loss",
        "ece": "ece",
    }
    return {names[key]: value for key, value in values.items()}
