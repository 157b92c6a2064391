"""A Keras model as a PyTorch module that Kai's training loop fine-tunes.

Under Keras 3's PyTorch backend a Keras model is a ``torch.nn.Module`` whose
variables are ``torch.nn.Parameter`` objects, so a torch optimizer trains
them and a state dict checkpoints them. :class:`KerasNetwork` registers them
by position (``variables.<n>``), not by the paths Keras names them with:
some of those (seed generators) are numbered per process, and a retried
attempt must find its checkpoint's keys. It reads like any network Kai
trains: it takes the loaders' NCHW batches
(normalised with the version's own mean and std, as prediction feeds the
model) and hands them to the model in the layout it was built for, in
Keras's training mode while the module is in PyTorch's.

The model's last Dense layer is replaced by a new Dense layer sized to the
dataset's classes, built over the tensor that fed the old one, so the new
functional model keeps every other layer and weight. The new head gives
logits (no activation), which the loss expects. A model without such a head,
or one whose layers cannot run a training step on the backend, is reported
with the reason, and the job trains it by feature extraction instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kai.models.formats import LayerGroup, architectures
from kai.models.formats.keras_models import find_layer, import_keras, weighted_layers
from kai.models.formats.layer_groups import group_layers

logger = logging.getLogger(__name__)

# Images in the trial step that checks a model can train on the backend.
TRIAL_BATCH = 2
_TRIAL_ERRORS = (RuntimeError, ValueError, TypeError, AttributeError, KeyError)


class KerasNetwork(nn.Module):
    """A Keras classifier as a module: ``(N, 3, H, W)`` normalised images in, logits out.

    Args:
        model: The Keras functional model, ending in the head that trains.
        channels_last: The model takes ``(N, H, W, C)`` input.
        freeze_batch_norm: Run every batch-norm layer as Keras runs a frozen one:
            inference statistics and no trained scale or offset.
    """

    model: Any

    def __init__(self, model: Any, *, channels_last: bool, freeze_batch_norm: bool = False):
        super().__init__()
        # Kept outside the module tree, so each variable is registered once, below.
        self.__dict__["model"] = model
        self.channels_last = channels_last
        self.freeze_batch_norm = freeze_batch_norm
        values = [variable.value for variable in model.variables]
        if not all(isinstance(value, nn.Parameter) for value in values):
            raise TypeError("Keras must run on the PyTorch backend to train here")
        self.variables = nn.ParameterList(values)
        self._batch_norms = _batch_norm_layers(model)
        self._saved_trainable = [layer.trainable for layer in self._batch_norms]

    @property
    def head_name(self) -> str:
        """The name of the head layer, the model's last."""
        return str(self.model.layers[-1].name)

    @property
    def num_outputs(self) -> int:
        """The classes the head scores."""
        return int(self.model.output_shape[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` for normalised images ``(N, 3, H, W)``."""
        inputs = images.permute(0, 2, 3, 1) if self.channels_last else images
        logits: torch.Tensor = self.model(inputs, training=self.training)
        return logits

    def train(self, mode: bool = True) -> KerasNetwork:
        """PyTorch's mode, with frozen batch-norm layers kept on their statistics.

        Keras runs a batch-norm layer in inference mode when the layer is not
        trainable, so a layer whose scale and offset are frozen (or every layer
        under ``freeze_batch_norm``) is marked so before a training pass.
        """
        super().train(mode)
        if mode:
            for layer in self._batch_norms:
                layer.trainable = not self.freeze_batch_norm and _trains(layer)
        return self

    def restore_trainable(self) -> None:
        """Put back the batch-norm layers' own ``trainable`` flags, as the file had them."""
        for layer, trainable in zip(self._batch_norms, self._saved_trainable, strict=True):
            layer.trainable = trainable


def _batch_norm_layers(model: Any) -> list[Any]:
    keras = import_keras()
    found = []
    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        stack.extend(getattr(layer, "layers", []))
    return found


def _trains(layer: Any) -> bool:
    weights = [getattr(layer, name, None) for name in ("gamma", "beta")]
    values = [weight.value for weight in weights if weight is not None]
    return bool(values) and any(value.requires_grad for value in values)


def find_head_problem(model: Any, head: str | None) -> str | None:
    """Why the model's head cannot be replaced by a new Dense layer; None when it can.

    Args:
        model: The loaded Keras model.
        head: The head layer's name recorded at import; the last layer with weights when None.
    """
    keras = import_keras()
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return "it does not have exactly one input and one output"
    layer = _head(model, head)
    if not isinstance(layer, keras.layers.Dense):
        kind = type(layer).__name__ if layer is not None else "no layer"
        return f"its last layer with weights is {kind}, not a Dense classifier to replace"
    after = model.layers[model.layers.index(layer) + 1 :]
    if any(other.count_params() > 0 for other in after):
        return f"layers with weights follow its Dense layer {layer.name!r}"
    try:
        rank = len(layer.input.shape)
    except (AttributeError, ValueError) as exc:
        return f"its Dense layer {layer.name!r} is called more than once ({exc})"
    if rank != 2:
        return f"its Dense layer {layer.name!r} takes a rank-{rank} tensor, not (batch, features)"
    return None


def _head(model: Any, head: str | None) -> Any:
    names = {str(layer.name) for layer in model.layers}
    if head is not None and head in names:
        return model.get_layer(head)
    weighted = [layer for layer in model.layers if layer.count_params() > 0]
    return weighted[-1] if weighted else None


def replace_head(model: Any, head: str | None, class_names: Sequence[str], keep: bool) -> Any:
    """A functional model with a new Dense head of ``len(class_names)`` logits.

    The new head is built over the tensor the old head took, under the old head's
    name; layers without weights after it (a softmax) are dropped. With ``keep``
    (the dataset's classes are the model's own) it starts from the old weights.
    """
    keras = import_keras()
    old = _head(model, head)
    new = keras.layers.Dense(len(class_names), name=old.name, use_bias=old.use_bias)
    outputs = new(old.input)
    if keep:
        new.set_weights(old.get_weights())
    return keras.Model(model.input, outputs, name=model.name)


def keras_layer_groups(model: Any, head: str) -> list[LayerGroup]:
    """The model's layer groups in Keras layer paths (nested models opened), as imports record."""
    return group_layers(weighted_layers(model), head)


def parameter_groups(network: KerasNetwork, groups: Sequence[LayerGroup]) -> list[LayerGroup]:
    """The layer groups in the wrapper's parameter names, as freezing and the optimizer read them.

    Only trainable variables join a group: batch-norm statistics and seed states
    stay outside every group, so freezing never asks for their gradients.
    """
    names = {id(parameter): name for name, parameter in network.named_parameters()}
    result = []
    for group in groups:
        layers = [find_layer(network.model, path) for path in group.modules]
        values = [variable.value for layer in layers for variable in layer.trainable_weights]
        members = [names[id(value)] for value in values if id(value) in names]
        result.append(group.model_copy(update={"modules": members}))
    return result


def find_backend_problem(network: KerasNetwork, size_px: tuple[int, int]) -> str | None:
    """Why one training step fails on the PyTorch backend; None when it runs.

    The step runs on zeros in training mode and its effects (gradients, batch-norm
    statistics) are undone, so the network is left as it was.
    """
    saved = architectures.state_dict_of(network)
    images = torch.zeros((TRIAL_BATCH, 3, *size_px))
    try:
        network.train()
        logits = network(images)
        logits.float().sum().backward()
    except torch.OutOfMemoryError:
        raise  # Not the backend's limit: the run's own advice applies.
    except _TRIAL_ERRORS as exc:
        return f"a training step fails on the PyTorch backend: {str(exc)[:300]}"
    finally:
        network.zero_grad(set_to_none=True)
        network.load_state_dict(saved)
    if logits.ndim != 2:
        return f"it returns shape {tuple(logits.shape)} in training, not (batch, classes)"
    return None
