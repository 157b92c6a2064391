"""ONNX graphs as PyTorch networks: converted with onnx2torch to fine-tune, exported back.

A graph converts when it passes ONNX's checker, every operator before its
Gemm or MatMul head has an onnx2torch converter, and the converted network
gives the probabilities ONNX Runtime gives on a seeded input. The network is
a :class:`GraphClassifier`: the graph cut just before its head (the
``body``, a ``torch.fx`` module) and an ``nn.Linear`` ``head`` holding the
graph's own head weights, so training can give it a new head, freeze the
body by layer groups and store the result as an ONNX graph again.

The graph is untrusted: it is read without its external data first, and
every external data location must be a file inside the graph's folder (the
import's own check) before any tensor is loaded. Conversion builds modules
from the graph's attributes and runs no code from the file; it happens in a
job's own process (the import's sandbox, then the training job).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from kai.errors import GraphNotConvertible, InvalidInput
from kai.models.formats.base import LayerGroup, ModelSpec
from kai.models.formats.layer_groups import group_layers
from kai.models.formats.onnx_graphs import (
    MODEL_NAME,
    OnnxPredictor,
    check_external_data,
    find_head,
    open_session,
    read_graph,
)
from kai.models.formats.preprocessing import softmax

logger = logging.getLogger(__name__)

HEAD_NAME = "head"
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
EXPORT_OPSET = 17
# Probabilities may differ this much between ONNX Runtime and the converted network.
PARITY_TOLERANCE = 1e-3
_PARITY_SEED = 0


class GraphClassifier(nn.Module):
    """A converted graph's body, then a linear head: ``(N, 3, H, W)`` pixels to logits.

    Args:
        body: The graph up to the head's input, as a ``torch.fx`` module.
        head: The classifier over the flattened body output.
    """

    def __init__(self, body: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.head(torch.flatten(self.body(pixels), 1))  # type: ignore[no-any-return]

    def layer_groups(self) -> list[LayerGroup]:
        """The body's layers with weights in graph order, cut into runs, then the head."""
        layers = [
            (f"body.{name}", sum(p.numel() for p in module.parameters(recurse=False)))
            for name, module in self.body.named_modules()
            if name
        ]
        head = sum(p.numel() for p in self.head.parameters())
        return group_layers([*layers, (HEAD_NAME, head)], HEAD_NAME)


def convert_graph(path: Path, spec: ModelSpec) -> GraphClassifier:
    """The graph at ``path`` (external data beside it) as a checked network, in eval mode.

    Raises:
        GraphNotConvertible: The graph fails ONNX's checker, its head is not a linear
            layer with constant weights, an operator has no converter, the conversion
            fails, or the converted network computes something else than the graph.
    """
    graph = _load_checked(path)
    output = spec.graph_output or graph.graph.output[0].name
    try:
        head_node, bias_node = find_head(graph, output)
    except InvalidInput as exc:
        raise GraphNotConvertible(exc.message) from exc
    head = _linear_head(graph, head_node, bias_node)
    body = _convert_body(_cut_before(graph, str(head_node.input[0]), spec.graph_input))
    network = GraphClassifier(body, head).eval()
    _check_parity(network, path, spec)
    return network


def inspect_conversion(path: Path, spec: ModelSpec) -> tuple[dict[str, Any], list[LayerGroup]]:
    """Whether the graph converts, as an import records it (``{convertible, reason}``), and
    the converted network's layer groups (none when it does not convert)."""
    try:
        network = convert_graph(path, spec)
    except GraphNotConvertible as exc:
        logger.info("ONNX graph does not convert to PyTorch: %s", exc.message)
        return {"convertible": False, "reason": exc.message}, []
    return {"convertible": True, "reason": None}, network.layer_groups()


def reset_weights(network: nn.Module) -> None:
    """Draw every layer's weights afresh, as the layer's own initialiser does."""
    for module in network.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


@dataclass(frozen=True)
class ExportedGraph:
    """A network written as an ONNX graph.

    Attributes:
        path: The ``.onnx`` file.
        feature_tensor: The tensor its head reads, as an import would record it.
    """

    path: Path
    feature_tensor: str


def export_network(
    network: nn.Module, folder: Path, spec: ModelSpec, *, size_px: tuple[int, int]
) -> ExportedGraph:
    """Write ``network`` as ``model.onnx`` in ``folder`` and check ONNX Runtime agrees with it.

    Args:
        network: A classifier of pixels to logits; it is left in eval mode on the CPU.
        folder: Where the graph goes.
        spec: The spec the graph will be loaded with (its input preprocessing).
        size_px: Height and width of the exported input; the batch stays dynamic.

    Raises:
        InvalidInput: The export fails, or ONNX Runtime's probabilities differ. Not
            :class:`GraphNotConvertible`: the network trained, so nothing falls back.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_NAME
    network = network.cpu().eval()
    example = torch.zeros(1, 3, *size_px)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of one that needs onnxscript.
            warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning, UserWarning))
            torch.onnx.export(
                network,
                (example,),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=EXPORT_OPSET,
            )
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InvalidInput(f"The trained network does not export to ONNX: {exc}") from exc
    names = {"graph_input": INPUT_NAME, "graph_output": OUTPUT_NAME}
    exported = spec.model_copy(update=names | {"outputs_probabilities": False})
    try:
        _check_parity(network, path, exported)
    except GraphNotConvertible as exc:
        raise InvalidInput(f"The trained network's ONNX export is wrong: {exc.message}") from exc
    head, _ = find_head(read_graph(path), OUTPUT_NAME)
    return ExportedGraph(path, str(head.input[0]))


def _load_checked(path: Path) -> onnx.ModelProto:
    graph = read_graph(path)
    check_external_data(graph, path.parent)
    try:
        onnx.load_external_data_for_model(graph, str(path.parent))
        onnx.checker.check_model(graph)
    except (onnx.checker.ValidationError, OSError, ValueError) as exc:
        raise GraphNotConvertible(f"The graph fails ONNX's checker: {str(exc)[:300]}") from exc
    return graph


def _constant(graph: onnx.ModelProto, name: str) -> np.ndarray[Any, Any] | None:
    for tensor in graph.graph.initializer:
        if tensor.name == name:
            return np.asarray(numpy_helper.to_array(tensor), dtype=np.float32)
    return None


def _linear_head(
    graph: onnx.ModelProto, node: onnx.NodeProto, bias_node: onnx.NodeProto | None
) -> nn.Linear:
    """The head node's weights as an ``nn.Linear``: Gemm (any alpha, beta, transB) or MatMul."""
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    weight = _constant(graph, node.input[1])
    if weight is None or weight.ndim != 2 or attributes.get("transA", 0):
        raise GraphNotConvertible(
            f"The head node {node.name or node.op_type!r} does not hold its weights as a "
            "constant matrix, so Kai cannot read it as a linear layer"
        )
    if not attributes.get("transB", 0):
        weight = weight.T
    weight = weight * float(attributes.get("alpha", 1.0))
    bias = np.zeros(weight.shape[0], dtype=np.float32)
    if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
        bias = bias + _bias_values(graph, node.input[2], weight.shape[0], node)
        bias = bias * float(attributes.get("beta", 1.0))
    if bias_node is not None:
        name = next(n for n in bias_node.input if n != node.output[0])
        bias = bias + _bias_values(graph, name, weight.shape[0], bias_node)
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        head.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    return head


def _bias_values(
    graph: onnx.ModelProto, name: str, width: int, node: onnx.NodeProto
) -> np.ndarray[Any, Any]:
    values = _constant(graph, name)
    if values is None or values.size not in (1, width):
        raise GraphNotConvertible(
            f"The bias of head node {node.name or node.op_type!r} is not a constant of "
            f"{width} values, so Kai cannot read the head as a linear layer"
        )
    return np.broadcast_to(values.reshape(-1), (width,))


def _cut_before(graph: onnx.ModelProto, feature: str, graph_input: str | None) -> onnx.ModelProto:
    """A copy of the graph whose one output is ``feature``, without the nodes after it."""
    body = onnx.ModelProto()
    body.CopyFrom(graph)
    needed = {feature}
    kept: list[onnx.NodeProto] = []
    for node in reversed(body.graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(node.input)
    del body.graph.node[:]
    body.graph.node.extend(reversed(kept))
    initializers = [t for t in body.graph.initializer if t.name in needed]
    del body.graph.initializer[:]
    body.graph.initializer.extend(initializers)
    inputs = [i for i in body.graph.input if i.name in needed]
    if graph_input is not None and graph_input not in {i.name for i in inputs}:
        raise GraphNotConvertible(f"The graph input {graph_input!r} does not feed the head")
    del body.graph.input[:]
    body.graph.input.extend(inputs)
    del body.graph.output[:]
    body.graph.output.append(
        onnx.helper.make_tensor_value_info(feature, onnx.TensorProto.FLOAT, None)
    )
    return body


def _convert_body(body: onnx.ModelProto) -> nn.Module:
    try:
        import onnx2torch
        from onnx2torch.node_converters import get_converter
    except ImportError as exc:
        raise GraphNotConvertible(
            "onnx2torch is not installed; install Kai's ml extra to fine-tune ONNX graphs"
        ) from exc
    missing = _unconverted_ops(body, get_converter)
    if missing:
        raise GraphNotConvertible(
            f"onnx2torch has no converter for the operator(s) {', '.join(missing)} "
            "in the graph before its head"
        )
    try:
        network: nn.Module = onnx2torch.convert(body)
    # A third-party converter over an untrusted graph fails in many ways; each is reported.
    except Exception as exc:
        raise GraphNotConvertible(
            f"onnx2torch cannot convert the graph: {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    return network


def _unconverted_ops(body: onnx.ModelProto, get_converter: Any) -> list[str]:
    opsets = {entry.domain or "": entry.version for entry in body.opset_import}
    missing: list[str] = []
    for node in body.graph.node:
        domain = node.domain or ""
        label = f"{domain + '.' if domain else ''}{node.op_type}"
        try:
            get_converter(domain=domain, operation_type=node.op_type, version=opsets[domain])
        except (NotImplementedError, KeyError):
            if label not in missing:
                missing.append(label)
    return missing


def _check_parity(network: nn.Module, path: Path, spec: ModelSpec) -> None:
    """Refuse a network whose probabilities differ from ONNX Runtime's on the same input."""
    height, width = spec.input.size_px
    rng = np.random.default_rng(_PARITY_SEED)
    batch = rng.standard_normal((1, 3, height, width)).astype(np.float32)
    try:
        expected = OnnxPredictor(open_session(path), spec, path).predict(batch)
        with torch.inference_mode():
            logits = network(torch.from_numpy(batch)).numpy()
    except (InvalidInput, RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise GraphNotConvertible(
            f"The converted network does not run on a {height}x{width} input: {str(exc)[:300]}"
        ) from exc
    if logits.shape != expected.shape:
        raise GraphNotConvertible(
            f"The converted network gives shape {logits.shape}; the graph {expected.shape}"
        )
    difference = float(np.abs(softmax(logits) - expected).max())
    if difference > PARITY_TOLERANCE:
        raise GraphNotConvertible(
            f"The converted network's probabilities differ from ONNX Runtime's by up to "
            f"{difference:.2g}, more than {PARITY_TOLERANCE}"
        )
