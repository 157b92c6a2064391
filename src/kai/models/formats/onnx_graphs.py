"""ONNX graphs, run with ONNX Runtime: a ``.onnx`` file, or a ZIP of one with its external data.

A graph over 2 GB keeps its tensors in external data files named by
``location`` entries inside the graph. Those names come from the uploader,
so every one must be a plain relative path to a regular file inside the
upload: absolute paths, ``..`` parts, links and missing files are refused
before ONNX Runtime opens anything. A ZIP bundle is unpacked with the same
checks as a dataset archive.

Inspection also tries the graph as a PyTorch network
(:mod:`kai.models.formats.onnx_networks`) and records the verdict as
``torchConversion`` in its details, with the network's layer groups when it
converts, so a training request is judged without opening the graph again.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import onnx
import onnxruntime
from google.protobuf.message import DecodeError

from kai.errors import InvalidInput
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
from kai.models.formats.bundles import unpacked_bundle
from kai.models.formats.class_names import resolve_class_names
from kai.models.formats.preprocessing import (
    images_to_array,
    looks_like_probabilities,
    scores_as_features,
    softmax,
)

logger = logging.getLogger(__name__)

MODEL_NAME = "model.onnx"
FEATURES_MODEL_NAME = "features.onnx"
_PASS_THROUGH_OPS = frozenset({"Softmax", "Identity", "Reshape", "Flatten", "Squeeze"})
_CLASS_NAME_KEYS = ("class_names", "classes", "labels")


class OnnxFormat:
    """The ONNX adapter."""

    name = "onnx"
    framework = "onnx"
    suffixes: tuple[str, ...] = (".onnx", ".zip")

    def detect(self, path: Path) -> bool:
        """A protobuf whose first field is the IR version, or a ZIP holding one ``.onnx``."""
        with open(path, "rb") as handle:
            head = handle.read(4)
        if head.startswith(b"PK\x03\x04"):
            return len(_onnx_entries(path)) == 1
        return head[:1] == b"\x08" and _parses(path)

    def check(self, path: Path, options: ImportOptions) -> None:
        """Unpack a bundle, parse the graph and check its external data locations."""
        del options
        model_path = model_file(path)
        check_external_data(read_graph(model_path), model_path.parent)

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        """Open the graph in ONNX Runtime and run it once to count its outputs."""
        model_path = model_file(path)
        graph = read_graph(model_path)
        check_external_data(graph, model_path.parent)
        session = open_session(model_path)
        feed = _pick(session.get_inputs(), options.graph_input, "input")
        fetch = _pick(session.get_outputs(), options.graph_output, "output")
        notes: list[str] = []
        input_spec = _input_spec(feed.shape, options, notes)
        height, width = input_spec.size_px
        trial = np.random.default_rng(0).standard_normal((1, 3, height, width), np.float32)
        values = _run(session, feed.name, fetch.name, trial)
        num_classes = int(values.shape[1])
        found = _metadata_class_names(graph)
        spec = ModelSpec(
            format=self.name,
            num_classes=num_classes,
            input=input_spec,
            class_names=resolve_class_names(options.class_names, num_classes, notes, found=found),
            graph_input=feed.name,
            graph_output=fetch.name,
            outputs_probabilities=looks_like_probabilities(values),
        )
        conversion, groups = _inspect_conversion(model_path, spec)
        return Inspection(
            spec=spec,
            parameter_count=_parameter_count(graph),
            layer_groups=groups,
            notes=notes,
            safety_checks=[
                "external data only inside the upload: no absolute paths, '..' or links",
                "ONNX Runtime with its built-in operators only, no custom op libraries",
            ],
            details=_graph_details(graph, session)
            | {
                "featureTensor": _feature_tensor(graph, spec),
                "torchConversion": conversion,
            },
        )

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        """Keep the graph and each external data file under the name the graph uses."""
        del inspection
        model_path = model_file(path)
        graph = read_graph(model_path)
        files = [ArtifactFile("weights", MODEL_NAME, out_dir / MODEL_NAME)]
        shutil.copyfile(model_path, files[0].path)
        for location in check_external_data(graph, model_path.parent):
            target = out_dir / location
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model_path.parent / location, target)
            files.append(ArtifactFile("external_data", location, target))
        return files

    def load(self, artifact_dir: Path, spec: ModelSpec) -> Predictor:
        """An ONNX Runtime session over the kept graph, on the CPU."""
        path = artifact_dir / MODEL_NAME
        return OnnxPredictor(open_session(path), spec, path)


class OnnxPredictor:
    """Runs one graph input to one graph output; also reads the head's input as features."""

    def __init__(self, session: onnxruntime.InferenceSession, spec: ModelSpec, path: Path) -> None:
        self.session = session
        self.spec = spec
        self.path = path
        # The session that also outputs the head's input, or () for a graph with no head.
        self._features: tuple[onnxruntime.InferenceSession, str] | tuple[()] | None = None

    def predict(self, batch: Any) -> Probabilities:
        """Class probabilities ``(N, num_classes)`` for PIL images or a prepared NCHW batch."""
        inputs = images_to_array(batch, self.spec.input)
        values = _run(self.session, self.spec.graph_input, self.spec.graph_output, inputs)
        return values if self.spec.outputs_probabilities else softmax(values)

    def extract_features(self, batch: Any) -> Features:
        """The input of the node that computes the logits (``Gemm`` or ``MatMul``), ``(N, D)``.

        A graph whose output comes from no such node gives its class scores as
        features (see :func:`~kai.models.formats.preprocessing.scores_as_features`).
        """
        inputs = images_to_array(batch, self.spec.input)
        if self._features is None:
            self._features = _features_session(self.path, self.spec.graph_output)
        if not self._features:
            values = _run(self.session, self.spec.graph_input, self.spec.graph_output, inputs)
            return scores_as_features(values, probabilities=self.spec.outputs_probabilities)
        session, name = self._features
        values = _run(session, self.spec.graph_input, name, inputs)
        return values.reshape(values.shape[0], -1)


def _features_session(
    path: Path, output: str | None
) -> tuple[onnxruntime.InferenceSession, str] | tuple[()]:
    """A session over a copy of the graph that also outputs the head's input tensor.

    Empty when the output comes from no ``Gemm`` or ``MatMul`` head.
    """
    graph = read_graph(path)
    try:
        feature = _head_input(graph, output or graph.graph.output[0].name)
    except InvalidInput:
        return ()
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info(feature, onnx.TensorProto.FLOAT, None)
    )
    # Beside the original, so that external data locations resolve the same way.
    copy = path.with_name(FEATURES_MODEL_NAME)
    onnx.save(graph, str(copy))
    return open_session(copy), feature


def _inspect_conversion(path: Path, spec: ModelSpec) -> tuple[dict[str, Any], list[LayerGroup]]:
    # PyTorch loads only where a graph is inspected or trained, never to predict.
    from kai.models.formats.onnx_networks import inspect_conversion

    return inspect_conversion(path, spec)


def _feature_tensor(graph: onnx.ModelProto, spec: ModelSpec) -> str | None:
    """The tensor ``extract_features`` reads, or None when the head is not Gemm or MatMul."""
    try:
        return _head_input(graph, spec.graph_output or graph.graph.output[0].name)
    except InvalidInput:
        return None


def _head_input(graph: onnx.ModelProto, output: str) -> str:
    head, _ = find_head(graph, output)
    return str(head.input[0])


def find_head(graph: onnx.ModelProto, output: str) -> tuple[onnx.NodeProto, onnx.NodeProto | None]:
    """The Gemm or MatMul node that computes ``output``, and the bias ``Add`` after it if any.

    Raises:
        InvalidInput: Past pass-through nodes, ``output`` comes from no Gemm or MatMul.
    """
    producers = {name: node for node in graph.graph.node for name in node.output}
    constants = {tensor.name for tensor in graph.graph.initializer}
    node = producers.get(output)
    while node is not None and node.op_type in _PASS_THROUGH_OPS:
        node = producers.get(node.input[0])
    bias = None
    if node is not None and node.op_type == "Add":
        bias = node
        inputs = [name for name in node.input if name not in constants]
        node = producers.get(inputs[0]) if len(inputs) == 1 else None
    if node is None or node.op_type not in ("Gemm", "MatMul"):
        raise InvalidInput(
            f"The ONNX graph's output {output!r} does not come from a Gemm or MatMul head; "
            "Kai cannot tell which tensor holds its features"
        )
    return node, bias


def model_file(path: Path) -> Path:
    """The ``.onnx`` file itself, or the one inside a bundle (unpacked beside it once)."""
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            return path
    entries = sorted(unpacked_bundle(path).rglob("*.onnx"))
    if len(entries) != 1:
        raise InvalidInput(f"The ZIP must hold exactly one .onnx graph, not {len(entries)}")
    return entries[0]


def check_external_data(graph: onnx.ModelProto, base: Path) -> list[str]:
    """The external data locations the graph names, each checked to be a file inside ``base``.

    Raises:
        InvalidInput: A location is absolute, climbs out with ``..``, is or passes through
            a link, or names no file in the upload.
    """
    locations: list[str] = []
    root = base.resolve()
    for tensor in _tensors(graph.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        _check_location(location, root, tensor.name)
        if location not in locations:
            locations.append(location)
    return locations


def _check_location(location: str, root: Path, tensor: str) -> None:
    pure = PurePosixPath(location)
    windows = PureWindowsPath(location)
    unsafe = (
        not location
        or pure.is_absolute()
        or windows.is_absolute()
        or bool(windows.drive)
        or ".." in pure.parts
        or ".." in windows.parts
    )
    if unsafe:
        raise InvalidInput(
            f"Tensor {tensor!r} names external data at {location!r}; only plain relative "
            "paths inside the upload are allowed",
            details={"tensor": tensor, "location": location},
        )
    current = root
    for part in pure.parts:
        current = current / part
        if current.is_symlink():
            raise InvalidInput(
                f"The external data {location!r} of tensor {tensor!r} is a link; upload the file",
                details={"tensor": tensor, "location": location},
            )
    if not current.is_file() or root not in current.resolve().parents:
        raise InvalidInput(
            f"Tensor {tensor!r} needs external data {location!r}, which the upload lacks; "
            "upload a ZIP holding the .onnx graph and its data files",
            details={"tensor": tensor, "location": location},
        )


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def _onnx_entries(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []
    return [name for name in names if name.lower().endswith(".onnx")]


def _parses(path: Path) -> bool:
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError):
        return False
    return len(graph.graph.node) > 0


def read_graph(path: Path) -> onnx.ModelProto:
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise InvalidInput(f"{path.name!r} is not a readable ONNX graph: {exc}") from exc
    if not graph.graph.node:
        raise InvalidInput(f"The ONNX graph in {path.name!r} has no nodes")
    return graph


def open_session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except (RuntimeError, ValueError, onnxruntime.capi.onnxruntime_pybind11_state.Fail) as exc:
        raise InvalidInput(f"ONNX Runtime cannot open the graph: {str(exc)[:300]}") from exc


def _pick(items: list[Any], wanted: str | None, what: str) -> Any:
    if wanted is None:
        return items[0]
    for item in items:
        if item.name == wanted:
            return item
    names = [item.name for item in items]
    raise InvalidInput(
        f"The graph has no {what} named {wanted!r}; it has {names}",
        details={"field": f"graph{what.title()}", "names": names},
    )


def _input_spec(shape: list[Any], options: ImportOptions, notes: list[str]) -> InputSpec:
    spec = InputSpec()
    static = len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[2:])
    size = options.input_size_px or ((int(shape[2]), int(shape[3])) if static else None)
    if size is None:
        notes.append(f"The graph's input size is dynamic; {spec.size_px[0]} px is assumed")
    if options.mean is None or options.std is None:
        notes.append("No mean and std given; ImageNet's are assumed")
    given = {"size_px": size, "mean": options.mean, "std": options.std}
    return spec.model_copy(update={k: v for k, v in given.items() if v is not None})


def _run(
    session: onnxruntime.InferenceSession, feed: str | None, fetch: str | None, inputs: Any
) -> Probabilities:
    feed_name = feed or session.get_inputs()[0].name
    fetch_name = fetch or session.get_outputs()[0].name
    try:
        (values,) = session.run([fetch_name], {feed_name: inputs})
    except (RuntimeError, ValueError, onnxruntime.capi.onnxruntime_pybind11_state.Fail) as exc:
        raise InvalidInput(
            f"The ONNX graph failed on a {inputs.shape} input: {str(exc)[:300]}"
        ) from exc
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2:
        raise InvalidInput(
            f"Graph output {fetch_name!r} has shape {array.shape}; a classifier returns "
            "(batch, classes)"
        )
    return array


def _parameter_count(graph: onnx.ModelProto) -> int:
    return int(sum(int(np.prod(tensor.dims)) for tensor in graph.graph.initializer))


def _metadata_class_names(graph: onnx.ModelProto) -> list[str] | None:
    metadata = {prop.key: prop.value for prop in graph.metadata_props}
    for key in _CLASS_NAME_KEYS:
        raw = metadata.get(key)
        if raw is None:
            continue
        try:
            names = json.loads(raw)
        except json.JSONDecodeError:
            names = [name.strip() for name in raw.split(",")]
        if isinstance(names, list) and all(isinstance(name, str) for name in names):
            return names
    return None


def _graph_details(graph: onnx.ModelProto, session: onnxruntime.InferenceSession) -> dict[str, Any]:
    def describe(item: Any) -> dict[str, Any]:
        return {"name": item.name, "shape": [str(d) for d in item.shape], "type": item.type}

    return {
        "inputs": [describe(item) for item in session.get_inputs()],
        "outputs": [describe(item) for item in session.get_outputs()],
        "opsets": {entry.domain or "ai.onnx": entry.version for entry in graph.opset_import},
        "producer": f"{graph.producer_name} {graph.producer_version}".strip(),
    }
