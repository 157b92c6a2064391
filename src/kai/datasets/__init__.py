"""Datasets: import, versions, edits, diffs and samples, in domain words without HTTP.

The API, the CLI and the job handlers call the functions re-exported here.
"""

from kai.datasets.diff import VersionDiff, compute_diff
from kai.datasets.edits import (
    EditOperation,
    MergeClasses,
    Move,
    Relabel,
    Remove,
    RenameClass,
    apply_edits,
)
from kai.datasets.handlers import register_job_handlers
from kai.datasets.imports import (
    ADD_FILES_JOB,
    IMPORT_JOB,
    ImportSource,
    SourceKind,
    check_source,
    find_by_idempotency_key,
    remove_upload,
    start_add_files,
    start_import,
)
from kai.datasets.records import (
    DatasetChanges,
    delete_dataset,
    get_dataset,
    get_sample,
    list_datasets,
    list_samples,
    read_dataset,
    resolve_version,
    update_dataset,
)
from kai.datasets.thumbnails import media_type, read_thumbnail
from kai.datasets.versions import get_version, latest_version, list_versions

__all__ = [
    "ADD_FILES_JOB",
    "IMPORT_JOB",
    "DatasetChanges",
    "EditOperation",
    "ImportSource",
    "MergeClasses",
    "Move",
    "Relabel",
    "Remove",
    "RenameClass",
    "SourceKind",
    "VersionDiff",
    "apply_edits",
    "check_source",
    "compute_diff",
    "delete_dataset",
    "find_by_idempotency_key",
    "get_dataset",
    "get_sample",
    "get_version",
    "latest_version",
    "list_datasets",
    "list_samples",
    "list_versions",
    "media_type",
    "read_dataset",
    "read_thumbnail",
    "register_job_handlers",
    "remove_upload",
    "resolve_version",
    "start_add_files",
    "start_import",
    "update_dataset",
]
