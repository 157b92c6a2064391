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
from typing import Any

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
        pooled = tf.identity(tf.reduce_mean(images, axis=[1, 2]), name="features")
        logits = tf.identity(tf.matmul(pooled, self.weight) + self.bias, name="logits")
        return {"logits": logits, "features": pooled}


class PyFuncClassifier(tf.Module):
    @tf.function(input_signature=[pixels])
    def serve(self, images):
        def touch(x):
            open(args["canary"], "w").write("ran")
            return x

        pooled = tf.py_function(touch, [tf.reduce_mean(images, axis=[1, 2])], tf.float32)
        return {"logits": tf.reshape(pooled, [-1, 3])}


class WriteFileClassifier(tf.Module):
    @tf.function(input_signature=[pixels])
    def serve(self, images):
        written = tf.io.write_file(args["canary"], "ran")
        with tf.control_dependencies([written]):
            return {"logits": tf.reduce_mean(images, axis=[1, 2])}


out = args["out"]
classifier = Classifier()
modules = {"classifier": classifier, "pyfunc": PyFuncClassifier(), "custom_op": classifier}
modules["write_file"] = WriteFileClassifier()
for name, module in modules.items():
    signatures = {"serving_default": module.serve}
    tf.saved_model.save(module, f"{out}/{name}", signatures=signatures)

# An operator no library registers, as a graph built against a custom op library has.
from tensorflow.core.protobuf import saved_model_pb2

message = saved_model_pb2.SavedModel()
graph_path = f"{out}/custom_op/saved_model.pb"
message.ParseFromString(open(graph_path, "rb").read())
for function in message.meta_graphs[0].graph_def.library.function:
    for node in function.node_def:
        if node.op == "MatMul":
            node.op = "KaiCustomMatMul"
open(graph_path, "wb").write(message.SerializeToString())

from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

frozen = convert_variables_to_constants_v2(classifier.serve.get_concrete_function())
open(f"{out}/frozen.pb", "wb").write(frozen.graph.as_graph_def().SerializeToString())
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


SAVED_MODELS = ("classifier", "pyfunc", "custom_op", "write_file")


def build_saved_models(out_dir: Path, canary: Path) -> dict[str, Path]:
    """Zipped SavedModels by name, and the classifier frozen as ``frozen`` (a ``.pb`` file).

    ``classifier`` returns ``logits`` and ``features``; ``pyfunc`` and ``write_file``
    would write ``canary`` if they ever ran; ``custom_op`` uses an unregistered operator.
    """
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
    built = {name: zip_folder(out_dir / name, out_dir / f"{name}.zip") for name in SAVED_MODELS}
    return {**built, "frozen": out_dir / "frozen.pb"}


def zip_folder(folder: Path, path: Path) -> Path:
    """The folder zipped under its own name, as a person zips a SavedModel folder."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for source in sorted(folder.rglob("*")):
            if source.is_file():
                archive.write(source, f"{folder.name}/{source.relative_to(folder).as_posix()}")
    return path


def inspect_each(uploads: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Inspect each ``(format, path, options)`` with Kai's adapter; runs in the sandbox.

    Returns:
        Per upload, ``{"error": message}`` or the facts found.
    """
    from kai.errors import KaiError
    from kai.models.formats import ImportOptions, create_format_registry

    registry = create_format_registry(plugins=False)
    answers: list[dict[str, Any]] = []
    for format_name, path, options in uploads:
        try:
            inspection = registry.get(format_name).inspect(Path(path), ImportOptions(**options))
        except KaiError as exc:
            answers.append({"error": exc.message, "code": exc.code})
            continue
        spec = inspection.spec
        answers.append(
            {
                "numClasses": spec.num_classes,
                "parameterCount": inspection.parameter_count,
                "graphInput": spec.graph_input,
                "graphOutput": spec.graph_output,
            }
        )
    return answers
