"""Examining an uploaded model file: its format, its facts, its artifact and a trial run.

:func:`examine_model` is what the import job hands to the sandbox: in a
spawned child with memory and time limits and no secrets, it builds the
format registry, inspects the file, writes the artifact files to keep, loads
them back as a predictor and runs one inference on a random input. Only the
:class:`Examination` (plain data) comes back to the job.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kai.errors import InvalidInput
from kai.models.formats import (
    ArtifactFile,
    FormatRegistry,
    ImportOptions,
    Inspection,
    ModelFormat,
)
from kai.security.sandbox import run_isolated

logger = logging.getLogger(__name__)

# Beyond what the sandbox holds once torch is imported; room for a large backbone twice over.
SANDBOX_MEMORY_BYTES = 6 * 1024**3
SANDBOX_TIMEOUT_SECONDS = 600.0
_HASH_CHUNK_BYTES = 1024 * 1024
# Frameworks whose runtime is imported before the memory cap; Keras runs on PyTorch, and an
# ONNX graph is tried as a PyTorch network to tell whether it can be fine-tuned whole.
_PRELOADS: dict[str, tuple[str, ...]] = {
    "pytorch": ("torch",),
    "keras": ("torch",),
    "onnx": ("torch",),
}


@dataclass(frozen=True)
class ExamineRequest:
    """What the sandboxed examination reads and where it writes.

    Attributes:
        model_format: The format detected (or chosen) for the file; pickled by reference,
            so the sandbox imports only that adapter's framework.
        path: The uploaded file.
        options: The import options.
        out_dir: An empty folder for the artifact files.
    """

    model_format: ModelFormat
    path: Path
    options: ImportOptions
    out_dir: Path


@dataclass(frozen=True)
class Examination:
    """What the examination found.

    Attributes:
        inspection: The model's facts.
        artifacts: The files to keep, under ``out_dir``.
        trial_top_class: The class index the random input landed on, as evidence the run worked.
    """

    inspection: Inspection
    artifacts: list[ArtifactFile]
    trial_top_class: int


def resolve_format(registry: FormatRegistry, path: Path, options: ImportOptions) -> ModelFormat:
    """Detect the file's format and run its cheap checks; raises InvalidInput with the reason."""
    if not path.is_file() or path.stat().st_size == 0:
        raise InvalidInput("The model file is empty", details={"field": "file"})
    model_format = registry.resolve(path, framework=options.framework)
    model_format.check(path, options)
    return model_format


def examine_isolated(request: ExamineRequest) -> Examination:
    """Run :func:`examine_model` in the sandbox and rebuild its plain-data answer.

    Raises:
        InvalidInput: The file cannot be used; the message says why.
        IsolatedTaskFailed: The examination crashed, or ran out of memory or time.
    """
    plain = run_isolated(
        examine_model,
        request,
        memory_bytes=SANDBOX_MEMORY_BYTES,
        timeout_seconds=SANDBOX_TIMEOUT_SECONDS,
        # Imported before the memory cap, so the cap measures the model's own needs.
        preload_modules=_PRELOADS.get(request.model_format.framework, ()),
        subject=f"the model file {request.path.name!r}",
    )
    artifacts = [ArtifactFile(role, name, Path(path)) for role, name, path in plain["artifacts"]]
    inspection = Inspection.model_validate(plain["inspection"])
    return Examination(inspection, artifacts, int(plain["trialTopClass"]))


def examine_model(request: ExamineRequest) -> dict[str, Any]:
    """Inspect, convert, reload and try the model; runs inside the sandbox.

    Returns:
        Plain data, as the sandbox requires: the inspection, the artifact files as
        ``[role, name, path]`` and the trial's top class.
    """
    model_format = request.model_format
    inspection = model_format.inspect(request.path, request.options)
    request.out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = model_format.prepare(request.path, inspection, request.out_dir)
    predictor = model_format.load(request.out_dir, inspection.spec)
    spec = inspection.spec
    height, width = spec.input.size_px
    trial = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
    probabilities = np.asarray(predictor.predict(trial))
    _check_trial(probabilities, spec.num_classes)
    return {
        "inspection": inspection.model_dump(mode="json"),
        "artifacts": [[a.role, a.name, str(a.path)] for a in artifacts],
        "trialTopClass": int(probabilities[0].argmax()),
    }


def _check_trial(probabilities: np.ndarray, num_classes: int) -> None:
    expected = (1, num_classes)
    if probabilities.shape != expected:
        raise InvalidInput(
            f"A trial inference returned shape {probabilities.shape}, not {expected}"
        )
    if not np.isfinite(probabilities).all() or not np.allclose(probabilities.sum(), 1.0, atol=1e-3):
        raise InvalidInput(
            "A trial inference returned probabilities that are not finite or do not sum to 1"
        )


def file_digest(path: Path) -> tuple[str, int]:
    """The file's SHA-256 and size in bytes."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
