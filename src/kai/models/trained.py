"""Recording a model version that a training job made from another version.

The new version is the next version of its parent's model. Its provenance
names the job, the parent version and the dataset version; its inspection
keeps the training configuration and the final metrics, which are also
recorded as an evaluation on that dataset version. A retried job that
already wrote its version gets that version back, never a second one.

A Keras model fine-tuned through its own network stays a ``keras`` version:
the trained ``model.keras``, in the parent's format and framework. A
transformers classifier stays a ``transformers`` version: its trained
``model.safetensors`` with the files its format loads beside it (the new
``config.json``, the parent's ``preprocessor_config.json``).

A head trained over a graph model's frozen features becomes a ``kai_head``
version: the head file, and the parent's own files kept unchanged under
``base/`` (the same blobs), which its format loads as the feature extractor.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kai.db.tables import ModelVersion
from kai.models.cards import render_card
from kai.models.formats import InputSpec, Inspection, LayerGroup, ModelSpec
from kai.models.formats.frozen_heads import BASE_DIR
from kai.models.formats.frozen_heads import FORMAT_NAME as HEAD_FORMAT
from kai.models.records import get_version, list_artifacts
from kai.models.versions import NewVersion, StoredFile, lock_model, write_version

logger = logging.getLogger(__name__)

BASE_ROLE = "base"
HEAD_FRAMEWORK = "kai"
WEIGHTS_CHECK = "written by Kai's training job as safetensors: tensors only, no code"
KERAS_CHECK = (
    "written by Kai's training job as a .keras archive of built-in Keras layers, "
    "read back through the checked Keras loader before it was stored"
)
TRANSFORMERS_CHECK = (
    "written by Kai's training job with save_pretrained: safetensors weights and a config.json "
    "of transformers' own class for its model_type (no auto_map), read back through the "
    "checked loader with the trained weights before it was stored"
)
GRAPH_CHECK = (
    "written by Kai's training job as an ONNX graph exported from the fine-tuned network, "
    "checked against it in ONNX Runtime"
)


@dataclass(frozen=True)
class TrainedVersion:
    """What a training job hands over to become a model version.

    Attributes:
        parent_id: The version training started from.
        job_id: The training job.
        dataset_version_id: The dataset version it trained on.
        weights: The trained weights already in the blob store: a safetensors file,
            a head file, or a ``.keras`` archive for a Keras parent.
        class_names: The classes of the new head, in output order.
        input_spec: How images become its input.
        layer_groups: Its layer groups, from the input side to the head.
        parameter_count: Its parameters.
        config: The training configuration, as JSON.
        metrics: The final metrics, as JSON.
        head_over_parent: ``weights`` is a head file that runs over the parent's
            features (see :mod:`kai.models.formats.frozen_heads`).
        details: Format-specific facts for the inspection, as an import records them.
        safety_checks: The checks the weights file passed, for its safety verdict.
        extra_files: Files stored beside ``weights`` that its format loads with it,
            such as a transformers version's ``config.json``.
        head_layer: The classification layer's name, recorded in the spec for formats
            that read features before it; None lets the format find it.
        temperature: The temperature fitted on the validation split, which calibrates
            the version's predictions.
    """

    parent_id: int
    job_id: int
    dataset_version_id: int
    weights: StoredFile
    class_names: Sequence[str]
    input_spec: InputSpec
    layer_groups: Sequence[LayerGroup]
    parameter_count: int
    config: Mapping[str, Any]
    metrics: Mapping[str, Any]
    head_over_parent: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)
    safety_checks: Sequence[str] = (WEIGHTS_CHECK,)
    extra_files: Sequence[StoredFile] = ()
    head_layer: str | None = None
    temperature: float | None = None


def create_trained_version(session: Session, trained: TrainedVersion) -> ModelVersion:
    """Write the trained version, or find the one this job already wrote."""
    earlier = session.scalar(
        select(ModelVersion).where(ModelVersion.created_by_job_id == trained.job_id)
    )
    if earlier is not None:
        return earlier
    parent = get_version(session, trained.parent_id)
    model = lock_model(session, parent.model_id)
    base_files = _base_files(session, parent) if trained.head_over_parent else []
    version = write_version(session, model, _new_version(parent, trained, base_files))
    version.card = render_card(model, version)
    logger.info("Trained version written", extra={"model_id": model.id, "job_id": trained.job_id})
    return version


def _base_files(session: Session, parent: ModelVersion) -> list[StoredFile]:
    return [
        StoredFile(BASE_ROLE, f"{BASE_DIR}/{row.name}", row.blob_sha256, row.size_bytes)
        for row in list_artifacts(session, parent.id)
        if row.role != "original"
    ]


def _new_version(
    parent: ModelVersion, trained: TrainedVersion, base_files: Sequence[StoredFile]
) -> NewVersion:
    over_parent = trained.head_over_parent
    spec = ModelSpec(
        format=HEAD_FORMAT if over_parent else parent.format,
        architecture=None if over_parent else parent.architecture,
        num_classes=len(trained.class_names),
        input=trained.input_spec,
        class_names=list(trained.class_names),
        graph_output=trained.head_layer,
        temperature=trained.temperature,
    )
    inspection = Inspection(
        spec=spec,
        parameter_count=trained.parameter_count,
        layer_groups=list(trained.layer_groups),
        notes=[f"Trained by job {trained.job_id} from model version {parent.number}"],
        details={
            **trained.details,
            "trainingConfig": dict(trained.config),
            "finalMetrics": dict(trained.metrics),
        },
    )
    provenance = {
        "kind": "trained",
        "jobId": trained.job_id,
        "fromVersionId": parent.id,
        "datasetVersionId": trained.dataset_version_id,
    }
    checks = list(trained.safety_checks)
    if over_parent:
        checks.append(f"base files are model version {parent.number}'s, checked when it came in")
    safety = {"verdict": "passed", "checks": checks}
    return NewVersion(
        framework=HEAD_FRAMEWORK if over_parent else parent.framework,
        inspection=inspection,
        files=[trained.weights, *trained.extra_files, *base_files],
        sha256=trained.weights.sha256,
        size_bytes=trained.weights.size_bytes,
        provenance=provenance,
        safety=safety,
        parent_id=parent.id,
        job_id=trained.job_id,
    )
