"""Turning images into the input arrays models expect, and logits into probabilities.

The resize follows the usual evaluation recipe for ImageNet-style
classifiers: the shorter side is scaled so that the centre crop covers
``crop_fraction`` of it, then the crop is taken, scaled to 0..1 and
normalised per channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from kai.models.formats.base import InputSpec

FloatArray = NDArray[np.float32]


def images_to_array(images: Any, spec: InputSpec) -> FloatArray:
    """Shape ``(N, 3, H, W)`` float32: PIL images resized, cropped and normalised.

    A tensor or array given instead is taken as already prepared and only converted.
    """
    if not isinstance(images, list | tuple):
        return as_float_array(images)
    arrays = [_image_to_array(image, spec) for image in images]
    return np.stack(arrays).astype(np.float32, copy=False)


def as_float_array(batch: Any) -> FloatArray:
    """A prepared batch (torch tensor or array) as a float32 NumPy array ``(N, C, H, W)``."""
    if hasattr(batch, "detach"):
        batch = batch.detach().cpu().numpy()
    array: FloatArray = np.asarray(batch, dtype=np.float32)
    if array.ndim != 4:
        raise ValueError(f"A prepared batch must be (N, C, H, W), not shape {array.shape}")
    return array


def softmax(logits: NDArray[Any]) -> FloatArray:
    """Row-wise softmax of ``(N, num_classes)`` logits, stable for large values."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: FloatArray = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return result


def apply_temperature(probabilities: NDArray[Any], temperature: float | None) -> FloatArray:
    """Probabilities ``(N, C)`` as the logits divided by ``temperature`` give them.

    ``softmax(logits / T)`` equals the softmax of ``log(p) / T``, since log-probabilities
    differ from the logits by one constant per row; None or 1 changes nothing.
    """
    values: FloatArray = np.asarray(probabilities, dtype=np.float32)
    if temperature is None or temperature == 1.0:
        return values
    return softmax(np.log(np.clip(values, 1e-12, None)) / temperature)


def scores_as_features(values: NDArray[Any], *, probabilities: bool) -> FloatArray:
    """A model's class scores ``(N, num_classes)`` as features for a new head to train on.

    Formats that expose no embedding (TorchScript, TensorFlow graphs, SavedModels
    without an embedding output) still give their scores. Logits are kept as they
    are; probabilities become log-probabilities, which are the logits shifted by
    one constant per image, so the head sees the same geometry either way.
    """
    scores = values.astype(np.float32, copy=False).reshape(len(values), -1)
    if not probabilities:
        return scores
    result: FloatArray = np.log(np.clip(scores, 1e-7, None))
    return result


def looks_like_probabilities(values: NDArray[Any]) -> bool:
    """Whether every row is non-negative and sums to 1, as a softmax output does."""
    if values.ndim != 2 or values.size == 0:
        return False
    sums = values.sum(axis=1)
    return bool((values >= 0).all() and np.allclose(sums, 1.0, atol=1e-3))


def _image_to_array(image: Image.Image, spec: InputSpec) -> FloatArray:
    height, width = spec.size_px
    rgb = image.convert("RGB")
    scale = max(height, width) / spec.crop_fraction / min(rgb.size)
    resized_size = (max(width, round(rgb.width * scale)), max(height, round(rgb.height * scale)))
    resized = rgb.resize(resized_size, Image.Resampling.BICUBIC)
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    crop = resized.crop((left, top, left + width, top + height))
    scaled = np.asarray(crop, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    normalised: FloatArray = ((scaled - mean) / std).astype(np.float32)
    return normalised.transpose(2, 0, 1)
