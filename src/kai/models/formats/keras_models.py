"""Keras models (``.keras`` archives and legacy ``.h5`` files), run by Keras 3 on PyTorch.

Keras rebuilds a model from the JSON config inside the file, so the config
decides what code runs. Before Keras sees a file, Kai reads that config
itself and refuses Lambda layers, objects outside Keras at any depth and any
attempt to turn unsafe deserialisation on (:mod:`kai.security.keras_configs`);
inside the sandbox it also confirms that every object named is a Keras
class. Only then does ``keras.saving.load_model`` run, in safe mode, without
compiling, and without custom objects.

Keras is imported on first use with ``KERAS_BACKEND=torch`` (in the import's
sandboxed child, or in a process that predicts with a Keras version), never
when Kai itself is imported. The kept artifact is the checked file.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kai.errors import CorruptModelFile, InvalidInput, UnsafeModelFile
from kai.models.formats.base import (
    ArtifactFile,
    Features,
    ImportOptions,
    InputSpec,
    Inspection,
    ModelSpec,
    Predictor,
    Probabilities,
)
from kai.models.formats.class_names import resolve_class_names
from kai.models.formats.layer_groups import group_layers
from kai.models.formats.preprocessing import images_to_array, looks_like_probabilities, softmax
from kai.security.keras_configs import KerasObjectRef, check_keras_config

logger = logging.getLogger(__name__)

KERAS_ARCHIVE_NAME = "model.keras"
KERAS_H5_NAME = "model.h5"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MAX_CONFIG_BYTES = 64 * 1024 * 1024
MAX_ARCHIVE_ENTRIES = 10_000
# The namespaces a legacy config's bare class names are looked up in.
_LEGACY_NAMESPACES = (
    "keras.layers",
    "keras.models",
    "keras.initializers",
    "keras.regularizers",
    "keras.constraints",
    "keras.activations",
    "keras.dtype_policies",
    "keras",
)
_LEGACY_MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})


class KerasFormat:
    """The Keras 3 adapter."""

    name = "keras"
    framework = "keras"
    suffixes: tuple[str, ...] = (".keras", ".h5", ".hdf5")

    def detect(self, path: Path) -> bool:
        """A ZIP with Keras's ``config.json`` and ``metadata.json``, or an HDF5 model file."""
        with open(path, "rb") as handle:
            head = handle.read(8)
        if head.startswith(b"PK\x03\x04"):
            names = _archive_names(path)
            return {"config.json", "metadata.json"} <= names
        return head == HDF5_MAGIC and _h5_has_model(path)

    def check(self, path: Path, options: ImportOptions) -> None:
        """Refuse configs with Lambda layers, objects outside Keras or unsafe switches."""
        del options
        check_keras_config(read_model_config(path), subject=_subject(path))

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        """Load the model in safe mode after the config checks, and run it once."""
        model = load_checked(path)
        notes: list[str] = []
        input_spec, channels_last = _input_spec(model, options, notes)
        predictor = KerasPredictor(model, _spec_draft(self.name, input_spec), channels_last)
        height, width = input_spec.size_px
        trial = np.random.default_rng(0).standard_normal((1, 3, height, width), np.float32)
        values = predictor.raw_outputs(trial)
        num_classes = int(values.shape[1])
        head = _head_layer(model, options.head_layer)
        spec = ModelSpec(
            format=self.name,
            architecture=str(model.name),
            num_classes=num_classes,
            input=input_spec,
            class_names=resolve_class_names(options.class_names, num_classes, notes),
            graph_output=head,
            outputs_probabilities=looks_like_probabilities(values),
        )
        return Inspection(
            spec=spec,
            parameter_count=int(model.count_params()),
            layer_groups=group_layers(weighted_layers(model), head),
            notes=notes,
            safety_checks=_SAFETY_CHECKS,
            details=_details(model, path, channels_last),
        )

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        """Keep the checked file under the name of its kind."""
        del inspection
        name = KERAS_H5_NAME if _is_h5(path) else KERAS_ARCHIVE_NAME
        shutil.copyfile(path, out_dir / name)
        return [ArtifactFile("weights", name, out_dir / name)]

    def load(self, artifact_dir: Path, spec: ModelSpec) -> Predictor:
        """The kept model, checked and loaded in safe mode again."""
        path = artifact_dir / KERAS_ARCHIVE_NAME
        if not path.is_file():
            path = artifact_dir / KERAS_H5_NAME
        model = load_checked(path)
        return KerasPredictor(model, spec, takes_channels_last(model))


_SAFETY_CHECKS = [
    "Keras config read by Kai first: no Lambda layers, no objects outside Keras at any "
    "depth, no switch to unsafe deserialization",
    "every object in the config resolved to a built-in Keras class",
    "loaded with keras.saving.load_model in safe mode, uncompiled, without custom objects",
]


class KerasPredictor:
    """Runs a Keras model on the PyTorch backend; also cuts it before the head for features."""

    def __init__(self, model: Any, spec: ModelSpec, channels_last: bool) -> None:
        self.model = model
        self.spec = spec
        self.channels_last = channels_last
        self._features_model: Any = None

    def predict(self, batch: Any) -> Probabilities:
        """Class probabilities ``(N, num_classes)`` for PIL images or a prepared NCHW batch."""
        values = self.raw_outputs(batch)
        return values if self.spec.outputs_probabilities else softmax(values)

    def extract_features(self, batch: Any) -> Features:
        """The input of the head layer, flattened to ``(N, num_features)``."""
        if self._features_model is None:
            self._features_model = _features_model(self.model, self.spec.graph_output)
        return _run(self._features_model, self._inputs(batch)).reshape(len(batch), -1)

    def raw_outputs(self, batch: Any) -> Probabilities:
        """The model's outputs as they are, ``(N, num_classes)``."""
        values = _run(self.model, self._inputs(batch))
        if values.ndim != 2:
            raise InvalidInput(
                f"The Keras model returns shape {values.shape}; a classifier returns "
                "(batch, classes)"
            )
        return values

    def _inputs(self, batch: Any) -> np.ndarray:
        inputs = images_to_array(batch, self.spec.input)
        return inputs.transpose(0, 2, 3, 1) if self.channels_last else inputs


def _import_on_torch() -> Any:
    """Import Keras with the PyTorch backend chosen, leaving the environment as it was.

    Keras reads ``KERAS_BACKEND`` once, at import; processes this one starts (TensorFlow's
    own tools among them) must not inherit the choice.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    previous = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    finally:
        if previous is None:
            os.environ.pop("KERAS_BACKEND", None)
        else:
            os.environ["KERAS_BACKEND"] = previous
    return keras


def import_keras() -> Any:
    """Keras 3, imported on the PyTorch backend; refused when it already runs on another.

    Raises:
        InvalidInput: Keras is missing, or was imported earlier on another backend.
    """
    try:
        keras = _import_on_torch()
    except ImportError as exc:
        raise InvalidInput(
            "Keras models need Keras 3: install Kai's 'ml' extra (pip install 'kai[ml]')"
        ) from exc
    backend = keras.backend.backend()
    if backend != "torch":
        raise InvalidInput(f"Keras runs on the {backend!r} backend here; Kai needs 'torch'")
    return keras


def read_model_config(path: Path) -> Any:
    """The parsed model config of a ``.keras`` archive or an ``.h5`` file.

    Raises:
        CorruptModelFile: The file is damaged or holds no model config.
    """
    raw = _h5_config(path) if _is_h5(path) else _archive_config(path)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptModelFile(f"The model config in {_subject(path)} is not JSON: {exc}") from exc


def load_checked(path: Path) -> Any:
    """The model in the file, after every config check, loaded by Keras in safe mode."""
    refs = check_keras_config(read_model_config(path), subject=_subject(path))
    keras = import_keras()
    for ref in refs:
        _resolve_in_keras(ref, keras, path)
    from keras.src.saving.serialization_lib import SafeModeScope

    try:
        with SafeModeScope(True):
            return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, AttributeError, RuntimeError) as exc:
        raise InvalidInput(f"Keras cannot load {_subject(path)}: {str(exc)[:300]}") from exc


def _resolve_in_keras(ref: KerasObjectRef, keras: Any, path: Path) -> None:
    found = _keras_object(ref, keras)
    if found is None:
        where = f"{ref.module}.{ref.class_name}" if ref.module else ref.class_name
        raise UnsafeModelFile(
            f"{_subject(path)} is refused: {ref.where} names {where!r}, which is no built-in "
            "Keras class",
            details={"where": ref.where, "className": ref.class_name},
        )


def _keras_object(ref: KerasObjectRef, keras: Any) -> Any:
    if ref.class_name == "function":
        module = _keras_module(ref.module or "keras.activations")
        found = getattr(module, ref.function or "", None) if module is not None else None
        return found if callable(found) and not isinstance(found, type) else None
    if ref.module is None:
        if ref.class_name in _LEGACY_MODEL_CLASSES:
            return keras.Model
        modules = (_keras_module(name) for name in _LEGACY_NAMESPACES)
        found = (getattr(m, ref.class_name, None) for m in modules if m is not None)
        return next((f for f in found if isinstance(f, type)), None)
    module = _keras_module(ref.module)
    found = getattr(module, ref.class_name, None) if module is not None else None
    return found if isinstance(found, type) else None


def _keras_module(name: str) -> Any:
    # The config check let only names inside the keras package through.
    if name != "keras" and not name.startswith("keras."):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _run(model: Any, inputs: np.ndarray) -> np.ndarray:
    import torch

    keras = import_keras()
    try:
        with torch.no_grad():
            outputs = model(inputs, training=False)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise InvalidInput(f"The Keras model failed on a {inputs.shape} input: {exc}") from exc
    if isinstance(outputs, list | tuple):
        outputs = outputs[0]
    return np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float32)


def _features_model(model: Any, head: str | None) -> Any:
    keras = import_keras()
    layer = model.get_layer(head) if head else model.layers[-1]
    return keras.Model(inputs=model.input, outputs=layer.input)


def _input_spec(model: Any, options: ImportOptions, notes: list[str]) -> tuple[InputSpec, bool]:
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else ()
    if len(shape) != 4:
        raise InvalidInput(
            f"The Keras model takes input shape {model.input_shape}; Kai reads image "
            "classifiers with one (batch, height, width, channels) input"
        )
    channels_last = shape[-1] in (1, 3) or shape[1] not in (1, 3)
    height, width = (shape[1], shape[2]) if channels_last else (shape[2], shape[3])
    spec = InputSpec()
    size = options.input_size_px or ((height, width) if height and width else None)
    if size is None:
        notes.append(f"The model's input size is dynamic; {spec.size_px[0]} px is assumed")
    if options.mean is None or options.std is None:
        notes.append("No mean and std given; ImageNet's are assumed")
    given = {"size_px": size, "mean": options.mean, "std": options.std}
    updated = spec.model_copy(update={k: v for k, v in given.items() if v is not None})
    return updated, channels_last


def takes_channels_last(model: Any) -> bool:
    """Whether the model's image input is ``(batch, height, width, channels)``."""
    shape = tuple(model.input_shape)
    return len(shape) == 4 and (shape[-1] in (1, 3) or shape[1] not in (1, 3))


def _spec_draft(name: str, input_spec: InputSpec) -> ModelSpec:
    return ModelSpec(format=name, num_classes=1, input=input_spec)


def _head_layer(model: Any, wanted: str | None) -> str:
    names = [str(layer.name) for layer in model.layers]
    if wanted is None:
        weighted = [str(layer.name) for layer in model.layers if layer.count_params() > 0]
        return weighted[-1] if weighted else names[-1]
    if wanted not in names:
        raise InvalidInput(
            f"The Keras model has no layer named {wanted!r}; its last layers are {names[-5:]}",
            details={"field": "headLayer", "names": names[-20:]},
        )
    return wanted


def weighted_layers(model: Any) -> list[tuple[str, int]]:
    """``(path, parameter count)`` of each layer in order, nested models opened.

    A base model nested as one layer (``Sequential([base, pooling, head])``, as
    Keras transfer learning builds it) contributes its own layers under paths
    such as ``base/block1_conv``, so layer groups cut through it too.
    """
    keras = import_keras()
    found: list[tuple[str, int]] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += [(f"{layer.name}/{path}", count) for path, count in weighted_layers(layer)]
        else:
            found.append((str(layer.name), int(layer.count_params())))
    return found


def find_layer(model: Any, path: str) -> Any:
    """The layer at ``path`` (names joined by ``/``, as :func:`weighted_layers` gives them)."""
    layer = model
    for name in path.split("/"):
        layer = layer.get_layer(name)
    return layer


def _details(model: Any, path: Path, channels_last: bool) -> dict[str, Any]:
    return {
        "container": "h5" if _is_h5(path) else "keras",
        "modelClass": type(model).__name__,
        "layers": len(model.layers),
        "inputShape": [d if d is None else int(d) for d in model.input_shape],
        "dataFormat": "channels_last" if channels_last else "channels_first",
    }


def _subject(path: Path) -> str:
    return f"the Keras file {path.name!r}"


def _is_h5(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(8) == HDF5_MAGIC


def _archive_names(path: Path) -> set[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return set()


def _archive_config(path: Path) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ARCHIVE_ENTRIES:
                raise UnsafeModelFile(f"{_subject(path)} has over {MAX_ARCHIVE_ENTRIES} entries")
            info = archive.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise UnsafeModelFile(f"The config in {_subject(path)} is over {MAX_CONFIG_BYTES}")
            return archive.read(info)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as exc:
        raise CorruptModelFile(f"{_subject(path)} is not a readable Keras archive: {exc}") from exc


def _h5_has_model(path: Path) -> bool:
    try:
        return bool(_h5_config(path))
    except CorruptModelFile:
        return False


def _h5_config(path: Path) -> bytes:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
    except (OSError, ValueError) as exc:
        raise CorruptModelFile(f"{_subject(path)} is not a readable HDF5 file: {exc}") from exc
    if raw is None:
        raise CorruptModelFile(
            f"{_subject(path)} holds weights only; save the whole model (model.save('m.keras'))"
        )
    data = raw if isinstance(raw, bytes) else str(raw).encode()
    if len(data) > MAX_CONFIG_BYTES:
        raise UnsafeModelFile(f"The config in {_subject(path)} is over {MAX_CONFIG_BYTES} bytes")
    return data
