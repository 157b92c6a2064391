"""Classifier architectures by name from timm or torchvision, and what Kai reads off them.

An architecture is always built without pretrained weights: the weights come
from the uploaded state dict. timm is asked first, then torchvision. The
classification head's name, the default input spec and the layer groups
(stem, stages, head) come from the model itself.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import timm
import torch
import torchvision
from torch import nn

from kai.errors import InvalidInput
from kai.models.formats.base import IMAGENET_MEAN, IMAGENET_STD, InputSpec, LayerGroup

logger = logging.getLogger(__name__)

_SUGGESTIONS = 5


class ArchitectureLibrary(StrEnum):
    """Which library builds an architecture."""

    TIMM = "timm"
    TORCHVISION = "torchvision"


@dataclass(frozen=True)
class Architecture:
    """A resolved architecture name.

    Attributes:
        name: The name as the library knows it.
        library: ``timm`` or ``torchvision``.
    """

    name: str
    library: ArchitectureLibrary


def resolve_architecture(name: str) -> Architecture:
    """The library that knows ``name``.

    Raises:
        InvalidInput: Neither timm nor torchvision knows it; the message suggests close names.
    """
    cleaned = name.strip()
    if not cleaned:
        raise InvalidInput(
            "A state dict holds weights only: name its architecture, such as resnet18 or "
            "efficientnet_lite0",
            details={"field": "architecture"},
        )
    if timm.is_model(cleaned):
        return Architecture(cleaned, ArchitectureLibrary.TIMM)
    if cleaned in torchvision.models.list_models():
        return Architecture(cleaned, ArchitectureLibrary.TORCHVISION)
    known = list(dict.fromkeys([*timm.list_models(), *torchvision.models.list_models()]))
    close = difflib.get_close_matches(cleaned, known, n=_SUGGESTIONS)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise InvalidInput(
        f"Architecture {cleaned!r} is known to neither timm nor torchvision{hint}",
        details={"field": "architecture", "suggestions": close},
    )


def create_classifier(architecture: Architecture, num_classes: int) -> nn.Module:
    """The architecture with a head of ``num_classes`` outputs and random weights, in eval mode."""
    if architecture.library == ArchitectureLibrary.TIMM:
        model: nn.Module = timm.create_model(
            architecture.name, pretrained=False, num_classes=num_classes
        )
    else:
        model = torchvision.models.get_model(
            architecture.name, weights=None, num_classes=num_classes
        )
    return model.eval()


def head_name(model: nn.Module) -> str | None:
    """The classification layer's module name, such as ``classifier`` or ``fc``."""
    config = getattr(model, "pretrained_cfg", None) or {}
    classifier = config.get("classifier")
    if isinstance(classifier, str):
        return classifier
    last_linear = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_linear = name
    return last_linear


def default_input_spec(model: nn.Module) -> InputSpec:
    """The input spec the architecture was designed with, ImageNet's when it says nothing."""
    config = getattr(model, "pretrained_cfg", None) or {}
    size = config.get("input_size", (3, 224, 224))
    mean = tuple(config.get("mean", IMAGENET_MEAN))
    std = tuple(config.get("std", IMAGENET_STD))
    crop = float(config.get("crop_pct", 0.875))
    return InputSpec(
        size_px=(int(size[1]), int(size[2])),
        mean=_triple(mean, IMAGENET_MEAN),
        std=_triple(std, IMAGENET_STD),
        crop_fraction=crop,
    )


def count_parameters(model: nn.Module) -> int:
    """Parameters in the model, each shared tensor counted once."""
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return total


def find_layer_groups(model: nn.Module, head: str | None) -> list[LayerGroup]:
    """Layer groups from the input side to the head, as training freezes them.

    timm models say how their parameters group (stem, one group per stage);
    other models group by their top-level children. The head is always last.
    """
    names = [name for name, _ in model.named_parameters()]
    matcher = getattr(model, "group_matcher", None)
    grouped = _timm_groups(model, matcher(coarse=True)) if callable(matcher) else None
    if grouped is None:
        grouped = _children_groups(names)
    return _with_head_last(model, grouped, head)


def _timm_groups(model: nn.Module, matcher: Any) -> OrderedDict[str, list[str]] | None:
    try:
        groups = timm.models.group_parameters(model, matcher)
    except (TypeError, ValueError, re.error) as exc:
        logger.debug("timm could not group the parameters: %s", exc)
        return None
    named: OrderedDict[str, list[str]] = OrderedDict()
    for position, (_, members) in enumerate(sorted(groups.items())):
        named["stem" if position == 0 else f"stage{position}"] = list(members)
    return named


def _children_groups(names: list[str]) -> OrderedDict[str, list[str]]:
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for name in names:
        groups.setdefault(name.split(".", 1)[0], []).append(name)
    return groups


def _with_head_last(
    model: nn.Module, groups: OrderedDict[str, list[str]], head: str | None
) -> list[LayerGroup]:
    sizes = {name: parameter.numel() for name, parameter in model.named_parameters()}
    head_members: list[str] = []
    result: list[LayerGroup] = []
    for name, members in groups.items():
        body = [m for m in members if not head or not _within(m, head)]
        head_members += [m for m in members if head and _within(m, head)]
        if body:
            result.append(_group(name, body, sizes))
    if head_members:
        result.append(_group("head", head_members, sizes))
    return result


def _group(name: str, members: list[str], sizes: dict[str, int]) -> LayerGroup:
    modules = list(dict.fromkeys(_module_prefix(member) for member in members))
    return LayerGroup(name=name, modules=modules, parameter_count=sum(sizes[m] for m in members))


def _module_prefix(parameter_name: str) -> str:
    parts = parameter_name.split(".")[:-1]
    # Two levels name a stage's block (``blocks.3``) without listing every layer in it.
    return ".".join(parts[:2]) if parts else parameter_name


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _triple(
    values: tuple[Any, ...], default: tuple[float, float, float]
) -> tuple[float, float, float]:
    if len(values) != 3:
        return default
    return (float(values[0]), float(values[1]), float(values[2]))


def state_dict_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as plain contiguous tensors, none sharing storage."""
    return {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}
