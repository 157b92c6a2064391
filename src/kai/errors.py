"""The one exception tree of Kai's services.

Services raise these; the API maps each class to an HTTP status in one place
and the CLI prints their messages. Every class carries a stable ``code``.

    KaiError
    ├── InvalidInput              the request or its files are malformed
    │   ├── UnsafeArchive         an archive breaks a safety rule
    │   │   └── CorruptArchive    an archive is damaged or not a ZIP at all
    │   ├── InvalidImage          a file is not a readable, acceptable image
    │   ├── InvalidCsv            a CSV mapping is malformed; names the row
    │   ├── InvalidDatasetLayout  files do not form a classification dataset
    │   ├── UnsafeDownload        a URL or its answer breaks a download safety rule
    │   ├── DownloadFailed        the server was unreachable or did not deliver the file
    │   ├── UnsafeModelFile       a model file could run code or fails its checksum
    │   │   └── CorruptModelFile  a model file is damaged or in no format Kai reads
    │   ├── TrainingDiverged      a training run's loss stopped being finite
    │   └── GraphNotConvertible   an ONNX graph does not convert to a PyTorch network
    ├── TooLarge                  an upload or entry is over a configured limit
    ├── NotFound                  the named resource does not exist
    ├── Conflict                  the resource's state forbids the change
    ├── NotAuthenticated          no valid credentials
    ├── PermissionDenied          credentials lack the role for the action
    │   └── CsrfFailed            a cookie request lacks its session's CSRF token
    ├── InsufficientStorage       not enough free disk space for the work
    ├── IsolatedTaskFailed        work in an isolated child process crashed or failed
    │   ├── MemoryLimitExceeded   it needed more memory than its limit
    │   └── TimeLimitExceeded     it ran past its time limit
    └── JobCancelled              a running job saw its cancellation request
"""

from __future__ import annotations

from typing import Any


class KaiError(Exception):
    """Base of every error Kai raises on purpose."""

    code = "kai_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class InvalidInput(KaiError):
    """The request or the files it carries are malformed."""

    code = "invalid_input"


class UnsafeArchive(InvalidInput):
    """An archive breaks a safety rule (paths, links, sizes, ratios, nesting)."""

    code = "unsafe_archive"


class CorruptArchive(UnsafeArchive):
    """An archive is damaged, truncated or not a ZIP archive at all."""

    code = "corrupt_archive"


class InvalidImage(InvalidInput):
    """A file is not an image Kai accepts (wrong magic, corrupt, too many pixels)."""

    code = "invalid_image"


class InvalidCsv(InvalidInput):
    """A CSV mapping is malformed; the message names the row."""

    code = "invalid_csv"


class InvalidDatasetLayout(InvalidInput):
    """The files do not form an image-classification dataset."""

    code = "invalid_dataset_layout"


class UnsafeDownload(InvalidInput):
    """A URL, one of its redirects or the server's answer breaks a download safety rule."""

    code = "unsafe_download"


class DownloadFailed(InvalidInput):
    """The server could not be reached, timed out, or did not deliver the whole file."""

    code = "download_failed"


class UnsafeModelFile(InvalidInput):
    """A model file could run code when loaded, or its bytes fail their checksum."""

    code = "unsafe_model_file"


class CorruptModelFile(UnsafeModelFile):
    """A model file is damaged, truncated or in no format Kai reads."""

    code = "corrupt_model_file"


class TrainingDiverged(InvalidInput):
    """A training run's loss became NaN or infinite: the settings make it diverge."""

    code = "training_diverged"


class GraphNotConvertible(InvalidInput):
    """An ONNX graph has no faithful PyTorch conversion, so it cannot be fine-tuned whole."""

    code = "graph_not_convertible"


class TooLarge(KaiError):
    """An upload, archive or entry is over a configured limit."""

    code = "too_large"


class NotFound(KaiError):
    """The named resource does not exist."""

    code = "not_found"


class Conflict(KaiError):
    """The resource's current state forbids the change."""

    code = "conflict"


class NotAuthenticated(KaiError):
    """The request carries no valid credentials."""

    code = "not_authenticated"


class PermissionDenied(KaiError):
    """The credentials are valid but lack the role for the action."""

    code = "permission_denied"


class CsrfFailed(PermissionDenied):
    """A state-changing request signed in by cookie lacks its session's CSRF token."""

    code = "csrf_failed"


class InsufficientStorage(KaiError):
    """There is not enough free disk space for the work."""

    code = "insufficient_storage"


class IsolatedTaskFailed(KaiError):
    """Work run in an isolated child process crashed, was killed or raised."""

    code = "isolated_task_failed"


class MemoryLimitExceeded(IsolatedTaskFailed):
    """Isolated work needed more memory than its limit."""

    code = "memory_limit_exceeded"


class TimeLimitExceeded(IsolatedTaskFailed):
    """Isolated work ran past its wall-clock limit."""

    code = "time_limit_exceeded"


class JobCancelled(KaiError):
    """A running job observed that its cancellation was requested."""

    code = "job_cancelled"
