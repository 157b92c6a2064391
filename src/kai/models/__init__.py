"""The model registry: imports, versions, artifacts, cards, evaluations and predictions.

Models have immutable versions; each records its framework and format, its
artifact files (blobs), architecture, input spec, class names, provenance,
safety verdict, evaluations and a Markdown card. Framework code lives in
:mod:`kai.models.formats`, behind one adapter per format. The API, the CLI
and the job handlers call the functions re-exported here.
"""

from kai.models.cards import read_card, render_card, update_card
from kai.models.comparisons import (
    COMPARED_FACTS,
    VersionComparison,
    compare_versions,
    parse_version_numbers,
)
from kai.models.handlers import register_job_handlers
from kai.models.imports import (
    IMPORT_JOB,
    ModelImportConfig,
    ModelSource,
    SourceKind,
    check_model_name,
    check_source_url,
    find_by_idempotency_key,
    remove_upload,
    start_model_import,
)
from kai.models.inspection import file_digest, resolve_format
from kai.models.predictions import (
    ClassScore,
    ImagePrediction,
    LoadRequest,
    PredictorCache,
    load_request_for,
    predict_images,
)
from kai.models.records import (
    get_model,
    get_version,
    import_running,
    list_artifacts,
    list_evaluations,
    list_lineage,
    list_models,
    list_versions,
    read_model,
    record_evaluation,
    resolve_version,
    update_model,
)
from kai.models.trained import (
    GRAPH_CHECK,
    KERAS_CHECK,
    TRANSFORMERS_CHECK,
    WEIGHTS_CHECK,
    TrainedVersion,
    create_trained_version,
)
from kai.models.versions import StoredFile

__all__ = [
    "COMPARED_FACTS",
    "GRAPH_CHECK",
    "IMPORT_JOB",
    "KERAS_CHECK",
    "TRANSFORMERS_CHECK",
    "WEIGHTS_CHECK",
    "ClassScore",
    "ImagePrediction",
    "LoadRequest",
    "ModelImportConfig",
    "ModelSource",
    "PredictorCache",
    "SourceKind",
    "StoredFile",
    "TrainedVersion",
    "VersionComparison",
    "check_model_name",
    "check_source_url",
    "compare_versions",
    "create_trained_version",
    "file_digest",
    "find_by_idempotency_key",
    "get_model",
    "get_version",
    "import_running",
    "list_artifacts",
    "list_evaluations",
    "list_lineage",
    "list_models",
    "list_versions",
    "load_request_for",
    "parse_version_numbers",
    "predict_images",
    "read_card",
    "read_model",
    "record_evaluation",
    "register_job_handlers",
    "remove_upload",
    "render_card",
    "resolve_format",
    "resolve_version",
    "start_model_import",
    "update_card",
    "update_model",
]
