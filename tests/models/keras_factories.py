"""Keras models for tests: tiny real ones saved as ``.keras`` and ``.h5``, and hostile ones.

Keras is imported here on the PyTorch backend the way Kai imports it, which
leaves ``KERAS_BACKEND`` unset for other tests and the processes they start.
Each hostile file would create a canary file if Keras ran what it carries.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kai.models.formats.keras_models import import_keras

keras = import_keras()

SIZE_PX = 32


def tiny_keras_model(num_classes: int = 3, *, softmax: bool = False, seed: int = 0) -> Any:
    """A convolution, pooling and a dense head over 32-pixel RGB images."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE_PX, SIZE_PX, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax" if softmax else None, name="head"
    )(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


def nested_keras_model(num_classes: int = 2) -> Any:
    """A Sequential inside a Functional model, with a wrapper layer: every depth Kai walks."""
    inner = keras.Sequential(
        [keras.Input((SIZE_PX, SIZE_PX, 3)), keras.layers.Conv2D(2, 3, name="inner_conv")],
        name="inner",
    )
    inputs = keras.Input((SIZE_PX, SIZE_PX, 3))
    x = keras.layers.GlobalAveragePooling2D()(inner(inputs))
    outputs = keras.layers.Dense(num_classes, name="head")(x)
    return keras.Model(inputs, outputs, name="nested")


def save_keras(model: Any, path: Path) -> Path:
    model.save(str(path))
    return path


def save_h5(model: Any, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(path))
    return path


def keras_outputs(model: Any, batch: np.ndarray) -> np.ndarray:
    """The model's outputs on an NCHW batch, as Kai feeds it (NHWC)."""
    return np.asarray(keras.ops.convert_to_numpy(model(batch.transpose(0, 2, 3, 1))))


def save_lambda_model(path: Path, canary: Path) -> Path:
    """A model whose Lambda layer creates the canary when it runs, its path a code constant."""
    touch = eval(f"lambda tensor: (open({str(canary)!r}, 'w').close(), tensor)[1]")
    model = keras.Sequential(
        [
            keras.Input((SIZE_PX, SIZE_PX, 3)),
            keras.layers.Lambda(touch, name="payload"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    canary.unlink(missing_ok=True)  # Building the model ran the layer once.
    return save_keras(model, path)


def rewrite_config(source: Path, path: Path, change: Any) -> Path:
    """A copy of a ``.keras`` archive whose config.json ``change(config)`` has edited."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(entries["config.json"])
    change(config)
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def foreign_object(module: str, class_name: str, config: Any) -> dict[str, Any]:
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


def head_config(config: dict[str, Any]) -> dict[str, Any]:
    """The Dense head layer's config inside a saved tiny model's config."""
    layers = config["config"]["layers"]
    head: dict[str, Any] = next(layer for layer in layers if layer["class_name"] == "Dense")
    return head["config"]
