"""TFLite flatbuffers, run by the LiteRT interpreter (``ai-edge-litert``).

A ``.tflite`` file is a flatbuffer with the identifier ``TFL3``: tensors,
operators and weight buffers, no code. Its tensor shapes are the
uploader's word, and the interpreter allocates what they claim, so the
cheap check refuses shapes that overflow or claim more than
:data:`MAX_TENSOR_BYTES`, and everything else (allocation included) runs in
the import's sandbox, where a file that still asks for too much ends the
child and nothing else.

Inputs are NHWC (or NCHW when the shape says so), float or quantised to
8 bits; the feature extractor reads the input of the operator that
produces the logits, the classifier's penultimate embedding.
"""

from __future__ import annotations

import logging
import shutil
import struct
import threading
from dataclasses import dataclass
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
    LayerGroup,
    ModelSpec,
    Predictor,
    Probabilities,
)
from kai.models.formats.class_names import resolve_class_names
from kai.models.formats.preprocessing import images_to_array, looks_like_probabilities, softmax

logger = logging.getLogger(__name__)

ARTIFACT_NAME = "model.tflite"
FILE_IDENTIFIER = b"TFL3"
MAX_TENSOR_BYTES = 1 << 40
_PASS_THROUGH_OPS = frozenset({"SOFTMAX", "RESHAPE", "SQUEEZE", "DEQUANTIZE", "LOGISTIC"})
_INDEX_TYPES = frozenset({2, 4})  # INT32, INT64 in the schema's TensorType
_ELEMENT_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 11: 16}


class TfliteFormat:
    """The TFLite adapter."""

    name = "tflite"
    framework = "tflite"
    suffixes: tuple[str, ...] = (".tflite", ".lite")

    def detect(self, path: Path) -> bool:
        """A flatbuffer whose file identifier is ``TFL3``."""
        with open(path, "rb") as handle:
            head = handle.read(8)
        return len(head) == 8 and head[4:8] == FILE_IDENTIFIER

    def check(self, path: Path, options: ImportOptions) -> None:
        """Parse the flatbuffer and refuse tensors whose shapes claim absurd sizes."""
        del options
        check_tensor_sizes(path)

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        """Open the file in the interpreter and run it once to count its outputs."""
        graph = TfliteGraph(path, options.graph_input, options.graph_output)
        notes: list[str] = []
        input_spec = _input_spec(graph.input_shape, graph.channels_last, options, notes)
        height, width = input_spec.size_px
        trial = np.random.default_rng(0).standard_normal((1, 3, height, width), np.float32)
        values = graph.run(trial)
        num_classes = int(values.shape[1])
        spec = ModelSpec(
            format=self.name,
            num_classes=num_classes,
            input=input_spec,
            class_names=resolve_class_names(options.class_names, num_classes, notes),
            graph_input=graph.input_name,
            graph_output=graph.output_name,
            outputs_probabilities=looks_like_probabilities(values),
        )
        return Inspection(
            spec=spec,
            parameter_count=graph.parameter_count(),
            layer_groups=_layer_groups(graph),
            notes=notes,
            safety_checks=[
                f"tensor shapes checked before allocation (at most {MAX_TENSOR_BYTES} bytes each)",
                "LiteRT interpreter with its built-in operators only, no custom op libraries",
            ],
            details=graph.details(),
        )

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        """Keep the flatbuffer as it is."""
        del inspection
        shutil.copyfile(path, out_dir / ARTIFACT_NAME)
        return [ArtifactFile("weights", ARTIFACT_NAME, out_dir / ARTIFACT_NAME)]

    def load(self, artifact_dir: Path, spec: ModelSpec) -> Predictor:
        """An interpreter over the kept file."""
        graph = TfliteGraph(artifact_dir / ARTIFACT_NAME, spec.graph_input, spec.graph_output)
        return TflitePredictor(graph, spec)


class TflitePredictor:
    """Classifies with a TFLite graph, one image at a time; also gives its embeddings."""

    def __init__(self, graph: TfliteGraph, spec: ModelSpec) -> None:
        self.graph = graph
        self.spec = spec

    def predict(self, batch: Any) -> Probabilities:
        """Class probabilities ``(N, num_classes)`` for PIL images or a prepared NCHW batch."""
        values = self.graph.run(images_to_array(batch, self.spec.input))
        return values if self.spec.outputs_probabilities else softmax(values)

    def extract_features(self, batch: Any) -> Features:
        """The input of the operator that produces the logits, ``(N, num_features)``."""
        return self.graph.run(images_to_array(batch, self.spec.input), features=True)


class TfliteGraph:
    """One TFLite file in the LiteRT interpreter, fed one image per invocation; thread-safe.

    Args:
        path: The ``.tflite`` file.
        input_name: The input tensor to feed; the first when None.
        output_name: The output tensor to read; the first when None.
    """

    def __init__(self, path: Path, input_name: str | None, output_name: str | None) -> None:
        self.path = path
        self.interpreter = _interpreter(path)
        self.input = _pick(self.interpreter.get_input_details(), input_name, "input")
        self.output = _pick(self.interpreter.get_output_details(), output_name, "output")
        self.input_name = str(self.input["name"])
        self.output_name = str(self.output["name"])
        shape = [int(d) for d in self.input["shape"]]
        if len(shape) != 4:
            raise InvalidInput(f"The TFLite input {self.input_name!r} has shape {shape}, not 4-D")
        self.input_shape = shape
        self.channels_last = shape[3] in (1, 3) or shape[1] not in (1, 3)
        self._features_interpreter: Any = None
        self._lock = threading.Lock()

    def run(self, inputs: np.ndarray, *, features: bool = False) -> np.ndarray:
        """Outputs (or features) ``(N, D)`` for a prepared NCHW float batch."""
        with self._lock:
            rows = [self._run_one(image[None], features) for image in inputs]
        return np.concatenate(rows).astype(np.float32, copy=False)

    def parameter_count(self) -> int:
        """Elements of the constant tensors, less the short integer operands (axes, shapes)."""
        weights = [t for t in read_tensors(self.path) if t.constant and not _is_operand(t)]
        return int(sum(int(np.prod(t.shape)) for t in weights))

    def operators(self) -> list[dict[str, Any]]:
        """The graph's operators in execution order, as LiteRT describes them."""
        ops: list[dict[str, Any]] = self.interpreter._get_ops_details()
        return [op for op in ops if op["op_name"] != "DELEGATE"]

    def details(self) -> dict[str, Any]:
        """Inputs, outputs and operator counts, for the version's record."""

        def describe(detail: dict[str, Any]) -> dict[str, Any]:
            return {
                "name": str(detail["name"]),
                "shape": [int(d) for d in detail["shape"]],
                "type": np.dtype(detail["dtype"]).name,
            }

        counts: dict[str, int] = {}
        for op in self.operators():
            counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
        return {
            "inputs": [describe(d) for d in self.interpreter.get_input_details()],
            "outputs": [describe(d) for d in self.interpreter.get_output_details()],
            "operators": counts,
            "dataFormat": "channels_last" if self.channels_last else "channels_first",
        }

    def _run_one(self, image: np.ndarray, features: bool) -> np.ndarray:
        interpreter = self._features() if features else self.interpreter
        feed = image.transpose(0, 2, 3, 1) if self.channels_last else image
        try:
            interpreter.set_tensor(self.input["index"], _quantise(feed, self.input))
            interpreter.invoke()
        except (ValueError, RuntimeError) as exc:
            raise InvalidInput(f"The TFLite graph failed on a {feed.shape} input: {exc}") from exc
        index = self._feature_tensor() if features else self.output["index"]
        detail = next(d for d in interpreter.get_tensor_details() if d["index"] == index)
        values = _dequantise(interpreter.get_tensor(index), detail)
        return values.reshape(1, -1)

    def _features(self) -> Any:
        if self._features_interpreter is None:
            self._features_interpreter = _interpreter(self.path, preserve_all_tensors=True)
        return self._features_interpreter

    def _feature_tensor(self) -> int:
        producers = {int(out): op for op in self.operators() for out in op["outputs"]}
        op = producers.get(int(self.output["index"]))
        while op is not None and op["op_name"] in _PASS_THROUGH_OPS:
            op = producers.get(int(op["inputs"][0]))
        if op is None:
            raise InvalidInput(f"No operator of the TFLite graph produces {self.output_name!r}")
        return int(op["inputs"][0])


def check_tensor_sizes(path: Path) -> None:
    """Refuse a flatbuffer that does not parse, or whose tensors claim absurd sizes.

    Raises:
        CorruptModelFile: The file is not a TFLite flatbuffer with a subgraph.
        UnsafeModelFile: A tensor's shape has a negative size or over ``MAX_TENSOR_BYTES``.
    """
    for tensor in read_tensors(path):
        _check_shape(tensor, path)


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the flatbuffer declares it, read without the interpreter."""

    name: str
    shape: list[int]
    dtype: int
    constant: bool


def read_tensors(path: Path) -> list[TensorEntry]:
    """Every tensor of every subgraph; CorruptModelFile when the flatbuffer does not parse."""
    from ai_edge_litert import schema_py_generated as schema

    data = path.read_bytes()
    try:
        model = schema.Model.GetRootAs(data, 0)
        sizes = [model.Buffers(i).DataLength() for i in range(model.BuffersLength())]
        subgraphs = [model.Subgraphs(i) for i in range(model.SubgraphsLength())]
        tensors = [g.Tensors(i) for g in subgraphs for i in range(g.TensorsLength())]
        entries = [_entry(tensor, sizes) for tensor in tensors]
    except (IndexError, ValueError, TypeError, UnicodeError, struct.error) as exc:
        raise CorruptModelFile(f"The TFLite file {path.name!r} does not parse: {exc}") from exc
    if not subgraphs:
        raise CorruptModelFile(f"The TFLite file {path.name!r} has no subgraph")
    return entries


def _entry(tensor: Any, buffer_sizes: list[int]) -> TensorEntry:
    buffer = int(tensor.Buffer())
    return TensorEntry(
        name=(tensor.Name() or b"").decode(),
        shape=[int(tensor.Shape(i)) for i in range(tensor.ShapeLength())],
        dtype=int(tensor.Type()),
        constant=0 < buffer < len(buffer_sizes) and buffer_sizes[buffer] > 0,
    )


def _is_operand(tensor: TensorEntry) -> bool:
    return tensor.dtype in _INDEX_TYPES and len(tensor.shape) <= 1 and sum(tensor.shape) <= 8


def _check_shape(tensor: TensorEntry, path: Path) -> None:
    name, shape = tensor.name, tensor.shape
    if any(d < 0 for d in shape):
        raise UnsafeModelFile(
            f"Tensor {name!r} of {path.name!r} has the shape {shape}, with a negative size",
            details={"tensor": name, "shape": shape},
        )
    size = _ELEMENT_BYTES.get(tensor.dtype, 8)
    for dim in shape:
        size *= dim
    if size > MAX_TENSOR_BYTES:
        raise UnsafeModelFile(
            f"Tensor {name!r} of {path.name!r} claims {size} bytes (shape {shape}); "
            f"Kai allows at most {MAX_TENSOR_BYTES} bytes per tensor",
            details={"tensor": name, "shape": shape},
        )


def _interpreter(path: Path, *, preserve_all_tensors: bool = False) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as exc:
        raise InvalidInput(
            "TFLite models need the LiteRT interpreter: install Kai's 'ml' extra "
            "(pip install 'kai[ml]')"
        ) from exc
    # Delegates fuse operators, which hides the intermediate tensors features are read from.
    resolver = (
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if preserve_all_tensors
        else OpResolverType.AUTO
    )
    try:
        interpreter = Interpreter(
            model_path=str(path),
            num_threads=1,
            experimental_op_resolver_type=resolver,
            experimental_preserve_all_tensors=preserve_all_tensors,
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise InvalidInput(
            f"The LiteRT interpreter cannot open {path.name!r}: {str(exc)[:300] or 'no reason'}"
            " (a custom or TensorFlow operator, or tensors too large to allocate)"
        ) from exc
    return interpreter


def _pick(details: list[dict[str, Any]], wanted: str | None, what: str) -> dict[str, Any]:
    if wanted is None:
        return details[0]
    for detail in details:
        if detail["name"] == wanted:
            return detail
    names = [str(d["name"]) for d in details]
    raise InvalidInput(
        f"The TFLite graph has no {what} named {wanted!r}; it has {names}",
        details={"field": f"graph{what.title()}", "names": names},
    )


def _quantise(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return values.astype(dtype)
    scale, zero_point = detail["quantization"]
    if not scale:
        raise InvalidInput(
            f"The TFLite input {detail['name']!r} is {dtype.name} without quantisation "
            "parameters; Kai feeds float or quantised inputs"
        )
    info = np.iinfo(dtype)
    quantised = np.round(values / scale + zero_point)
    clipped: np.ndarray = np.clip(quantised, info.min, info.max).astype(dtype)
    return clipped


def _dequantise(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    floats: np.ndarray = values.astype(np.float32)
    if np.dtype(detail["dtype"]).kind != "f" and scale:
        floats = ((floats - zero_point) * scale).astype(np.float32)
    return floats


def _input_spec(
    shape: list[int], channels_last: bool, options: ImportOptions, notes: list[str]
) -> InputSpec:
    height, width = (shape[1], shape[2]) if channels_last else (shape[2], shape[3])
    if options.input_size_px and options.input_size_px != (height, width):
        raise InvalidInput(
            f"The TFLite graph takes {height}x{width} px inputs, not the {options.input_size_px}"
            " given; TFLite graphs have a fixed input size",
            details={"field": "inputSize"},
        )
    if options.mean is None or options.std is None:
        notes.append("No mean and std given; ImageNet's are assumed")
    spec = InputSpec(size_px=(height, width))
    given = {"mean": options.mean, "std": options.std}
    return spec.model_copy(update={k: v for k, v in given.items() if v is not None})


def _layer_groups(graph: TfliteGraph) -> list[LayerGroup]:
    # A TFLite graph is frozen: it serves whole, as a classifier or as a feature extractor.
    modules = [f"{op['index']}:{op['op_name']}" for op in graph.operators()]
    return [LayerGroup(name="graph", modules=modules, parameter_count=graph.parameter_count())]
