"""Untrained networks by architecture name: a model to train from scratch, with no weights at hand.

A model id names an architecture that timm or torchvision builds, bare
(``resnet18``, timm asked first) or with its library (``timm:resnet18``,
``torchvision:resnet18``). The network is built with fresh weights drawn
from a fixed seed, so the same id gives the same starting point, and saved
as a state dict that the usual pipeline inspects and keeps. The version's
provenance says ``pretrained: false``; training a version that says so
starts from new random weights and refuses what needs learned features
(a frozen base, feature extraction).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kai.errors import InvalidInput
from kai.models.formats.base import ImportOptions
from kai.models.repositories._base import FetchedModel, Repository, fill_options
from kai.models.repositories._torch_hub import ARCHITECTURE_NAME, LIBRARIES

if TYPE_CHECKING:
    from kai.models.formats.architectures import Architecture

FILE_NAME = "untrained.safetensors"
# Weights drawn from this seed, so the same architecture id always starts alike.
WEIGHT_SEED = 0
# Classes of the untrained head when no class names are given; training replaces it.
DEFAULT_NUM_CLASSES = 1000


def check_reference(reference: str) -> tuple[str | None, str]:
    """The library (None when not named) and the architecture name of ``reference``.

    Only the id's shape is checked here, without the libraries: whether the
    architecture exists is known when the import job builds it.

    Raises:
        InvalidInput: The id names another library or is not a name.
    """
    library, _, name = reference.strip().rpartition(":")
    if (library and library not in LIBRARIES) or not ARCHITECTURE_NAME.match(name):
        raise InvalidInput(
            f"Architecture id {reference!r} is not NAME, timm:NAME or torchvision:NAME, "
            "such as resnet18 or timm:efficientnet_lite0",
            details={"field": "modelId"},
        )
    return library or None, name


def fetch_architecture(reference: str, options: ImportOptions, *, work_dir: Path) -> FetchedModel:
    """A state dict of the architecture with fresh weights, saved under ``work_dir``.

    The head has one output per given class name, or the architecture's usual
    count when none are given.

    Raises:
        InvalidInput: No library knows the architecture.
    """
    import safetensors.torch
    import torch

    from kai.models.formats import architectures

    architecture = _resolve(*check_reference(reference))
    num_classes = len(options.class_names) if options.class_names else DEFAULT_NUM_CLASSES
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(WEIGHT_SEED)
        network = architectures.create_classifier(architecture, num_classes)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / FILE_NAME
    metadata = {"architecture": architecture.name, "pretrained": "false"}
    safetensors.torch.save_file(architectures.state_dict_of(network), path, metadata)
    spec = architectures.default_input_spec(network)
    found = fill_options(
        options,
        framework="pytorch_state_dict",
        architecture=architecture.name,
        input_size_px=spec.size_px,
        mean=spec.mean,
        std=spec.std,
    )
    return FetchedModel(
        path=path,
        options=found,
        provenance=_provenance(reference, architecture),
        original_name=f"{architecture.name}.safetensors",
        notes=[
            f"Built {architecture.library.value}'s {architecture.name} with fresh weights "
            f"(seed {WEIGHT_SEED}): it has learned nothing yet, and training starts it from scratch"
        ],
    )


def is_untrained(provenance: Mapping[str, Any]) -> bool:
    """Whether a version's provenance says its weights were never trained."""
    return provenance.get("pretrained") is False


def _resolve(library: str | None, name: str) -> Architecture:
    """The architecture from the named library, or from the first that knows it."""
    from kai.models.formats.architectures import (
        Architecture,
        ArchitectureLibrary,
        resolve_architecture,
    )

    if library == ArchitectureLibrary.TORCHVISION:
        import torchvision

        if name not in torchvision.models.list_models():
            raise InvalidInput(f"torchvision has no architecture {name!r}")
        return Architecture(name, ArchitectureLibrary.TORCHVISION)
    found = resolve_architecture(name)
    if library == ArchitectureLibrary.TIMM and found.library is not ArchitectureLibrary.TIMM:
        raise InvalidInput(
            f"timm has no architecture {name!r}; torchvision has one: torchvision:{name}"
        )
    return found


def _provenance(reference: str, architecture: Architecture) -> dict[str, Any]:
    library = architecture.library.value
    return {
        "kind": "repository",
        "repository": Repository.ARCHITECTURE.value,
        "reference": reference,
        "revision": f"{library} {importlib.metadata.version(library)}",
        "architecture": architecture.name,
        "library": library,
        "pretrained": False,
        "weightSeed": WEIGHT_SEED,
    }
