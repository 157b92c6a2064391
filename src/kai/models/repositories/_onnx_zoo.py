"""The ONNX Model Zoo, read from its Hugging Face home, ``onnx/models``.

A model id is a path in that repository
(``validated/vision/classification/resnet/model/resnet18-v1-7.onnx``) or a
model's file name without ``.onnx`` (``resnet18-v1-7``). A name is looked up
in the repository's file list when the hub answers, else among the cached
snapshots' files. The file then comes through the hub cache like any other
Hugging Face file, pinned to one commit.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath

from kai.errors import InvalidInput, NotFound
from kai.models.formats.base import ImportOptions
from kai.models.repositories._base import FetchedModel, Repository, fill_options
from kai.models.repositories._huggingface import (
    commit_of,
    download_file,
    hub_cache_dir,
    hub_offline,
)

logger = logging.getLogger(__name__)

ZOO_REPOSITORY = "onnx/models"
_PATH = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


def check_reference(reference: str) -> None:
    """Refuse an id that is neither a relative path nor a name, before any job runs."""
    if not _PATH.match(reference) or ".." in PurePosixPath(reference).parts:
        raise InvalidInput(
            f"ONNX Model Zoo id {reference!r} is neither a model name such as resnet18-v1-7 nor "
            "a path in the onnx/models repository",
            details={"field": "modelId"},
        )


def fetch_onnx_zoo(reference: str, revision: str | None, options: ImportOptions) -> FetchedModel:
    """The zoo model's ONNX file from the hub or its cache.

    Raises:
        InvalidInput: The id is malformed.
        NotFound: No such model, or not cached and no network.
    """
    check_reference(reference)
    filename = reference if reference.endswith(".onnx") else _find_path(reference, revision)
    path = download_file(ZOO_REPOSITORY, filename, revision)
    commit = commit_of(path, filename)
    provenance = {
        "kind": "repository",
        "repository": Repository.ONNX_MODEL_ZOO.value,
        "reference": reference,
        "revision": commit,
        "huggingfaceRepository": ZOO_REPOSITORY,
        "file": filename,
    }
    return FetchedModel(
        path=path,
        options=fill_options(options, framework="onnx"),
        provenance=provenance,
        original_name=PurePosixPath(filename).name,
        notes=[f"ONNX Model Zoo {filename!r} from {ZOO_REPOSITORY} at commit {commit}"],
    )


def _find_path(name: str, revision: str | None) -> str:
    wanted = f"{name}.onnx"
    files = _remote_files(revision)
    if files is None:
        files = _cached_files()
    matches = sorted(f for f in files if PurePosixPath(f).name == wanted)
    if not matches:
        raise NotFound(
            f"The ONNX Model Zoo has no model {name!r} (no {wanted} in {ZOO_REPOSITORY}, or the "
            f"hub is unreachable and the Hugging Face cache at {hub_cache_dir()} lacks it); "
            f"on a machine with network, run 'hf download {ZOO_REPOSITORY} --include "
            f'"*/{wanted}"\' and copy the cache here',
            details={"cache": str(hub_cache_dir()), "model": name},
        )
    if len(matches) > 1:
        logger.info("Several zoo files are named %s; taking %s", wanted, matches[0])
    return matches[0]


def _remote_files(revision: str | None) -> list[str] | None:
    if hub_offline():
        return None
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return HfApi().list_repo_files(ZOO_REPOSITORY, revision=revision)
    except (HfHubHTTPError, OSError) as exc:
        logger.warning("The hub did not list %s (%s); searching the cache", ZOO_REPOSITORY, exc)
        return None


def _cached_files() -> list[str]:
    repo_dir = hub_cache_dir() / f"models--{ZOO_REPOSITORY.replace('/', '--')}"
    found: list[str] = []
    for snapshot in sorted((repo_dir / "snapshots").glob("*")):
        found.extend(str(p.relative_to(snapshot)) for p in snapshot.rglob("*.onnx"))
    return [Path(f).as_posix() for f in found]
