"""PyTorch state dicts (``.pt``, ``.pth``, ``.bin``, ``.safetensors``) with a named architecture.

A state dict holds weights only, so the import names the architecture and
Kai builds it with timm or torchvision, without pretrained weights and with
as many outputs as the state dict's head has rows. Pickled files go through
:mod:`kai.security.model_files` (scanned, then loaded with
``weights_only=True``); safetensors files hold no code at all.

Keys are matched strictly. A ``module.`` prefix (from data-parallel
training) is stripped, and when the names differ but the tensors match the
architecture's in order and shape, they are mapped by order; the
inspection's notes say which happened. The kept artifact is always a
safetensors file under the architecture's own key names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from kai.errors import InvalidInput
from kai.models.formats import architectures
from kai.models.formats.base import (
    ArtifactFile,
    ImportOptions,
    InputSpec,
    Inspection,
    ModelSpec,
    Predictor,
)
from kai.models.formats.class_names import resolve_class_names
from kai.models.formats.torch_predictors import TorchFeaturePredictor, TorchPredictor
from kai.security.model_files import load_torch_state_dict
from kai.security.pickles import scan_torch_file

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "weights.safetensors"
# The pickled magic number that opens PyTorch's legacy (pre-ZIP) serialisation.
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
MAX_SAFETENSORS_HEADER_BYTES = 100 * 1024 * 1024
_PARALLEL_PREFIX = "module."
_MISMATCHES_SHOWN = 5


@dataclass
class _MatchedWeights:
    model: nn.Module
    notes: list[str] = field(default_factory=list)
    key_mapping: str = "by_name"


class StateDictFormat:
    """The PyTorch state dict adapter."""

    name = "pytorch_state_dict"
    framework = "pytorch"
    suffixes: tuple[str, ...] = (".pt", ".pth", ".bin", ".safetensors")

    def detect(self, path: Path) -> bool:
        """A safetensors header, a legacy torch pickle, or a torch ZIP without TorchScript code."""
        return is_safetensors(path) or is_torch_pickle(path)

    def check(self, path: Path, options: ImportOptions) -> None:
        """The architecture must be known and the file must hold no code."""
        architectures.resolve_architecture(options.architecture or "")
        if is_safetensors(path):
            _read_safetensors_header(path)
        else:
            scan_torch_file(path)

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        """Load the weights into the architecture and read its facts."""
        architecture = architectures.resolve_architecture(options.architecture or "")
        matched = _match_weights(path, architecture, options)
        model = matched.model
        num_classes = _num_outputs(model)
        head = options.head_layer or architectures.head_name(model)
        notes = list(matched.notes)
        class_names = resolve_class_names(options.class_names, num_classes, notes)
        spec = ModelSpec(
            format=self.name,
            architecture=architecture.name,
            num_classes=num_classes,
            input=_input_spec(model, options, notes),
            class_names=class_names,
        )
        return Inspection(
            spec=spec,
            parameter_count=architectures.count_parameters(model),
            layer_groups=architectures.find_layer_groups(model, head),
            notes=notes,
            safety_checks=_safety_checks(path),
            details={
                "library": architecture.library,
                "headLayer": head,
                "keyMapping": matched.key_mapping,
            },
        )

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        """Save the architecture's weights, under its own key names, as safetensors."""
        spec = inspection.spec
        architecture = architectures.resolve_architecture(spec.architecture or "")
        options = ImportOptions(architecture=architecture.name, head_layer=None)
        model = _match_weights(path, architecture, options).model
        target = out_dir / WEIGHTS_NAME
        metadata = {"architecture": architecture.name, "num_classes": str(spec.num_classes)}
        safetensors.torch.save_file(architectures.state_dict_of(model), target, metadata)
        return [ArtifactFile("weights", WEIGHTS_NAME, target)]

    def load(self, artifact_dir: Path, spec: ModelSpec) -> Predictor:
        """Build the architecture and load the kept safetensors strictly."""
        architecture = architectures.resolve_architecture(spec.architecture or "")
        model = architectures.create_classifier(architecture, spec.num_classes)
        weights = safetensors.torch.load_file(artifact_dir / WEIGHTS_NAME, device="cpu")
        model.load_state_dict(weights, strict=True)
        head = architectures.head_name(model)
        return TorchFeaturePredictor(model, spec, head) if head else TorchPredictor(model, spec)


def _safety_checks(path: Path) -> list[str]:
    if is_safetensors(path):
        return ["safetensors holds tensors only, no code"]
    return [
        "pickle scan: no code, only tensors and allowed types",
        "loaded with torch.load(weights_only=True) after the scan, checksum verified",
    ]


def is_safetensors(path: Path) -> bool:
    """Whether the file opens with a safetensors header: a length, then a JSON object."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    size = path.stat().st_size
    return 2 <= length <= min(size - 8, MAX_SAFETENSORS_HEADER_BYTES) and head[8:9] == b"{"


def is_torch_pickle(path: Path) -> bool:
    """A ``torch.save`` file: the legacy pickle, or a ZIP with ``data.pkl`` and no code."""
    with open(path, "rb") as handle:
        head = handle.read(len(LEGACY_MAGIC))
    if head == LEGACY_MAGIC:
        return True
    if not head.startswith(b"PK\x03\x04"):
        return False
    names = _zip_names(path)
    has_pickle = any(name.endswith("/data.pkl") or name == "data.pkl" for name in names)
    has_code = any("/code/" in name or name.startswith("code/") for name in names)
    return has_pickle and not has_code


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def _read_safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"The safetensors header of {path.name!r} is not valid JSON") from exc
    if not isinstance(header, dict):
        raise InvalidInput(f"The safetensors header of {path.name!r} is not a JSON object")
    return header


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The file's tensors by name (unwrapped from a training checkpoint), with notes."""
    notes: list[str] = []
    tensors = load_torch_state_dict(path, expected_sha256=_sha256(path))
    return _strip_parallel_prefix(tensors, notes), notes


def _strip_parallel_prefix(
    tensors: dict[str, torch.Tensor], notes: list[str]
) -> dict[str, torch.Tensor]:
    if not all(key.startswith(_PARALLEL_PREFIX) for key in tensors):
        return tensors
    notes.append("Stripped the 'module.' prefix that data-parallel training adds to keys")
    return {key.removeprefix(_PARALLEL_PREFIX): value for key, value in tensors.items()}


def _match_weights(
    path: Path, architecture: architectures.Architecture, options: ImportOptions
) -> _MatchedWeights:
    tensors, notes = read_tensors(path)
    probe = architectures.create_classifier(architecture, num_classes=1000)
    num_classes = _head_rows(tensors, probe, options.head_layer)
    model = architectures.create_classifier(architecture, num_classes)
    target = model.state_dict()
    matched = _MatchedWeights(model, notes)
    if set(tensors) == set(target):
        _load(model, tensors, architecture)
        return matched
    remapped = _remap_by_order(tensors, target)
    _load(model, remapped, architecture)
    matched.key_mapping = "by_order"
    notes.append(
        f"The key names differ from {architecture.name}'s, but all {len(target)} tensors match "
        "in order and shape, so they were mapped by order "
        f"(for example {next(iter(tensors))!r} -> {next(iter(target))!r})"
    )
    return matched


def _head_rows(tensors: dict[str, torch.Tensor], probe: nn.Module, head_layer: str | None) -> int:
    """Outputs of the state dict's head: by the head's key, else the last matrix in order."""
    head = head_layer or architectures.head_name(probe)
    key = f"{head}.weight" if head else None
    if key and key in tensors and tensors[key].ndim >= 2:
        return int(tensors[key].shape[0])
    if head_layer:
        raise InvalidInput(
            f"The state dict has no 2-D tensor {key!r} for head layer {head_layer!r}",
            details={"field": "headLayer"},
        )
    matrices = [tensor for tensor in tensors.values() if tensor.ndim == 2]
    if not matrices:
        raise InvalidInput(
            "Cannot find the classification head: the state dict has no 2-D weight; "
            "name it with the head layer option"
        )
    return int(matrices[-1].shape[0])


def _remap_by_order(
    tensors: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    sources = list(tensors.items())
    targets = list(target.items())
    shapes_match = len(sources) == len(targets) and all(
        tuple(s.shape) == tuple(t.shape) for (_, s), (_, t) in zip(sources, targets, strict=True)
    )
    if not shapes_match:
        raise _mismatch(tensors, target)
    return {name: source for (name, _), (_, source) in zip(targets, sources, strict=True)}


def _load(
    model: nn.Module, tensors: dict[str, torch.Tensor], arch: architectures.Architecture
) -> None:
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise InvalidInput(
            f"The weights do not fit architecture {arch.name!r}: {str(exc)[:500]}"
        ) from exc


def _mismatch(
    tensors: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> InvalidInput:
    missing = [key for key in target if key not in tensors][:_MISMATCHES_SHOWN]
    unexpected = [key for key in tensors if key not in target][:_MISMATCHES_SHOWN]
    return InvalidInput(
        f"The state dict does not fit the architecture: {len(tensors)} tensors against "
        f"{len(target)} expected, missing keys such as {missing}, unexpected keys such as "
        f"{unexpected}; check the architecture name",
        details={"missing": missing, "unexpected": unexpected},
    )


def _num_outputs(model: nn.Module) -> int:
    classifier = getattr(model, "num_classes", None)
    if isinstance(classifier, int):
        return classifier
    head = architectures.head_name(model)
    module = model.get_submodule(head) if head else None
    if isinstance(module, nn.Linear):
        return module.out_features
    raise InvalidInput("Cannot tell how many classes the model outputs")


def _input_spec(model: nn.Module, options: ImportOptions, notes: list[str]) -> InputSpec:
    spec = architectures.default_input_spec(model)
    overrides = {
        "size_px": options.input_size_px,
        "mean": options.mean,
        "std": options.std,
    }
    given = {key: value for key, value in overrides.items() if value is not None}
    if len(given) < len(overrides):
        notes.append(
            f"Input spec from the architecture's defaults where not given: {spec.size_px[0]}x"
            f"{spec.size_px[1]} px, mean {list(spec.mean)}, std {list(spec.std)}"
        )
    return spec.model_copy(update=given)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
