"""TensorFlow SavedModels for tests, built by TensorFlow in a child process and zipped.

TensorFlow never loads into the test process (which runs PyTorch): the
builder runs ``tf.saved_model.save`` in a fresh interpreter. The classifier
pools a 32-pixel NHWC image over height and width and applies a dense head
whose weights come from :func:`savedmodel_weights`, so tests compute what it
must answer with NumPy alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

SIZE_PX = 32
NUM_CLASSES = 4
BUILD_TIMEOUT_SECONDS = 240

_BUILDER = r"""
import json, sys
import numpy as np
import tensorflow as tf

args = json.loads(sys.argv[1])
weight = np.asarray(args["weight"], np.float32)
bias = np.asarray(args["bias"], np.float32)
pixels = tf.TensorSpec([None, 32, 32, 3], tf.float32, name="pixels")


class Classifier(tf.Module):
    def __init__(self):
        super().__init__()
        self.weight = tf.Variable(weight, name="weight")
        self.bias = tf.Variable(bias, name="bias")

    @tf.function(input_signature=[pixels])
    def serve(self, images):
        pooled = tf.reduce_mean(images, axis=[1, 2])
        return {"logits": tf.matmul(pooled, self.weight) + self.bias, "features": pooled}


class PyFuncClassifier(tf.Module):
    @tf.function(input_signature=[pixels])
    def serve(self, images):
        def touch(x):
            open(args["canary"], "w").write("ran")
            return x

        pooled = tf.py_function(touch, [tf.reduce_mean(images, axis=[1, 2])], tf.float32)
        return {"logits": tf.reshape(pooled, [-1, 3])}


for name, module in (("classifier", Classifier()), ("pyfunc", PyFuncClassifier())):
    signatures = {"serving_default": module.serve}
    tf.saved_model.save(module, f"{args['out']}/{name}", signatures=signatures)
"""


def savedmodel_weights() -> tuple[np.ndarray, np.ndarray]:
    """The head's weight ``(3, NUM_CLASSES)`` and bias ``(NUM_CLASSES,)``."""
    weight = (np.arange(3 * NUM_CLASSES, dtype=np.float32).reshape(3, NUM_CLASSES) - 5) / 4
    bias = np.linspace(-0.5, 0.5, NUM_CLASSES, dtype=np.float32)
    return weight, bias


def savedmodel_reference(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pooled features and logits the classifier computes on an NCHW batch."""
    weight, bias = savedmodel_weights()
    pooled = batch.mean(axis=(2, 3))
    return pooled, pooled @ weight + bias


def build_saved_models(out_dir: Path, canary: Path) -> dict[str, Path]:
    """Zipped SavedModels ``classifier`` and ``pyfunc`` (whose graph would write ``canary``)."""
    weight, bias = savedmodel_weights()
    args = {
        "out": str(out_dir),
        "canary": str(canary),
        "weight": weight.tolist(),
        "bias": bias.tolist(),
    }
    # KERAS_BACKEND=torch (the Keras tests' setting) would load PyTorch beside TensorFlow.
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    completed = subprocess.run(
        [sys.executable, "-c", _BUILDER, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"Building the SavedModels failed (exit status {completed.returncode}):\n"
            f"{completed.stderr[-4000:]}"
        )
    return {
        name: zip_folder(out_dir / name, out_dir / f"{name}.zip")
        for name in ("classifier", "pyfunc")
    }


def zip_folder(folder: Path, path: Path) -> Path:
    """The folder zipped under its own name, as a person zips a SavedModel folder."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for source in sorted(folder.rglob("*")):
            if source.is_file():
                archive.write(source, f"{folder.name}/{source.relative_to(folder).as_posix()}")
    return path
