"""Hugging Face Hub models, read through ``huggingface_hub`` and pinned to a commit.

``hf_hub_download`` fetches a file into the hub cache
(``models--ORG--NAME/{blobs,snapshots/COMMIT,refs/REF}``), or, when the hub
cannot be reached or ``HF_HUB_OFFLINE`` is set, returns what an earlier
download left there. The first file fetched fixes the commit; every later
file is asked for at that commit, so one import never mixes two revisions.

Supported layouts:

- timm's (``config.json`` with ``architecture``, ``num_classes``,
  ``label_names`` and ``pretrained_cfg``, beside ``model.safetensors`` or
  ``pytorch_model.bin``), imported as a state dict of that timm architecture;
- transformers image classifiers (``config.json`` with a ``model_type`` that
  transformers maps to an image classification class, ``id2label``, weights
  and an optional ``preprocessor_config.json``). The files of the commit are
  bundled into a ZIP in the job's folder (stored, not compressed) and
  imported by the transformers format. A config with ``auto_map`` (the
  model's own code) is refused: Kai never sets ``trust_remote_code``.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from kai.errors import InvalidInput, NotFound, PermissionDenied, UnsafeModelFile
from kai.models.formats.base import ImportOptions
from kai.models.formats.hf_configs import (
    PREPROCESSOR_NAME,
    model_class_name,
    timm_options,
)
from kai.models.repositories._base import FetchedModel, Repository, fill_options

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
MAX_CONFIG_BYTES = 16 * 1024 * 1024
SUPPORTED_LAYOUTS = (
    "timm (config.json with 'architecture' and 'pretrained_cfg', "
    "and model.safetensors or pytorch_model.bin)",
    "transformers image classifiers (config.json with a 'model_type' transformers "
    "classifies images with, and model.safetensors or pytorch_model.bin)",
)
BUNDLE_NAME = "huggingface-model.zip"
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
    work_dir: Path | None = None,
) -> FetchedModel:
    """The repository's model and the facts its config gives, pinned to one commit.

    Args:
        repo_id: ``ORG/NAME``.
        revision: A branch, tag or commit; ``main`` when None.
        options: The person's import options; they win over the config's.
        repository: The repository named in the provenance.
        reference: The id the person gave, when not ``repo_id`` itself.
        work_dir: Where a transformers model's bundle is written.

    Raises:
        NotFound: No such repository, revision or file, or not cached and no network.
        PermissionDenied: The repository is gated.
        InvalidInput: The repository is not in a supported layout.
    """
    config_path = download_file(repo_id, CONFIG_NAME, revision)
    commit = commit_of(config_path, CONFIG_NAME)
    config = _read_config(config_path, repo_id)
    layout_options = timm_options(config)
    notes = [f"Read timm config.json: architecture {config.get('architecture')!r}"]
    weights = _download_weights(repo_id, commit)
    if layout_options is None:
        layout_options, notes = _transformers_options(config, repo_id)
        weights = _bundle(repo_id, commit, [config_path, weights], work_dir)
    elif layout_options["class_names"] is None:
        notes.append("config.json names no classes (no 'label_names')")
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
        original_name=_original_name(weights, repo_id),
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


def _transformers_options(config: dict[str, Any], repo_id: str) -> tuple[dict[str, Any], list[str]]:
    """Import options for a transformers classifier; InvalidInput for any other layout."""
    if "model_type" not in config:
        raise _unsupported_layout(config, repo_id)
    try:
        model_class = model_class_name(config)
    except UnsafeModelFile as exc:
        raise UnsafeModelFile(f"Hugging Face model {repo_id!r}: {exc.message}") from exc
    except InvalidInput as exc:
        reason = f"a transformers model without an image classifier ({exc.message})"
        raise _unsupported_layout(config, repo_id, reason=reason) from exc
    notes = [f"Read transformers config.json: {model_class} ({config['model_type']!r})"]
    return {"framework": "transformers"}, notes


def _original_name(weights: Path, repo_id: str) -> str:
    if weights.name == BUNDLE_NAME:
        return repo_id.replace("/", "--") + ".zip"
    return weights.name


def _bundle(repo_id: str, commit: str, files: list[Path], work_dir: Path | None) -> Path:
    """The commit's model files in one ZIP, with the preprocessor config when there is one."""
    if work_dir is None:
        raise InvalidInput(f"Hugging Face model {repo_id!r} needs a work folder to bundle into")
    try:
        files.append(download_file(repo_id, PREPROCESSOR_NAME, commit))
    except NotFound:
        logger.info("%s has no %s; defaults apply", repo_id, PREPROCESSOR_NAME)
    work_dir.mkdir(parents=True, exist_ok=True)
    target = work_dir / BUNDLE_NAME
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for path in files:
            archive.write(path, f"model/{path.name}")
    return target


def _unsupported_layout(
    config: dict[str, Any], repo_id: str, *, reason: str | None = None
) -> InvalidInput:
    kind = reason or "in no layout Kai knows"
    return InvalidInput(
        f"Hugging Face model {repo_id!r} is {kind}; supported layouts: "
        f"{'; '.join(SUPPORTED_LAYOUTS)}",
        details={"repository": repo_id, "supportedLayouts": list(SUPPORTED_LAYOUTS)},
    )
