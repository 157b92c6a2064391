"""Transfer learning: the network built from a model version, its new head, what trains.

The architecture comes from timm or torchvision and the weights from the
version's safetensors artifact through the safe loader; an ONNX version's
graph is converted to a network instead (:mod:`kai.models.formats.onnx_networks`),
its body's layers grouped in graph order, and a transformers classifier is
rebuilt from its folder (:mod:`kai.training.hf_networks`), grouped by its
embeddings, encoder blocks and head. When the dataset's classes differ from
the model's, the head is replaced by a fresh one sized to the dataset.
Freezing works by the version's layer groups (stem, stages, head): with a
frozen base only the last ``trainable_layers_count`` groups train, and
frozen batch-norm layers keep their running statistics. Under progressive
unfreezing one more group joins every ``unfreeze_every_epochs`` epochs.
Every layer group is its own optimizer parameter group, so the learning
rate can decay toward the input by ``layer_decay`` per group.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kai.errors import InvalidInput
from kai.models.formats import LayerGroup, ModelSpec, architectures
from kai.models.formats.onnx_networks import GraphClassifier, convert_graph, reset_weights
from kai.security.model_files import load_torch_state_dict
from kai.training.config import OptimizerName, TrainingConfig
from kai.training.hf_networks import TransformersNetwork
from kai.training.schedules import UNFREEZE_EPOCH

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


def create_graph_network(
    spec: ModelSpec,
    path: Path,
    *,
    class_names: Sequence[str],
    pretrained: bool = True,
) -> tuple[nn.Module, bool]:
    """An ONNX graph converted to a network with a head for ``class_names``, and whether the
    head is new.

    Args:
        spec: The ONNX version's spec.
        path: Its graph file, with any external data beside it.
        class_names: The dataset's classes, in target order.
        pretrained: Keep the graph's weights; False draws every layer's weights afresh.

    Raises:
        GraphNotConvertible: The graph does not convert faithfully.
    """
    network = convert_graph(path, spec)
    if not pretrained:
        reset_weights(network)
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
    """The version's layer groups, or the network's own when the version records none.

    A converted graph's groups always come from the network: its module names are the
    converter's, not those a stored version recorded. So do a transformers
    classifier's, whose parameters sit under its wrapper (and whose imports before
    training existed recorded coarser groups).
    """
    if isinstance(network, GraphClassifier | TransformersNetwork):
        return network.layer_groups()
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


def trainable_count_at(config: TrainingConfig, epoch: int, num_groups: int) -> int:
    """How many layer groups train in ``epoch`` (counting from 1); all without a frozen base."""
    if not config.freeze_base_model:
        return num_groups
    count = config.trainable_layers_count
    if config.unfreeze_every_epochs is not None:
        count += (epoch - 1) // config.unfreeze_every_epochs
    return min(count, num_groups)


def unfreeze_epoch(config: TrainingConfig, position_from_head: int) -> int:
    """The first epoch the group at ``position_from_head`` (the head is 1) trains in."""
    base = config.trainable_layers_count
    if not config.freeze_base_model or position_from_head <= base:
        return 1
    if config.unfreeze_every_epochs is None:
        return 1  # It never trains, so its schedule does not matter.
    return (position_from_head - base) * config.unfreeze_every_epochs + 1


def set_train_mode(network: nn.Module, *, freeze_batch_norm: bool = False) -> None:
    """Training mode, except batch-norm layers that are frozen or asked to keep statistics."""
    network.train()
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if freeze_batch_norm or (params and not any(p.requires_grad for p in params)):
                module.eval()


def create_optimizer(
    network: nn.Module, config: TrainingConfig, groups: Sequence[LayerGroup]
) -> torch.optim.Optimizer:
    """The optimizer over every layer group, each with its learning rate and unfreeze epoch.

    Frozen parameters are in it too: they have no gradient, so it leaves them alone
    until progressive unfreezing lets them train.
    """
    param_groups = _parameter_groups(network, config, groups)
    if config.optimizer is OptimizerName.SGD:
        return torch.optim.SGD(
            param_groups, momentum=SGD_MOMENTUM, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(param_groups, weight_decay=config.weight_decay)


def _parameter_groups(
    network: nn.Module, config: TrainingConfig, groups: Sequence[LayerGroup]
) -> list[dict[str, Any]]:
    named = dict(network.named_parameters())
    taken: set[str] = set()
    result: list[dict[str, Any]] = []
    for index, group in enumerate(groups):
        position = len(groups) - index
        names = [n for n in named if n not in taken and _in_group(n, group)]
        taken.update(names)
        result.append(_group(config, [named[n] for n in names], position))
    rest = [parameter for name, parameter in named.items() if name not in taken]
    result.append(_group(config, rest, 2))
    return [group for group in result if group["params"]]


def _in_group(name: str, group: LayerGroup) -> bool:
    return any(_within(name, prefix) for prefix in group.modules)


def _group(config: TrainingConfig, params: list[nn.Parameter], position: int) -> dict[str, Any]:
    if position == 1:
        rate = config.learning_rate * config.head_learning_rate_multiplier
    else:
        rate = config.learning_rate * config.layer_decay ** (position - 2)
    return {"params": params, "lr": rate, UNFREEZE_EPOCH: unfreeze_epoch(config, position)}
