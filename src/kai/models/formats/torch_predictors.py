"""A predictor over any PyTorch module: images in, probabilities out."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kai.models.formats.base import ModelSpec, Probabilities
from kai.models.formats.preprocessing import images_to_array, softmax


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
        inputs = torch.from_numpy(images_to_array(batch, self.spec.input))
        with torch.inference_mode():
            outputs = self.module(inputs)
        if isinstance(outputs, tuple | list):
            outputs = outputs[0]
        values: Probabilities = outputs.float().reshape(outputs.shape[0], -1).numpy()
        return values if self.spec.outputs_probabilities else softmax(values)
