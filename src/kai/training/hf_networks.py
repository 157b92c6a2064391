"""A transformers image classifier as a network Kai trains, and its trained folder.

The network is rebuilt from the version's kept folder, laid out and checked
against its blob addresses first. Its class is the one transformers maps the
config's ``model_type`` to (never one the folder names, no ``auto_map``, no
``trust_remote_code``), built from the stored config with ``num_labels``,
``id2label`` and ``label2id`` from the dataset's classes. Its weights load
from the folder's safetensors through transformers' own loader, which knows
the key names its ``save_pretrained`` writes; the head starts afresh unless
the dataset's classes are the model's own, in their order. From scratch the
same config builds the class with new initial weights. Either way its
weights are fp32, whatever precision the folder was saved in.

The trained network is written as ``save_pretrained`` writes a folder
(``model.safetensors`` and ``config.json`` with the new labels) and read back
through the same checked loader as an import, whose weights must equal the
trained ones before the version is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kai.errors import CorruptModelFile
from kai.models.formats import LayerGroup, ModelSpec
from kai.models.formats.hf_classifiers import (
    WEIGHT_NAMES,
    ClassifierLogits,
    classifier_class,
    find_classifier_groups,
    find_head,
    load_classifier,
)
from kai.models.formats.hf_configs import CONFIG_NAME, read_config

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

WEIGHTS_FILE = WEIGHT_NAMES[0]
MODEL_PREFIX = "model."


class TransformersNetwork(ClassifierLogits):
    """A transformers classifier that trains: ``(N, 3, H, W)`` normalised pixels in, logits out.

    Args:
        model: The transformers classifier.
        head: The name of its classification layer.
    """

    model: PreTrainedModel

    def __init__(self, model: PreTrainedModel, head: str) -> None:
        super().__init__(model)
        self.head = head

    @property
    def num_outputs(self) -> int:
        """The classes the head scores."""
        return len(self.model.config.id2label or {})

    def layer_groups(self) -> list[LayerGroup]:
        """The classifier's layer groups in this module's parameter names."""
        return [
            group.model_copy(update={"modules": [MODEL_PREFIX + m for m in group.modules]})
            for group in self.model_groups()
        ]

    def model_groups(self) -> list[LayerGroup]:
        """The classifier's layer groups in its own names, as an import records them."""
        return find_classifier_groups(self.model, self.head)


def create_transformers_network(
    spec: ModelSpec,
    folder: Path,
    *,
    class_names: Sequence[str],
    pretrained: bool = True,
) -> tuple[TransformersNetwork, bool]:
    """The version's classifier with a head for ``class_names``, and whether the head is new.

    Args:
        spec: The transformers version's spec.
        folder: Its kept folder, every file checked against its address.
        class_names: The dataset's classes, in target order.
        pretrained: Keep the version's weights; False draws every weight afresh.

    Raises:
        InvalidInput: The config maps to no transformers image classifier, or
            transformers cannot load the weights.
        UnsafeModelFile: The config ships its own code (``auto_map``).
    """
    stored = read_config(folder / CONFIG_NAME)
    model_class = classifier_class(stored)
    config = model_class.config_class.from_dict(stored, **label_fields(class_names))
    keep = list(class_names) == list(spec.class_names)
    model = load_classifier(folder, config=config) if pretrained else model_class(config)
    # Weights train in fp32 (autocast computes in bf16 where the device has it), whatever
    # precision the folder was saved in.
    model = model.float()
    model.config.dtype = torch.float32
    head = spec.graph_output or find_head(model, None)
    if pretrained and not keep:
        reset_head(model, head)
    return TransformersNetwork(model, head), not keep


def label_fields(class_names: Sequence[str]) -> dict[str, Any]:
    """The config fields that name a head's classes: ``id2label`` and ``label2id``."""
    return {
        "id2label": dict(enumerate(class_names)),
        "label2id": {name: index for index, name in enumerate(class_names)},
    }


def reset_head(model: nn.Module, head: str) -> None:
    """Draw the head's linear layers afresh: a head of the same size but other classes."""
    for module in model.get_submodule(head).modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()


def attach_head(network: TransformersNetwork, head: nn.Module) -> TransformersNetwork:
    """The network with ``head``'s weights in its classification layer, one linear layer.

    Raises:
        TypeError: The network's head is not one linear layer of ``head``'s shape.
    """
    modules = network.model.get_submodule(network.head).modules()
    layers = [module for module in modules if isinstance(module, nn.Linear)]
    if len(layers) != 1 or not isinstance(head, nn.Linear):
        raise TypeError("feature extraction needs a classifier whose head is one linear layer")
    layers[0].load_state_dict(head.state_dict())
    return network


def save_transformers_network(network: TransformersNetwork, folder: Path) -> list[Path]:
    """The trained classifier written as ``save_pretrained`` writes it; its weights, its config.

    The folder is read back through the checked loader an import uses, and its
    weights are compared with the trained ones, so a version Kai could not load
    again as trained is never written.

    Raises:
        CorruptModelFile: The folder reads back with other weights or labels.
    """
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in network.model.state_dict().items()}
    network.model.save_pretrained(folder, state_dict=tensors, safe_serialization=True)
    back = load_classifier(folder)
    _check_read_back(back, tensors, network.model.config.id2label or {})
    return [folder / WEIGHTS_FILE, folder / CONFIG_NAME]


def _check_read_back(
    back: PreTrainedModel, tensors: dict[str, torch.Tensor], labels: dict[Any, str]
) -> None:
    read = back.state_dict()
    differ = sorted(
        name for name, value in tensors.items() if name not in read or not _same(read[name], value)
    )
    if differ or set(read) != set(tensors) or back.config.id2label != labels:
        what = ", ".join(differ[:3]) or "its tensor names or labels"
        raise CorruptModelFile(
            f"The trained transformers model reads back with other values ({what}), so no "
            "version was written; train again, and if it repeats, the installed transformers "
            "does not save this model type faithfully"
        )


def _same(read: torch.Tensor, trained: torch.Tensor) -> bool:
    return read.shape == trained.shape and torch.equal(read.to(trained.dtype), trained)
