"""TFLite files for tests, written as flatbuffers from the schema LiteRT ships.

No converter installs here, so the factory writes the model itself: global
average pooling (``MEAN`` over height and width) then a fully connected
head, on 32-pixel NHWC input. The same writer makes the hostile file whose
tensors claim absurd sizes.
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

SIZE_PX = 32


def tflite_weights(num_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The head's weight ``(num_classes, 3)`` and bias ``(num_classes,)``."""
    weight = (np.arange(num_classes * 3, dtype=np.float32).reshape(num_classes, 3) - 4) / 5
    bias = np.linspace(-0.5, 0.5, num_classes, dtype=np.float32)
    return weight, bias


def tflite_reference(batch: np.ndarray, num_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The pooled features and logits the file computes on an NCHW batch."""
    weight, bias = tflite_weights(num_classes)
    pooled = batch.mean(axis=(2, 3))
    return pooled, pooled @ weight.T + bias


def linear_tflite(
    path: Path, num_classes: int = 3, *, input_shape: tuple[int, ...] | None = None
) -> Path:
    """Pooling and a dense head as a TFLite file; ``input_shape`` overrides the input's."""
    weight, bias = tflite_weights(num_classes)
    shape = list(input_shape or (1, SIZE_PX, SIZE_PX, 3))
    tensors = [
        _tensor("pixels", shape, schema.TensorType.FLOAT32, 0),
        _tensor("axes", [2], schema.TensorType.INT32, 1),
        _tensor("pooled", [1, 3], schema.TensorType.FLOAT32, 0),
        _tensor("weight", [num_classes, 3], schema.TensorType.FLOAT32, 2),
        _tensor("bias", [num_classes], schema.TensorType.FLOAT32, 3),
        _tensor("logits", [1, num_classes], schema.TensorType.FLOAT32, 0),
    ]
    mean = _operator(0, [0, 1], [2], schema.BuiltinOptions.ReducerOptions, schema.ReducerOptionsT())
    dense = _operator(
        1,
        [2, 3, 4],
        [5],
        schema.BuiltinOptions.FullyConnectedOptions,
        schema.FullyConnectedOptionsT(),
    )
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs = tensors, [0], [5]
    subgraph.operators, subgraph.name = [mean, dense], "main"
    model = schema.ModelT()
    model.version, model.description = 3, "kai test classifier"
    model.operatorCodes = [_code(schema.BuiltinOperator.MEAN), _code(9)]
    model.subgraphs = [subgraph]
    model.buffers = [
        _buffer(b""),
        _buffer(np.array([1, 2], np.int32).tobytes()),
        _buffer(weight.tobytes()),
        _buffer(bias.tobytes()),
    ]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


def _tensor(name: str, shape: list[int], dtype: int, buffer: int) -> schema.TensorT:
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name, shape, dtype, buffer
    return tensor


def _operator(
    opcode: int, inputs: list[int], outputs: list[int], options_type: int, options: object
) -> schema.OperatorT:
    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = opcode, inputs, outputs
    operator.builtinOptionsType, operator.builtinOptions = options_type, options
    return operator


def _code(builtin: int) -> schema.OperatorCodeT:
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    return code


def _buffer(data: bytes) -> schema.BufferT:
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, np.uint8) if data else None
    return buffer
