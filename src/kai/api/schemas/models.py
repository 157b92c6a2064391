"""Schemas of models, their versions, cards, URL imports and predictions."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kai.api.schemas.base import ApiModel, UtcDatetime
from kai.db.tables import Model, ModelArtifact, ModelEvaluation, ModelStatus, ModelVersion
from kai.models import COMPARED_FACTS, ImagePrediction, VersionComparison


class ModelImportStarted(ApiModel):
    """A model whose import job was queued."""

    id: int
    job_id: int


class UrlImportCreate(ApiModel):
    """Import a model file from a URL; a new model unless ``modelId`` names one."""

    url: str = Field(min_length=1, max_length=8192)
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=10_000)
    framework: str | None = Field(default=None, max_length=64)
    architecture: str | None = Field(default=None, max_length=200)
    model_id: int | None = None
    input_size: int | None = Field(default=None, ge=8, le=4096)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    class_names: list[str] | None = Field(default=None, max_length=100_000)
    head_layer: str | None = Field(default=None, max_length=200)
    graph_input: str | None = Field(default=None, max_length=200)
    graph_output: str | None = Field(default=None, max_length=200)


class ModelUpdate(ApiModel):
    """Descriptive fields to change; omitted ones stay as they are."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)


class InputSpecRead(ApiModel):
    """How images become the model's input."""

    size_px: list[int]
    mean: list[float]
    std: list[float]
    crop_fraction: float


class LayerGroupRead(ApiModel):
    """Layers that training freezes or unfreezes together."""

    name: str
    modules: list[str]
    parameter_count: int


class ArtifactRead(ApiModel):
    """A stored file of a version."""

    role: str
    name: str
    sha256: str
    size_bytes: int

    @classmethod
    def from_row(cls, artifact: ModelArtifact) -> ArtifactRead:
        """The schema of an artifact row."""
        return cls(
            role=artifact.role,
            name=artifact.name,
            sha256=artifact.blob_sha256,
            size_bytes=artifact.size_bytes,
        )


class EvaluationRead(ApiModel):
    """Metrics of a version on a dataset version."""

    id: int
    dataset_version_id: int | None
    metrics: dict[str, Any]
    created_at: UtcDatetime


class ModelVersionRead(ApiModel):
    """An immutable version of a model."""

    id: int
    model_id: int
    number: int
    parent_version_id: int | None
    framework: str
    format: str
    architecture: str | None
    input_spec: InputSpecRead | None
    num_classes: int
    class_names: list[str]
    temperature: float | None = Field(
        None, description="Calibrates predictions; fitted on validation by the training job"
    )
    parameter_count: int | None
    layer_groups: list[LayerGroupRead]
    provenance: dict[str, Any]
    safety: dict[str, Any]
    notes: list[str]
    details: dict[str, Any]
    sha256: str
    size_bytes: int
    artifacts: list[ArtifactRead]
    evaluations: list[EvaluationRead]
    created_by_job_id: int | None
    created_at: UtcDatetime

    @classmethod
    def from_rows(
        cls,
        version: ModelVersion,
        artifacts: list[ModelArtifact],
        evaluations: list[ModelEvaluation],
    ) -> ModelVersionRead:
        """The schema of a version with its artifacts and evaluations."""
        return cls(
            id=version.id,
            model_id=version.model_id,
            number=version.number,
            parent_version_id=version.parent_id,
            framework=version.framework,
            format=version.format,
            architecture=version.architecture,
            input_spec=InputSpecRead(**version.input_spec) if version.input_spec else None,
            num_classes=version.num_classes,
            class_names=[str(name) for name in version.class_names],
            temperature=version.inspection.get("spec", {}).get("temperature"),
            parameter_count=version.parameter_count,
            layer_groups=[LayerGroupRead(**group) for group in version.layer_groups],
            provenance=version.provenance,
            safety=version.safety,
            notes=list(version.inspection.get("notes", [])),
            details=dict(version.inspection.get("details", {})),
            sha256=version.sha256,
            size_bytes=version.size_bytes,
            artifacts=[ArtifactRead.from_row(a) for a in artifacts],
            evaluations=[EvaluationRead.model_validate(e) for e in evaluations],
            created_by_job_id=version.created_by_job_id,
            created_at=version.created_at,
        )


class ModelRead(ApiModel):
    """A model with a summary of its latest version."""

    id: int
    name: str
    description: str
    status: ModelStatus
    error: str | None
    import_job_id: int | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    version: int | None
    version_id: int | None
    framework: str | None
    format: str | None
    architecture: str | None
    num_classes: int | None
    class_names: list[str]
    parameter_count: int | None

    @classmethod
    def from_rows(cls, model: Model, version: ModelVersion | None) -> ModelRead:
        """The schema of a model and its latest version."""
        return cls(
            id=model.id,
            name=model.name,
            description=model.description,
            status=model.status,
            error=model.error,
            import_job_id=model.import_job_id,
            created_at=model.created_at,
            updated_at=model.updated_at,
            version=version.number if version else None,
            version_id=version.id if version else None,
            framework=version.framework if version else None,
            format=version.format if version else None,
            architecture=version.architecture if version else None,
            num_classes=version.num_classes if version else None,
            class_names=[str(n) for n in version.class_names] if version else [],
            parameter_count=version.parameter_count if version else None,
        )


class CardRead(ApiModel):
    """A version's Markdown model card."""

    model_id: int
    version: int
    markdown: str
    edited: bool
    edited_at: UtcDatetime | None


class CardUpdate(ApiModel):
    """A new card text; ``markdown: null`` regenerates the card from what Kai knows."""

    markdown: str | None = Field(max_length=200_000)


class ClassScoreRead(ApiModel):
    """One class and its probability."""

    index: int
    label: str
    probability: float


class ImagePredictionRead(ApiModel):
    """The most probable classes of one image."""

    file: str
    predictions: list[ClassScoreRead]

    @classmethod
    def from_prediction(cls, prediction: ImagePrediction) -> ImagePredictionRead:
        """The schema of one image's prediction."""
        scores = [
            ClassScoreRead(index=s.index, label=s.label, probability=s.probability)
            for s in prediction.top
        ]
        return cls(file=prediction.name, predictions=scores)


class PredictionsRead(ApiModel):
    """The predictions of one model version for each image sent."""

    model_id: int
    version: int
    results: list[ImagePredictionRead]


class VersionFactsRead(ApiModel):
    """One version's facts in a comparison, keyed as ``VersionComparisonRead.facts`` lists."""

    version: int
    version_id: int
    created_at: UtcDatetime
    facts: dict[str, Any]


class ClassChangeRead(ApiModel):
    """The class names a version added and dropped against the first version compared."""

    version: int
    added: list[str]
    removed: list[str]


class MetricRowRead(ApiModel):
    """One metric on one dataset version, per compared version in order (null: not evaluated)."""

    dataset_version_id: int | None
    metric: str
    values: list[float | None]


class VersionComparisonRead(ApiModel):
    """Versions of one model side by side."""

    model_id: int
    facts: list[str]
    differing: list[str]
    versions: list[VersionFactsRead]
    class_changes: list[ClassChangeRead]
    metrics: list[MetricRowRead]

    @classmethod
    def from_comparison(cls, comparison: VersionComparison) -> VersionComparisonRead:
        """The schema of a comparison."""
        return cls(
            model_id=comparison.model_id,
            facts=list(COMPARED_FACTS),
            differing=comparison.differing,
            versions=[
                VersionFactsRead(
                    version=v.number,
                    version_id=v.version_id,
                    created_at=v.created_at,
                    facts=v.facts,
                )
                for v in comparison.versions
            ],
            class_changes=[
                ClassChangeRead(version=c.number, added=c.added, removed=c.removed)
                for c in comparison.class_changes
            ],
            metrics=[
                MetricRowRead(
                    dataset_version_id=m.dataset_version_id, metric=m.metric, values=m.values
                )
                for m in comparison.metrics
            ],
        )
