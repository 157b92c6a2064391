"""Predictors over PyTorch modules: images in, probabilities (and head-layer features) out."""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn

from kai.models.formats.base import Features, ModelSpec, Probabilities
from kai.models.formats.preprocessing import images_to_array, scores_as_features, softmax


class TorchPredictor:
    """Runs a module in eval mode without gradients; safe to call from several threads.

    Args:
        module: A classifier returning logits (or probabilities, per the spec), or a
            tuple whose first item is those.
        spec: What the module expects and returns.
    """

    def __init__(self, module: nn.Module | torch.jit.ScriptModule, spec: ModelSpec) -> None:
        self.module = module.eval()
        self.spec = spec

    def predict(self, batch: Any) -> Probabilities:
        """Class probabilities ``(N, num_classes)`` for PIL images or a prepared NCHW batch."""
        values = self.scores(batch)
        return values if self.spec.outputs_probabilities else softmax(values)

    def scores(self, batch: Any) -> Probabilities:
        """What the module returns, logits or probabilities per the spec, ``(N, num_classes)``."""
        inputs = torch.from_numpy(images_to_array(batch, self.spec.input))
        with torch.inference_mode():
            outputs = self.module(inputs)
        if isinstance(outputs, tuple | list):
            outputs = outputs[0]
        values: Probabilities = outputs.float().reshape(outputs.shape[0], -1).numpy()
        return values


class TorchScorePredictor(TorchPredictor):
    """A :class:`TorchPredictor` over a module with no reachable embedding (TorchScript).

    Its features are its class scores (see
    :func:`~kai.models.formats.preprocessing.scores_as_features`).
    """

    def extract_features(self, batch: Any) -> Features:
        """The module's scores, ``(N, num_classes)``, as features."""
        return scores_as_features(self.scores(batch), probabilities=self.spec.outputs_probabilities)


class TorchFeaturePredictor(TorchPredictor):
    """A :class:`TorchPredictor` that also reads the input of its classification layer.

    Args:
        module: As for :class:`TorchPredictor`.
        spec: As for :class:`TorchPredictor`.
        head: The name of the classification layer inside ``module``.
    """

    def __init__(self, module: nn.Module, spec: ModelSpec, head: str) -> None:
        super().__init__(module, spec)
        self.head = module.get_submodule(head)
        self._lock = threading.Lock()

    def extract_features(self, batch: Any) -> Features:
        """The head layer's input, flattened to ``(N, num_features)``."""
        inputs = torch.from_numpy(images_to_array(batch, self.spec.input))
        captured: list[torch.Tensor] = []

        def keep(_module: nn.Module, args: tuple[Any, ...]) -> None:
            captured.append(args[0])

        # The hook belongs to one call; the lock keeps concurrent calls' captures apart.
        with self._lock, torch.inference_mode():
            handle = self.head.register_forward_pre_hook(keep)
            try:
                self.module(inputs)
            finally:
                handle.remove()
        features: Features = captured[0].float().flatten(1).numpy()
        return features
