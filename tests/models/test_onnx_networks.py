"""ONNX graphs converted to PyTorch networks: heads read as linear layers, exports checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from kai.errors import GraphNotConvertible
from kai.models.formats import ImportOptions
from kai.models.formats.onnx_graphs import OnnxFormat
from kai.models.formats.onnx_networks import convert_graph, export_network, reset_weights
from models.model_factories import SIZE_PX

WIDTH = 3  # Pooled RGB: three features per image.


def pooled_graph(path: Path, head: list[onnx.NodeProto], tensors: dict[str, np.ndarray]) -> Path:
    """Global average pooling and flattening, then ``head`` computing ``logits``."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        *head,
    ]
    graph = helper.make_graph(
        nodes,
        "pooled",
        [helper.make_tensor_value_info("pixels", onnx.TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["n", 2])],
        [
            numpy_helper.from_array(value.astype(np.float32), name)
            for name, value in tensors.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def inspected(path: Path):  # type: ignore[no-untyped-def]
    return OnnxFormat().inspect(path, ImportOptions())


def test_a_matmul_and_add_head_becomes_the_linear_head(tmp_path: Path) -> None:
    weight = np.arange(WIDTH * 2).reshape(WIDTH, 2) / 10
    bias = np.array([0.5, -0.5])
    head = [
        helper.make_node("MatMul", ["flat", "w"], ["scores"]),
        helper.make_node("Add", ["scores", "b"], ["logits"]),
    ]
    path = pooled_graph(tmp_path / "m.onnx", head, {"w": weight, "b": bias})

    network = convert_graph(path, inspected(path).spec)

    np.testing.assert_allclose(network.head.weight.detach().numpy(), weight.T, rtol=1e-6)
    np.testing.assert_allclose(network.head.bias.detach().numpy(), bias, rtol=1e-6)
    assert [group.name for group in network.layer_groups()] == ["head"]


def test_a_gemm_head_with_alpha_and_beta_is_scaled_into_the_linear_head(tmp_path: Path) -> None:
    weight = np.arange(WIDTH * 2).reshape(WIDTH, 2) / 10
    bias = np.array([1.0, 2.0])
    head = [helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], alpha=2.0, beta=0.5)]
    path = pooled_graph(tmp_path / "m.onnx", head, {"w": weight, "b": bias})

    network = convert_graph(path, inspected(path).spec)

    np.testing.assert_allclose(network.head.weight.detach().numpy(), 2 * weight.T, rtol=1e-6)
    np.testing.assert_allclose(network.head.bias.detach().numpy(), 0.5 * bias, rtol=1e-6)


def test_a_head_whose_weights_are_computed_does_not_convert(tmp_path: Path) -> None:
    weight = np.arange(WIDTH * 2).reshape(2, WIDTH) / 10
    head = [
        helper.make_node("Transpose", ["w"], ["w_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["flat", "w_t"], ["logits"]),
    ]
    path = pooled_graph(tmp_path / "m.onnx", head, {"w": weight})
    inspection = inspected(path)

    assert inspection.details["torchConversion"]["convertible"] is False
    with pytest.raises(GraphNotConvertible, match="does not hold its weights as a constant"):
        convert_graph(path, inspection.spec)


def test_a_trained_network_exports_as_a_graph_that_converts_again(tmp_path: Path) -> None:
    head = [helper.make_node("Gemm", ["flat", "w"], ["logits"], transB=1)]
    path = pooled_graph(tmp_path / "m.onnx", head, {"w": np.ones((2, WIDTH))})
    spec = inspected(path).spec
    network = convert_graph(path, spec)
    reset_weights(network)

    exported = export_network(network, tmp_path / "out", spec, size_px=(SIZE_PX, SIZE_PX))

    again = inspected(exported.path)
    assert again.details["featureTensor"] == exported.feature_tensor
    assert again.details["torchConversion"] == {"convertible": True, "reason": None}
    batch = torch.randn(2, 3, SIZE_PX, SIZE_PX)
    converted = convert_graph(exported.path, again.spec)
    with torch.inference_mode():
        np.testing.assert_allclose(converted(batch), network(batch), rtol=1e-5, atol=1e-6)
