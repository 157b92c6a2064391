"""Judging a repository import before its job runs, and fetching its file inside the job."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from kai.config import Settings
from kai.errors import InvalidInput, PermissionDenied
from kai.models.formats.base import ImportOptions
from kai.models.repositories import _architectures, _bundled, _kaggle, _onnx_zoo, _torch_hub
from kai.models.repositories._base import FetchedModel, Repository
from kai.models.repositories._hub_code import fetch_hub_code, parse_hub_reference
from kai.models.repositories._huggingface import fetch_huggingface

logger = logging.getLogger(__name__)

MAX_REFERENCE_LENGTH = 1000
_HF_ID_PARTS = 2


def parse_repository(name: str) -> Repository:
    """The repository ``name`` names; InvalidInput listing the valid ones otherwise."""
    cleaned = name.strip().lower()
    try:
        return Repository(cleaned)
    except ValueError as exc:
        valid = ", ".join(r.value for r in Repository)
        raise InvalidInput(
            f"Unknown model repository {name!r}; use one of: {valid}",
            details={"field": "repository", "valid": [r.value for r in Repository]},
        ) from exc


def check_repository_request(
    repository: Repository,
    reference: str,
    *,
    trust_repository_code: bool = False,
    is_admin: bool = False,
) -> None:
    """Refuse what can be refused without the network: bad ids, TensorFlow, repository code.

    Raises:
        InvalidInput: The id is malformed or names an unsupported format, or it needs
            repository code without the opt-in.
        PermissionDenied: The opt-in to run repository code came from someone not an admin.
    """
    if trust_repository_code and not is_admin:
        raise PermissionDenied(
            "Only an admin may allow an import to run a repository's own code "
            "(trustRepositoryCode)",
            details={"field": "trustRepositoryCode"},
        )
    if not reference or len(reference) > MAX_REFERENCE_LENGTH:
        raise InvalidInput(
            f"modelId must have 1 to {MAX_REFERENCE_LENGTH} characters",
            details={"field": "modelId"},
        )
    if repository is Repository.PYTORCH_HUB and _torch_hub.is_repository_code(reference):
        if not trust_repository_code:
            raise _repository_code_refused(reference)
        parse_hub_reference(reference)
        return
    _check_reference(repository, reference)


def fetch_repository_model(
    repository: Repository,
    reference: str,
    revision: str | None,
    options: ImportOptions,
    *,
    settings: Settings,
    work_dir: Path | None = None,
    trust_repository_code: bool = False,
) -> FetchedModel:
    """The model's file, from the repository's client and its cache; runs inside the job.

    ``work_dir`` is where files that need making (a transformers model's bundle, a hub
    model traced to TorchScript) are written; a folder under the settings' work dir when
    None. ``trust_repository_code`` is an admin's opt-in to run a hub repository's code.

    Raises:
        InvalidInput: The id is malformed, or the files are in no supported layout or format.
        NotFound: The model is in no cache and the repository cannot be reached; the message
            names the cache and what to run on a connected machine.
        PermissionDenied: The repository is gated.
    """
    scratch = work_dir or settings.work_dir / "repository-files" / secrets.token_hex(8)
    if repository is Repository.PYTORCH_HUB and _torch_hub.is_repository_code(reference):
        if not trust_repository_code:
            raise _repository_code_refused(reference)
        return fetch_hub_code(reference, revision, options, work_dir=scratch)
    _check_reference(repository, reference)
    if repository is Repository.BUNDLED:
        return _bundled.fetch_bundled(reference, options)
    if repository is Repository.ARCHITECTURE:
        return _architectures.fetch_architecture(reference, options, work_dir=scratch)
    if repository is Repository.HUGGINGFACE:
        return fetch_huggingface(reference, revision, options, work_dir=scratch)
    if repository is Repository.PYTORCH_HUB:
        return _torch_hub.fetch_torch_hub(reference, revision, options, settings=settings)
    if repository is Repository.ONNX_MODEL_ZOO:
        return _onnx_zoo.fetch_onnx_zoo(reference, revision, options)
    if repository in (Repository.KAGGLE, Repository.TENSORFLOW_HUB):
        return _kaggle.fetch_kaggle(repository, reference, revision, options, work_dir=scratch)
    raise InvalidInput(f"The {repository.value} repository is imported as a URL import")


def _check_reference(repository: Repository, reference: str) -> None:
    if repository is Repository.BUNDLED:
        _bundled.check_reference(reference)
    elif repository is Repository.ARCHITECTURE:
        _architectures.check_reference(reference)
    elif repository is Repository.HUGGINGFACE:
        parts = reference.split("/")
        if len(parts) != _HF_ID_PARTS or not all(parts):
            raise InvalidInput(
                f"Hugging Face model id {reference!r} is not ORG/NAME",
                details={"field": "modelId"},
            )
    elif repository is Repository.PYTORCH_HUB:
        _torch_hub.check_reference(reference)
    elif repository is Repository.ONNX_MODEL_ZOO:
        _onnx_zoo.check_reference(reference)
    elif repository in (Repository.KAGGLE, Repository.TENSORFLOW_HUB):
        _kaggle.resolve_handle(repository, reference)


def _repository_code_refused(reference: str) -> InvalidInput:
    return InvalidInput(
        f"PyTorch Hub model {reference!r} is loaded by running its repository's own code "
        "(hubconf.py); only an admin can allow that, with trustRepositoryCode=true. Weights "
        "of a timm or torchvision architecture need no code: timm:NAME or torchvision:NAME",
        details={"field": "trustRepositoryCode"},
    )
