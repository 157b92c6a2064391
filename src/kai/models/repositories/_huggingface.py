"""Hugging Face Hub models, read through ``huggingface_hub`` and pinned to a commit.

``hf_hub_download`` fetches a file into the hub cache
(``models--ORG--NAME/{blobs,snapshots/COMMIT,refs/REF}``), or, when the hub
cannot be reached or ``HF_HUB_OFFLINE`` is set, returns what an earlier
download left there. The first file fetched fixes the commit; every later
file is asked for at that commit, so one import never mixes two revisions.

Supported layout: timm's (``config.json`` with ``architecture``,
``num_classes``, ``label_names`` and ``pretrained_cfg``, beside
``model.safetensors`` or ``pytorch_model.bin``), imported as a state dict of
that timm architecture. transformers image classifiers are recognised and
refused with the list of supported layouts.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any

from kai.errors import InvalidInput, NotFound, PermissionDenied
from kai.models.formats.base import ImportOptions
from kai.models.repositories._base import FetchedModel, Repository, fill_options

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
MAX_CONFIG_BYTES = 16 * 1024 * 1024
SUPPORTED_LAYOUTS = (
    "timm (config.json with 'architecture' and 'pretrained_cfg', "
    "and model.safetensors or pytorch_model.bin)"
)
_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


def hub_cache_dir() -> Path:
    """The hub cache the client's own download fills (``HF_HUB_CACHE`` or ``HF_HOME/hub``)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("HF_HOME") or "~/.cache/huggingface").expanduser() / "hub"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the client to reach the hub."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE_VALUES


def fetch_huggingface(
    repo_id: str,
    revision: str | None,
    options: ImportOptions,
    *,
    repository: Repository = Repository.HUGGINGFACE,
    reference: str | None = None,
) -> FetchedModel:
    """The repository's weights and the facts its timm config gives, pinned to one commit.

    Raises:
        NotFound: No such repository, revision or file, or not cached and no network.
        PermissionDenied: The repository is gated.
        InvalidInput: The repository is not in a supported layout.
    """
    config_path = download_file(repo_id, CONFIG_NAME, revision)
    commit = commit_of(config_path, CONFIG_NAME)
    config = _read_config(config_path, repo_id)
    layout_options, notes = _timm_options(config, repo_id)
    weights = _download_weights(repo_id, commit)
    provenance = {
        "kind": "repository",
        "repository": repository.value,
        "reference": reference or repo_id,
        "revision": commit,
        "requestedRevision": revision or "main",
        "huggingfaceRepository": repo_id,
        "file": weights.name,
    }
    return FetchedModel(
        path=weights,
        options=fill_options(options, **layout_options),
        provenance=provenance,
        original_name=weights.name,
        notes=[f"Hugging Face repository {repo_id!r} resolved to commit {commit}", *notes],
    )


def download_file(repo_id: str, filename: str, revision: str | None) -> Path:
    """One file of a model repository from the hub or its cache.

    Raises:
        NotFound: The repository, revision or file does not exist, or it is not cached
            and the hub is unreachable; the message says what to run where.
        PermissionDenied: The repository is gated.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    subject = f"Hugging Face model {repo_id!r}"
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=hub_cache_dir(),
            local_files_only=hub_offline(),
        )
    except GatedRepoError as exc:
        raise PermissionDenied(
            f"{subject} is gated: accept its terms on huggingface.co and set HF_TOKEN for the "
            "workers, or copy a cache made on a machine with access"
        ) from exc
    except RevisionNotFoundError as exc:
        raise NotFound(f"{subject} has no revision {revision!r}") from exc
    except RepositoryNotFoundError as exc:
        raise NotFound(f"There is no {subject} (or it is private)") from exc
    except RemoteEntryNotFoundError as exc:
        raise NotFound(f"{subject} has no file {filename!r}") from exc
    except LocalEntryNotFoundError as exc:
        raise not_cached(repo_id, filename, revision) from exc
    except HFValidationError as exc:
        raise InvalidInput(f"{repo_id!r} is not a Hugging Face repository id: {exc}") from exc
    return Path(path)


def commit_of(path: Path, filename: str) -> str:
    """The commit of the snapshot that holds ``path`` (the file named ``filename`` in it)."""
    return path.parents[len(PurePosixPath(filename).parts) - 1].name


def not_cached(repo_id: str, filename: str, revision: str | None) -> NotFound:
    """The error for a file neither the cache nor the hub could give."""
    cache = hub_cache_dir()
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    wanted = revision or "main"
    command = f"hf download {repo_id} --revision {wanted}"
    return NotFound(
        f"Hugging Face model {repo_id!r} (file {filename!r}, revision {wanted!r}) is not in "
        f"the Hugging Face cache at {cache}, and the hub could not be reached. On a machine "
        f"with network, run '{command}' with HF_HUB_CACHE set to an empty folder, then copy "
        f"that folder's '{repo_dir.name}' into {cache} here (or point HF_HUB_CACHE at it)",
        details={"cache": str(cache), "repository": repo_id, "revision": wanted},
    )


def _download_weights(repo_id: str, commit: str) -> Path:
    missing: NotFound | None = None
    for name in WEIGHT_NAMES:
        try:
            return download_file(repo_id, name, commit)
        except NotFound as exc:
            missing = missing or exc
    assert missing is not None
    raise NotFound(
        f"Hugging Face model {repo_id!r} at commit {commit} has none of {list(WEIGHT_NAMES)}: "
        f"{missing.message}",
        details=missing.details,
    )


def _read_config(path: Path, repo_id: str) -> dict[str, Any]:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidInput(f"The config.json of {repo_id!r} is over {MAX_CONFIG_BYTES} bytes")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"The config.json of {repo_id!r} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidInput(f"The config.json of {repo_id!r} is not a JSON object")
    return config


def _timm_options(config: dict[str, Any], repo_id: str) -> tuple[dict[str, Any], list[str]]:
    """Import options from a timm config; InvalidInput for any other layout."""
    architecture = config.get("architecture")
    pretrained = config.get("pretrained_cfg")
    if not isinstance(architecture, str) or not isinstance(pretrained, dict):
        raise _unsupported_layout(config, repo_id)
    labels = config.get("label_names")
    class_names = [str(n) for n in labels] if isinstance(labels, list) and labels else None
    size = pretrained.get("input_size")
    size_px = (int(size[-2]), int(size[-1])) if isinstance(size, list) and len(size) == 3 else None
    found = {
        "framework": "pytorch_state_dict",
        "architecture": architecture,
        "class_names": class_names,
        "input_size_px": size_px,
        "mean": _triple(pretrained.get("mean")),
        "std": _triple(pretrained.get("std")),
    }
    notes = [f"Read timm config.json: architecture {architecture!r}"]
    if class_names is None:
        notes.append("config.json names no classes (no 'label_names')")
    return found, notes


def _unsupported_layout(config: dict[str, Any], repo_id: str) -> InvalidInput:
    if "id2label" in config or "architectures" in config:
        kind = "a transformers model"
        if "auto_map" in config:
            kind += " with its own code (auto_map)"
    else:
        kind = "in no layout Kai knows"
    return InvalidInput(
        f"Hugging Face model {repo_id!r} is {kind}; supported layouts: {SUPPORTED_LAYOUTS}. "
        "transformers image classifiers are not supported yet",
        details={"repository": repo_id, "supportedLayouts": [SUPPORTED_LAYOUTS]},
    )


def _is_sequence(value: Any, length: int) -> bool:
    return isinstance(value, list | tuple) and len(value) == length


def _triple(value: Any) -> tuple[float, float, float] | None:
    if not _is_sequence(value, 3):
        return None
    return (float(value[0]), float(value[1]), float(value[2]))
