"""PyTorch Hub models: pretrained weights of timm and torchvision architectures, by name.

A model id names a library and an architecture: ``torchvision:resnet18``
(weights ``DEFAULT`` unless the revision names others, such as
``IMAGENET1K_V1``) or ``timm:efficientnet_lite0`` (timm's default pretrained
tag unless the name carries one, ``efficientnet_lite0.ra_in1k``). The weights
are read where the libraries' own downloads leave them:

- torchvision, and timm weights published only as a URL:
  ``torch.hub.get_dir()/checkpoints/<file name of the URL>`` (``TORCH_HOME``);
- timm weights published on the Hugging Face Hub: the hub cache, through
  :mod:`kai.models.repositories._huggingface` (timm's layout).

When the checkpoint is not cached it is downloaded with Kai's guarded
downloader into that same folder, its SHA-256 checked against the prefix in
its file name as ``torch.hub`` does. Running a GitHub repository's own
``hubconf.py`` is a different thing: it executes that repository's code, so
it needs an admin's explicit opt-in (:mod:`._hub_code`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from kai.config import Settings
from kai.errors import InvalidInput, KaiError, NotFound
from kai.models.formats.base import ImportOptions
from kai.models.repositories._base import FetchedModel, Repository, fill_options
from kai.models.repositories._huggingface import fetch_huggingface
from kai.security import downloads

logger = logging.getLogger(__name__)

LIBRARIES = ("torchvision", "timm")
_HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")
ARCHITECTURE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


def is_repository_code(reference: str) -> bool:
    """Whether the id names a GitHub repository's ``hubconf.py`` entry (``owner/repo:entry``)."""
    library = reference.partition(":")[0]
    return "/" in library or reference.startswith("github:")


def check_reference(reference: str) -> None:
    """Refuse an id that names no library and architecture, before any job runs."""
    library, _, name = reference.partition(":")
    if library not in LIBRARIES or not ARCHITECTURE_NAME.match(name):
        raise InvalidInput(
            f"PyTorch Hub model id {reference!r} is not LIBRARY:ARCHITECTURE with library one "
            f"of {', '.join(LIBRARIES)}, such as torchvision:resnet18 or timm:efficientnet_lite0",
            details={"field": "modelId"},
        )


def checkpoint_dir() -> Path:
    """Where ``torch.hub`` keeps downloaded weights (``TORCH_HOME/hub/checkpoints``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def fetch_torch_hub(
    reference: str, revision: str | None, options: ImportOptions, *, settings: Settings
) -> FetchedModel:
    """The named architecture's pretrained weights, from the caches the libraries fill.

    Raises:
        InvalidInput: The library or architecture is unknown, or has no such weights.
        NotFound: The weights are in no cache and their host cannot be reached.
    """
    check_reference(reference)
    library, _, name = reference.partition(":")
    if library == "torchvision":
        return _fetch_torchvision(reference, name, revision, options, settings)
    return _fetch_timm(reference, name, options, settings)


def _fetch_torchvision(
    reference: str, name: str, revision: str | None, options: ImportOptions, settings: Settings
) -> FetchedModel:
    import torchvision

    try:
        weights_enum = torchvision.models.get_model_weights(name)
    except ValueError as exc:
        raise InvalidInput(f"torchvision has no architecture {name!r}") from exc
    tag = revision or "DEFAULT"
    try:
        weights = weights_enum.DEFAULT if tag == "DEFAULT" else weights_enum[tag]
    except KeyError as exc:
        known = ", ".join(w.name for w in weights_enum)
        raise InvalidInput(f"torchvision's {name} has no weights {tag!r}; known: {known}") from exc
    path = _checkpoint(weights.url, reference, settings)
    transforms = weights.transforms()
    found = {
        "framework": "pytorch_state_dict",
        "architecture": name,
        "class_names": [str(c) for c in weights.meta.get("categories") or []] or None,
        "input_size_px": (int(transforms.crop_size[0]), int(transforms.crop_size[0])),
        "mean": tuple(float(v) for v in transforms.mean),
        "std": tuple(float(v) for v in transforms.std),
    }
    return _fetched(path, reference, weights.name, options, found)


def _fetch_timm(
    reference: str, name: str, options: ImportOptions, settings: Settings
) -> FetchedModel:
    import timm.models

    try:
        cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except (RuntimeError, ValueError) as exc:
        raise InvalidInput(f"timm has no pretrained weights {name!r}: {exc}") from exc
    url = cfg.url if cfg is not None and isinstance(cfg.url, str) else ""
    if cfg is None or not (cfg.hf_hub_id or url):
        raise InvalidInput(f"timm publishes no pretrained weights for {name!r}")
    architecture = name.partition(".")[0]
    options = fill_options(options, architecture=architecture)
    hub_error: NotFound | None = None
    if cfg.hf_hub_id:
        try:
            fetched = fetch_huggingface(
                cfg.hf_hub_id,
                None,
                options,
                repository=Repository.PYTORCH_HUB,
                reference=reference,
            )
            return fetched
        except NotFound as exc:
            if not url:
                raise
            hub_error = exc
    path = _checkpoint(url, reference, settings, earlier=hub_error)
    return _fetched(path, reference, cfg.tag or "default", options, _timm_facts(cfg))


def _timm_facts(cfg: Any) -> dict[str, Any]:
    from timm.data.imagenet_info import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(cfg)
    size = cfg.input_size
    return {
        "framework": "pytorch_state_dict",
        "class_names": _imagenet_label_names(ImageNetInfo, subset),
        "input_size_px": (int(size[-2]), int(size[-1])),
        "mean": tuple(float(v) for v in cfg.mean),
        "std": tuple(float(v) for v in cfg.std),
    }


def _imagenet_label_names(info: Any, subset: str | None) -> list[str] | None:
    """The class names of an ImageNet subset as timm ships them (WordNet ids), if any."""
    return [str(name) for name in info(subset).label_names()] if subset else None


def _fetched(
    path: Path, reference: str, weights: str, options: ImportOptions, found: dict[str, Any]
) -> FetchedModel:
    provenance = {
        "kind": "repository",
        "repository": Repository.PYTORCH_HUB.value,
        "reference": reference,
        "revision": weights,
        "file": path.name,
    }
    return FetchedModel(
        path=path,
        options=fill_options(options, **found),
        provenance=provenance,
        original_name=path.name,
        notes=[f"Read {reference} weights {weights!r} from {path}"],
    )


def _checkpoint(
    url: str, reference: str, settings: Settings, *, earlier: NotFound | None = None
) -> Path:
    """The cached checkpoint of ``url``, downloaded into the torch hub cache if missing."""
    filename = PurePosixPath(urlsplit(url).path).name
    path = checkpoint_dir() / filename
    if path.is_file():
        return path
    try:
        _download_checkpoint(url, path, settings)
    except KaiError as exc:
        raise _not_cached(reference, url, path, exc, earlier) from exc
    return path


def _download_checkpoint(url: str, path: Path, settings: Settings) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    result = downloads.download(
        url, partial, limits=downloads.DownloadLimits.from_settings(settings)
    )
    match = _HASH_PREFIX.search(path.name)
    if match and not result.sha256.startswith(match.group(1)):
        result.path.unlink(missing_ok=True)
        raise InvalidInput(f"{url} does not match the SHA-256 prefix in its name")
    result.path.replace(path)


def _not_cached(
    reference: str, url: str, path: Path, exc: KaiError, earlier: NotFound | None
) -> NotFound:
    also = f" Nor is it on the Hugging Face Hub here: {earlier.message}." if earlier else ""
    return NotFound(
        f"PyTorch Hub model {reference!r}: its weights are not in the torch hub cache at "
        f"{path.parent} ({path.name}), and {url} could not be fetched ({exc.message}).{also} "
        f"On a machine with network, run \"python -c 'import torch.hub; "
        f'torch.hub.load_state_dict_from_url("{url}")\'" and copy {path.name} from its '
        f"TORCH_HOME/hub/checkpoints into {path.parent} here (or point TORCH_HOME at it)",
        details={"cache": str(path.parent), "file": path.name, "url": url},
    )
