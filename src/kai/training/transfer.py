"""Transfer learning: the network built from a model version, its new head, what trains.

The architecture comes from timm or torchvision and the weights from the
version's safetensors artifact through the safe loader. When the dataset's
classes differ from the model's, the head is replaced by a fresh one sized
to the dataset. Freezing works by the version's layer groups (stem, stages,
head): with a frozen base only the last ``trainable_layers_count`` groups
train, and frozen batch-norm layers keep their running statistics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kai.errors import InvalidInput
from kai.models.formats import LayerGroup, ModelSpec, architectures
from kai.security.model_files import load_torch_state_dict
from kai.training.config import OptimizerName, TrainingConfig

logger = logging.getLogger(__name__)

SGD_MOMENTUM = 0.9


@dataclass(frozen=True)
class BaseWeights:
    """The weights file a run starts from.

    Attributes:
        path: Where the safetensors artifact lies on disk.
        sha256: Its recorded address, checked before the file is parsed.
    """

    path: Path
    sha256: str


def create_network(
    spec: ModelSpec,
    weights: BaseWeights | None,
    *,
    class_names: Sequence[str],
) -> tuple[nn.Module, bool]:
    """The version's network with a head for ``class_names``, and whether the head is new.

    Args:
        spec: The model version's spec.
        weights: The weights to start from; None starts from random weights.
        class_names: The dataset's classes, in target order.
    """
    architecture = architectures.resolve_architecture(spec.architecture or "")
    network = architectures.create_classifier(architecture, spec.num_classes)
    if weights is not None:
        tensors = load_torch_state_dict(weights.path, expected_sha256=weights.sha256)
        _load_strict(network, tensors, architecture.name)
    if list(class_names) == list(spec.class_names):
        return network, False
    replace_head(network, len(class_names))
    return network, True


def _load_strict(network: nn.Module, tensors: dict[str, torch.Tensor], name: str) -> None:
    try:
        network.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise InvalidInput(f"The stored weights do not fit {name!r}: {str(exc)[:300]}") from exc


def replace_head(network: nn.Module, num_classes: int) -> None:
    """Give the network a freshly initialised head with ``num_classes`` outputs."""
    reset = getattr(network, "reset_classifier", None)
    if callable(reset):
        reset(num_classes)
        return
    head = architectures.head_name(network)
    module = network.get_submodule(head) if head else None
    if not isinstance(module, nn.Linear) or head is None:
        raise InvalidInput("Cannot find this network's classification head to resize it")
    parent_name, _, child = head.rpartition(".")
    parent = network.get_submodule(parent_name) if parent_name else network
    setattr(parent, child, nn.Linear(module.in_features, num_classes))


def resolve_layer_groups(network: nn.Module, stored: Sequence[LayerGroup]) -> list[LayerGroup]:
    """The version's layer groups, or the network's own when the version records none."""
    if stored:
        return list(stored)
    return architectures.find_layer_groups(network, architectures.head_name(network))


def freeze_base(network: nn.Module, groups: Sequence[LayerGroup], trainable_count: int) -> int:
    """Freeze all but the last ``trainable_count`` groups; returns the parameters that train."""
    trainable = [prefix for group in groups[-trainable_count:] for prefix in group.modules]
    for name, parameter in network.named_parameters():
        parameter.requires_grad = any(_within(name, prefix) for prefix in trainable)
    count = sum(p.numel() for p in network.parameters() if p.requires_grad)
    if count == 0:
        raise InvalidInput("Freezing left no parameter to train; raise trainableLayersCount")
    return count


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def set_train_mode(network: nn.Module) -> None:
    """Training mode, except batch-norm layers whose parameters are all frozen."""
    network.train()
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def create_optimizer(
    network: nn.Module, config: TrainingConfig, head_prefixes: Sequence[str]
) -> torch.optim.Optimizer:
    """The optimizer over trainable parameters: the head in its own group and learning rate."""
    head: list[nn.Parameter] = []
    body: list[nn.Parameter] = []
    for name, parameter in network.named_parameters():
        if parameter.requires_grad:
            is_head = any(_within(name, prefix) for prefix in head_prefixes)
            (head if is_head else body).append(parameter)
    head_rate = config.learning_rate * config.head_learning_rate_multiplier
    groups = [
        {"params": body, "lr": config.learning_rate},
        {"params": head, "lr": head_rate},
    ]
    groups = [group for group in groups if group["params"]]
    if config.optimizer is OptimizerName.SGD:
        return torch.optim.SGD(
            groups, momentum=SGD_MOMENTUM, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)
