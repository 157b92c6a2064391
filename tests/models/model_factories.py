"""Model files for tests: tiny real networks saved in every format Kai reads, and bad files."""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import safetensors.torch
import timm
import torch
from onnx import helper, numpy_helper
from PIL import Image

from kai.config import Settings
from kai.db.engine import Database
from kai.errors import KaiError
from kai.jobs.context import JobContext
from kai.models.handlers import fail_import, run_import
from kai.storage.blobs import BlobStore

TINY_ARCHITECTURE = "test_efficientnet"

ImportModel = Callable[..., tuple[int, dict[str, Any] | None, str | None]]
"""The ``import_model`` fixture: (path, **options) -> (model id, job result, error)."""
SIZE_PX = 32


def tiny_model(num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    """timm's smallest EfficientNet, random weights fixed by ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return timm.create_model(TINY_ARCHITECTURE, pretrained=False, num_classes=num_classes).eval()


def reference_probabilities(model: torch.nn.Module, batch: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(batch).softmax(dim=1).numpy()


def sample_batch(seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, SIZE_PX, SIZE_PX, generator=generator)


def save_state_dict(model: torch.nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


def save_safetensors(model: torch.nn.Module, path: Path) -> Path:
    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(tensors, path)
    return path


def save_renamed_state_dict(model: torch.nn.Module, path: Path) -> Path:
    """The same tensors in the same order under other names, as another codebase saves them."""
    renamed = {
        f"_layers.{index:04d}.{key.rsplit('.', 1)[-1]}": value
        for index, (key, value) in enumerate(model.state_dict().items())
    }
    torch.save(renamed, path)
    return path


def save_pickled_module(model: torch.nn.Module, path: Path) -> Path:
    """The whole module pickled, code references and all: what Kai must refuse."""
    torch.save(model, path)
    return path


def save_torchscript(model: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still shipped
        traced = torch.jit.trace(model, torch.randn(1, 3, SIZE_PX, SIZE_PX))
        traced.save(str(path))
    return path


def save_onnx(model: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        _export_onnx(model, path)
    return path


def _export_onnx(model: torch.nn.Module, path: Path) -> None:
    torch.onnx.export(
        model,
        (torch.randn(1, 3, SIZE_PX, SIZE_PX),),
        str(path),
        dynamo=False,
        input_names=["pixels"],
        output_names=["logits"],
        dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
    )


def linear_onnx_graph(num_classes: int = 3, *, location: str | None = None) -> onnx.ModelProto:
    """Global average pooling then a linear layer; its weight kept outside when ``location``."""
    weight = numpy_helper.from_array(
        np.arange(num_classes * 3, dtype=np.float32).reshape(3, num_classes) / 10, "weight"
    )
    nodes = [
        helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weight"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "linear",
        [
            helper.make_tensor_value_info(
                "pixels", onnx.TensorProto.FLOAT, ["n", 3, SIZE_PX, SIZE_PX]
            )
        ],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["n", num_classes])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if location is not None:
        tensor = model.graph.initializer[0]
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", location
    return model


def onnx_bundle(path: Path, num_classes: int = 3, *, location: str = "weights.bin") -> Path:
    """A ZIP of a graph and its external data file, as a large ONNX model is shipped."""
    model = linear_onnx_graph(num_classes, location=location)
    data = (np.arange(num_classes * 3, dtype=np.float32) / 10).tobytes()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/graph.onnx", model.SerializeToString())
        archive.writestr(f"model/{location}", data)
    return path


def garbage_file(path: Path) -> Path:
    path.write_bytes(os.urandom(4096))
    return path


def photo_bytes(seed: int = 0, *, size_px: int = 48) -> bytes:
    import io

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size_px, size_px, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def run_model_job(
    settings: Settings, database: Database, blobs: BlobStore, job_id: int, config: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    """Run a model import job's handler here, as a worker would; returns (result, error)."""
    ctx = JobContext(
        job_id=job_id,
        job_type="model.import",
        config=config,
        attempt=1,
        settings=settings,
        db=database,
        blobs=blobs,
        work_dir=settings.work_dir / str(job_id),
    )
    try:
        return run_import(ctx), None
    except KaiError as exc:
        fail_import(ctx, exc.message)
        return None, exc.message


def _protobuf_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (lengths under 128 bytes)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def frozen_graph_bytes() -> bytes:
    """A TensorFlow GraphDef with one Placeholder node and its versions, as protobuf bytes."""
    node = _protobuf_field(1, b"pixels") + _protobuf_field(2, b"Placeholder")
    return _protobuf_field(1, node) + _protobuf_field(4, b"\x08\x01")


def saved_model_bytes() -> bytes:
    """A SavedModel message: schema version 1 and one meta graph tagged ``serve``."""
    meta_info = _protobuf_field(4, b"serve")
    return b"\x08\x01" + _protobuf_field(2, _protobuf_field(1, meta_info))


def zipped_saved_model(path: Path) -> Path:
    """A SavedModel folder zipped: saved_model.pb beside its variables."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("classifier/saved_model.pb", saved_model_bytes())
        archive.writestr("classifier/variables/variables.index", b"\x00" * 16)
    return path


VIT_LABELS = ("porcelain", "slate", "oak")
VIT_PREPROCESSOR = {
    "image_processor_type": "ViTImageProcessor",
    "do_resize": True,
    "size": {"height": SIZE_PX, "width": SIZE_PX},
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}


def tiny_vit(labels: tuple[str, ...] = VIT_LABELS, seed: int = 0) -> torch.nn.Module:
    """A two-layer ViT classifier over 32-pixel images, its labels in ``id2label``."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=SIZE_PX,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )
    return ViTForImageClassification(config).eval()


def save_transformers_folder(model: Any, folder: Path, *, preprocessor: bool = True) -> Path:
    """The folder ``save_pretrained`` writes, with the image processor's config beside it."""
    import json

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    model.save_pretrained(folder)
    if preprocessor:
        (folder / "preprocessor_config.json").write_text(json.dumps(VIT_PREPROCESSOR))
    return folder


def zip_folder(folder: Path, path: Path) -> Path:
    """The folder's files in a ZIP under one top folder, as a person zips a model folder."""
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, f"{folder.name}/{file.relative_to(folder)}")
    return path


def vit_logits(model: Any, batch: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(pixel_values=batch).logits.numpy()
