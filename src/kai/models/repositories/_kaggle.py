"""Kaggle Models, and TensorFlow Hub addresses, read through ``kagglehub``.

A model id is a Kaggle model handle, ``OWNER/MODEL/FRAMEWORK/VARIATION`` with
an optional ``/VERSION``, or a ``kaggle.com/models/...`` address. TensorFlow
Hub moved to Kaggle, so a ``tfhub.dev`` address is mapped to the Kaggle
handle it now redirects to. ``kagglehub.model_download`` fills its cache
(``$KAGGLEHUB_CACHE/models/OWNER/MODEL/FRAMEWORK/VARIATION/N``, marked
complete by ``N.complete`` beside it) and answers from it when the version
is there; without a version, and Kaggle unreachable, the newest complete
cached version is read through the same call.

TFLite and Keras models (Kaggle frameworks ``tfLite`` and ``keras``) import
like any other file; TensorFlow Hub's ``lite-model`` addresses map to
``tfLite`` handles. A TensorFlow 2 SavedModel (``tensorFlow2``) is zipped
from the cache into the job's folder, links left out, and imported like an
uploaded SavedModel (the ``tensorflow`` extra). TensorFlow 1 hub modules and
TF.js graphs are refused before any job runs, with the conversions Kai reads.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from kai.errors import InvalidInput, NotFound
from kai.models.formats.base import ImportOptions
from kai.models.formats.tensorflow_graphs import CONVERT_ADVICE
from kai.models.repositories._base import FetchedModel, Repository, fill_options

logger = logging.getLogger(__name__)

TENSORFLOW_FRAMEWORKS = frozenset({"tensorflow1", "tfjs"})
TENSORFLOW_UNSUPPORTED = (
    "TensorFlow 1 hub modules and TF.js graphs are not run by Kai from a repository"
)
SAVED_MODEL_FILE = "saved_model.pb"
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".pt", ".pth", ".bin", ".tflite", ".keras", ".h5")
# The format each Kaggle framework's files are in, where the file alone leaves a doubt.
_FRAMEWORK_FORMATS = {"tflite": "tflite", "keras": "keras", "onnx": "onnx"}
_TENSORFLOW_FILES = ("saved_model.pb", "saved_model.pbtxt", "keras_metadata.pb")
_VERSION_MARKER = re.compile(r"(\d+)\.complete")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


def kaggle_cache_dir() -> Path:
    """The cache ``kagglehub`` downloads into (``KAGGLEHUB_CACHE``, else ~/.cache/kagglehub)."""
    return Path(os.environ.get("KAGGLEHUB_CACHE") or "~/.cache/kagglehub").expanduser()


def resolve_handle(repository: Repository, reference: str) -> str:
    """The Kaggle handle a model id names; TensorFlow handles raise InvalidInput.

    Raises:
        InvalidInput: The id is malformed, or names a TensorFlow model.
    """
    handle = _handle_of(repository, reference.strip())
    parts = handle.split("/")
    if len(parts) not in (4, 5) or not all(_SEGMENT.match(p) for p in parts):
        raise InvalidInput(
            f"{reference!r} is not a Kaggle model handle OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]",
            details={"field": "modelId"},
        )
    if len(parts) == 5 and not parts[4].isdigit():
        raise InvalidInput(
            f"The version in {handle!r} is not a number", details={"field": "modelId"}
        )
    if parts[2].lower() in TENSORFLOW_FRAMEWORKS:
        raise InvalidInput(
            f"{TENSORFLOW_UNSUPPORTED}: {reference!r} is the Kaggle model {handle!r}, whose "
            f"framework is {parts[2]}. Pick its tfLite variation if it has one. {CONVERT_ADVICE}",
            details={"field": "modelId", "handle": handle},
        )
    return handle


def fetch_kaggle(
    repository: Repository,
    reference: str,
    revision: str | None,
    options: ImportOptions,
    *,
    work_dir: Path,
) -> FetchedModel:
    """The model's weights file from Kaggle or the kagglehub cache.

    A SavedModel folder is zipped into ``work_dir``, which is where the returned path
    then lies.

    Raises:
        InvalidInput: The handle is malformed, the files are TensorFlow's, or hold no
            single weights file.
        NotFound: No such model, or not cached and no network.
    """
    handle = resolve_handle(repository, reference)
    if revision and len(handle.split("/")) == 4:
        handle = f"{handle}/{revision}"
    folder = _download(handle)
    version = folder.name
    path = _weights_file(folder, handle, work_dir)
    provenance = {
        "kind": "repository",
        "repository": repository.value,
        "reference": reference,
        "revision": version,
        "kaggleHandle": handle.rsplit("/", 1)[0] if handle.count("/") == 4 else handle,
        "file": str(path.relative_to(folder)) if path.is_relative_to(folder) else path.name,
    }
    framework = _FRAMEWORK_FORMATS.get(handle.split("/")[2].lower())
    if path.suffix == ".onnx":
        framework = "onnx"
    return FetchedModel(
        path=path,
        options=fill_options(options, framework=framework),
        provenance=provenance,
        original_name=path.name,
        notes=[f"Kaggle model {handle!r} resolved to version {version}"],
    )


def _handle_of(repository: Repository, reference: str) -> str:
    if "://" not in reference and not reference.startswith(("tfhub.dev", "www.kaggle", "kaggle")):
        return reference.strip("/")
    address = urlsplit(reference if "://" in reference else f"https://{reference}")
    path = address.path.strip("/")
    host = address.hostname or ""
    if host.endswith("kaggle.com") and path.startswith("models/"):
        return path.removeprefix("models/")
    if host in ("tfhub.dev", "www.tfhub.dev"):
        return _tfhub_handle(path)
    raise InvalidInput(
        f"{reference!r} is neither a Kaggle model handle nor a tfhub.dev or kaggle.com/models "
        f"address ({repository.value})",
        details={"field": "modelId"},
    )


def _tfhub_handle(path: str) -> str:
    """The Kaggle handle of a tfhub.dev path, laid out as TensorFlow Hub's redirects do.

    ``google/imagenet/mobilenet_v2_100_224/classification/5`` becomes
    ``google/mobilenet-v2/tensorFlow2/100-224-classification``: the model's name up to its
    first numeric part, the rest as the variation. Kaggle renumbered the versions, so none is
    kept. ``lite-model`` paths map to the ``tfLite`` framework.
    """
    parts = [p for p in path.split("/") if p]
    if parts and parts[-1].isdigit():
        parts = parts[:-1]
    if len(parts) < 2:
        raise InvalidInput(f"tfhub.dev/{path} names no model", details={"field": "modelId"})
    publisher, rest = parts[0], parts[1:]
    framework = "tfLite" if rest[0] == "lite-model" else "tensorFlow2"
    if rest[0] in ("imagenet", "lite-model") and len(rest) > 1:
        rest = rest[1:]
    model, *kinds = rest
    name = re.sub(r"_\d.*$", "", model)
    variation = [model.removeprefix(name).strip("_"), *kinds]
    slug = "-".join(v for v in variation if v).replace("_", "-") or "default"
    return f"{publisher}/{name.replace('_', '-')}/{framework}/{slug}"


def _download(handle: str) -> Path:
    import kagglehub
    import requests
    from kagglehub.exceptions import KaggleApiHTTPError

    try:
        return Path(kagglehub.model_download(handle))
    except KaggleApiHTTPError as exc:
        raise NotFound(f"Kaggle has no model {handle!r} ({exc})") from exc
    except (requests.RequestException, OSError) as exc:
        cached = None if handle.count("/") == 4 else latest_cached_version(handle)
        if cached is None:
            raise _not_cached(handle, exc) from exc
        logger.warning("Kaggle is unreachable; reading cached version %s of %s", cached, handle)
        return Path(kagglehub.model_download(f"{handle}/{cached}"))


def latest_cached_version(handle: str) -> int | None:
    """The newest version of the model that the cache holds complete, if any."""
    folder = kaggle_cache_dir() / "models" / handle
    if not folder.is_dir():
        return None
    versions = [
        int(match.group(1))
        for entry in folder.iterdir()
        if (match := _VERSION_MARKER.fullmatch(entry.name)) and (folder / match.group(1)).is_dir()
    ]
    return max(versions, default=None)


def _not_cached(handle: str, exc: Exception) -> NotFound:
    cache = kaggle_cache_dir()
    return NotFound(
        f"Kaggle model {handle!r} is not in the kagglehub cache at {cache}, and Kaggle could "
        f"not be reached ({type(exc).__name__}). On a machine with network, run "
        f'"python -c \'import kagglehub; kagglehub.model_download(\\"{handle}\\")\'" with '
        f"KAGGLEHUB_CACHE set to an empty folder, then copy its 'models' folder into {cache} "
        "here (or point KAGGLEHUB_CACHE at it)",
        details={"cache": str(cache), "model": handle},
    )


def _weights_file(folder: Path, handle: str, work_dir: Path) -> Path:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    saved = [p for p in files if p.name == SAVED_MODEL_FILE]
    if len(saved) == 1:
        return _zip_saved_model(saved[0].parent, files, work_dir)
    if any(p.name in _TENSORFLOW_FILES for p in files):
        raise InvalidInput(
            f"{TENSORFLOW_UNSUPPORTED}: Kaggle model {handle!r} holds {len(saved)} SavedModels "
            f"or a TensorFlow 1 module. {CONVERT_ADVICE}"
        )
    weights = [p for p in files if p.suffix in WEIGHT_SUFFIXES]
    if len(weights) != 1:
        names = [str(p.relative_to(folder)) for p in files][:20]
        raise InvalidInput(
            f"Kaggle model {handle!r} should hold one weights file ({', '.join(WEIGHT_SUFFIXES)}),"
            f" not {len(weights)}; its files: {names}"
        )
    return weights[0]


def _zip_saved_model(root: Path, files: list[Path], work_dir: Path) -> Path:
    """The SavedModel folder at ``root`` as a ZIP in ``work_dir``, as a person would upload it.

    Only regular files under ``root`` go in (``files`` already leaves links out); the
    format's own archive checks judge the result like any upload.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    target = work_dir / "saved_model.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for path in files:
            if path.is_relative_to(root):
                archive.write(path, f"saved_model/{path.relative_to(root).as_posix()}")
    logger.info("Zipped a SavedModel from the kagglehub cache", extra={"files": len(files)})
    return target
