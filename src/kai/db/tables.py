"""ORM tables of Kai's metadata database.

These are called tables, not models: ``kai.models`` is the model registry.
Every change to them comes with an Alembic migration in ``migrations/``.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Role(enum.StrEnum):
    """What a user may do: viewers read, editors change, admins manage users."""

    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"


class JobState(enum.StrEnum):
    """The life cycle of a job."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class Split(enum.StrEnum):
    """The split a sample belongs to."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class DatasetStatus(enum.StrEnum):
    """Whether a dataset has a usable version yet."""

    IMPORTING = "importing"
    READY = "ready"
    FAILED = "failed"


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class Setting(Base):
    """A key-value pair owned by Kai itself, such as generated secrets."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class User(Base):
    """A person or a script that signs in."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class WebSession(Base):
    """A signed-in admin panel session; the cookie holds the secret, we keep its hash."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Blob(Base):
    """A stored file, addressed by the SHA-256 of its bytes."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    """A unit of background work; the database, not the broker, owns it."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[JobState] = mapped_column(_enum(JobState), default=JobState.QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when the job ends failed or cancelled; cleared by the worker that runs on_failure.
    failure_hook_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the reconciler last re-sent "job N is ready" for this queued job.
    redispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    depends_on: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class JobEvent(Base):
    """One event a job emitted; ``seq`` counts from 1 without gaps per job."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Dataset(Base):
    """A named, versioned collection of labelled images."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    license: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[DatasetStatus] = mapped_column(
        _enum(DatasetStatus), default=DatasetStatus.IMPORTING
    )
    error: Mapped[str | None] = mapped_column(Text)
    import_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DatasetVersion(Base):
    """An immutable state of a dataset; every change makes a new one."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    message: Mapped[str] = mapped_column(Text, default="")
    classes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    sample_count: Mapped[int] = mapped_column(Integer, default=0)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_by_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Sample(Base):
    """One labelled image in one dataset version.

    ``uid`` stays the same when a later version carries the sample over, so a
    diff can tell relabelled and moved samples from added and removed ones.
    """

    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("version_id", "uid"),
        Index("ix_samples_version_label_split", "version_id", "label", "split"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(32))
    blob_sha256: Mapped[str] = mapped_column(String(64), index=True)
    reduced_sha256: Mapped[str] = mapped_column(String(64), index=True)
    label: Mapped[str] = mapped_column(String(200))
    split: Mapped[Split] = mapped_column(_enum(Split))
    original_name: Mapped[str] = mapped_column(String(1024))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    group: Mapped[str | None] = mapped_column(String(200))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class ModelStatus(enum.StrEnum):
    """Whether a model has a usable version yet."""

    IMPORTING = "importing"
    READY = "ready"
    FAILED = "failed"


class Model(Base):
    """A named image classifier with immutable versions."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[ModelStatus] = mapped_column(_enum(ModelStatus), default=ModelStatus.IMPORTING)
    error: Mapped[str | None] = mapped_column(Text)
    import_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    """An immutable state of a model: its files, what they hold and where they came from."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    framework: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(64))
    architecture: Mapped[str | None] = mapped_column(String(200))
    input_spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    class_names: Mapped[list[Any]] = mapped_column(JSON, default=list)
    num_classes: Mapped[int] = mapped_column(Integer)
    parameter_count: Mapped[int | None] = mapped_column(BigInteger)
    layer_groups: Mapped[list[Any]] = mapped_column(JSON, default=list)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    safety: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    inspection: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    card: Mapped[str] = mapped_column(Text, default="")
    card_edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelArtifact(Base):
    """A file of a model version, stored as a blob under a name its format expects."""

    __tablename__ = "model_artifacts"
    __table_args__ = (UniqueConstraint("version_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    blob_sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)


class ModelEvaluation(Base):
    """Metrics of a model version measured on a dataset version."""

    __tablename__ = "model_evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    dataset_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="SET NULL")
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IssueType(enum.StrEnum):
    """What the quality analysis found wrong with a sample."""

    UNREADABLE = "unreadable"
    TOO_SMALL = "too_small"
    ODD_ASPECT_RATIO = "odd_aspect_ratio"
    BLURRY = "blurry"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    LOW_CONTRAST = "low_contrast"
    LOW_INFORMATION = "low_information"
    GRAYSCALE = "grayscale"
    EXIF_ROTATED = "exif_rotated"
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    LABEL_CONFLICT = "label_conflict"
    EXACT_LEAKAGE = "exact_leakage"
    NEAR_LEAKAGE = "near_leakage"
    GROUP_LEAKAGE = "group_leakage"
    LABEL_ERROR = "label_error"
    OUTLIER = "outlier"


class IssueSeverity(enum.StrEnum):
    """How much an issue hurts training, from ``high`` down to ``info``."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class QualityReport(Base):
    """The quality analysis of one dataset version: score, metrics and recommendations."""

    __tablename__ = "quality_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    score: Mapped[float] = mapped_column(Float)
    needs_improvement: Mapped[bool] = mapped_column(Boolean)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    score_breakdown: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    issue_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    recommendations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class QualityIssue(Base):
    """One issue of one sample in a quality report, with the evidence behind it."""

    __tablename__ = "quality_issues"
    __table_args__ = (Index("ix_quality_issues_report_type", "report_id", "issue_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("quality_reports.id", ondelete="CASCADE"))
    sample_uid: Mapped[str] = mapped_column(String(32))
    issue_type: Mapped[IssueType] = mapped_column(
        Enum(
            IssueType, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e]
        )
    )
    severity: Mapped[IssueSeverity] = mapped_column(_enum(IssueSeverity))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class EvaluationPlot(Base):
    """A PNG plot of a model evaluation, stored as a blob."""

    __tablename__ = "evaluation_plots"
    __table_args__ = (UniqueConstraint("evaluation_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("model_evaluations.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(32))
    blob_sha256: Mapped[str] = mapped_column(String(64), index=True)
