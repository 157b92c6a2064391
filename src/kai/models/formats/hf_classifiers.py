"""Hugging Face model folders: transformers image classifiers, and timm's hub layout.

A transformers folder holds ``config.json`` (the ``model_type``, the
``architectures`` and ``id2label``), ``model.safetensors`` or
``pytorch_model.bin``, and often ``preprocessor_config.json`` (mean, std,
sizes). An upload brings the folder as a ZIP; a Hugging Face Hub import
bundles the files of one commit the same way.

The class Kai builds is the one transformers maps the ``model_type`` to for
image classification, never one the folder names: a config with
``auto_map`` (code shipped with the model) is refused, and
``trust_remote_code`` is never set. ``pytorch_model.bin`` goes through the
pickle scan before transformers loads it with ``weights_only``. The kept
artifact is the folder as ``save_pretrained`` writes it, in safetensors.

A folder in timm's hub layout (``config.json`` with ``architecture`` and
``pretrained_cfg``) is a state dict of that timm architecture: it is checked,
inspected and kept by the state dict format, with the config's classes,
input size, mean and std as options.
"""

from __future__ import annotations

import logging
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from kai.errors import InvalidInput
from kai.models.formats import architectures
from kai.models.formats.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArtifactFile,
    ImportOptions,
    InputSpec,
    Inspection,
    ModelSpec,
    Predictor,
)
from kai.models.formats.bundles import unpacked_bundle
from kai.models.formats.class_names import resolve_class_names
from kai.models.formats.hf_configs import (
    CONFIG_NAME,
    PREPROCESSOR_NAME,
    fill_options,
    model_class_name,
    read_config,
    timm_options,
    triple,
)
from kai.models.formats.preprocessing import looks_like_probabilities
from kai.models.formats.state_dicts import StateDictFormat
from kai.models.formats.torch_predictors import TorchFeaturePredictor
from kai.security.pickles import scan_torch_file

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
HEAD_NAMES = ("classifier", "head", "fc")
_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")


class TransformersFormat:
    """The transformers image classifier adapter."""

    name = "transformers"
    framework = "pytorch"
    suffixes: tuple[str, ...] = (".zip",)

    def detect(self, path: Path) -> bool:
        """A ZIP holding a ``config.json`` beside transformers weights."""
        names = {PurePosixPath(name).name for name in _zip_names(path)}
        return CONFIG_NAME in names and bool(names & set(WEIGHT_NAMES))

    def check(self, path: Path, options: ImportOptions) -> None:
        """Refuse configs with their own code, and model types with no image classifier."""
        folder = model_folder(path)
        config = read_config(folder / CONFIG_NAME)
        timm = timm_options(config)
        if timm is not None:
            _state_dicts().check(_weights(folder), fill_options(options, timm))
            return
        model_class_name(config)
        weights = _weights(folder)
        if weights.suffix == ".bin":
            scan_torch_file(weights)

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        """Build the mapped class from the config, load the weights and run it once."""
        folder = model_folder(path)
        config = read_config(folder / CONFIG_NAME)
        timm = timm_options(config)
        if timm is not None:
            return _state_dicts().inspect(_weights(folder), fill_options(options, timm))
        model = load_classifier(folder)
        notes = [f"Built {type(model).__name__} from model_type {config['model_type']!r}"]
        input_spec = _input_spec(config, folder, options, notes)
        head = _head(model, options.head_layer)
        values = _trial_outputs(_Logits(model), *input_spec.size_px)
        num_classes = int(values.shape[1])
        found = _labels(config)
        spec = ModelSpec(
            format=self.name,
            architecture=str(config["model_type"]),
            num_classes=num_classes,
            input=input_spec,
            class_names=resolve_class_names(options.class_names, num_classes, notes, found=found),
            graph_output=head,
            outputs_probabilities=looks_like_probabilities(values),
        )
        return Inspection(
            spec=spec,
            parameter_count=architectures.count_parameters(model),
            layer_groups=architectures.find_layer_groups(model, head),
            notes=notes,
            safety_checks=_safety_checks(folder),
            details={"modelClass": type(model).__name__, "modelType": config["model_type"]},
        )

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        """The folder as ``save_pretrained`` writes it, weights in safetensors."""
        folder = model_folder(path)
        if inspection.spec.format != self.name:
            return _state_dicts().prepare(_weights(folder), inspection, out_dir)
        load_classifier(folder).save_pretrained(out_dir, safe_serialization=True)
        files = [
            ArtifactFile("weights", WEIGHT_NAMES[0], out_dir / WEIGHT_NAMES[0]),
            ArtifactFile("config", CONFIG_NAME, out_dir / CONFIG_NAME),
        ]
        if (folder / PREPROCESSOR_NAME).is_file():
            shutil.copyfile(folder / PREPROCESSOR_NAME, out_dir / PREPROCESSOR_NAME)
            files.append(ArtifactFile("config", PREPROCESSOR_NAME, out_dir / PREPROCESSOR_NAME))
        return files

    def load(self, artifact_dir: Path, spec: ModelSpec) -> Predictor:
        """The mapped class over the kept folder."""
        model = load_classifier(artifact_dir)
        head = spec.graph_output or _head(model, None)
        return TorchFeaturePredictor(_Logits(model), spec, f"model.{head}")


class _Logits(nn.Module):
    """A transformers classifier called on pixels, returning its logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Any) -> Any:
        return self.model(pixel_values=pixel_values).logits


def model_folder(path: Path) -> Path:
    """The folder holding ``config.json``: unpacked from a ZIP, or the path itself."""
    if path.is_dir():
        return path
    configs = sorted(unpacked_bundle(path).rglob(CONFIG_NAME), key=lambda p: len(p.parts))
    if not configs:
        raise InvalidInput(f"The ZIP {path.name!r} holds no {CONFIG_NAME}")
    return configs[0].parent


def load_classifier(folder: Path) -> PreTrainedModel:
    """The classifier transformers maps the folder's model type to, with its weights, in eval."""
    transformers = import_transformers()
    config = read_config(folder / CONFIG_NAME)
    model_class = getattr(transformers, model_class_name(config))
    try:
        model: PreTrainedModel = model_class.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise InvalidInput(f"transformers cannot load the model: {str(exc)[:300]}") from exc
    model.train(False)
    return model


def import_transformers() -> Any:
    """transformers, with its progress bars off (they would go to a job's stderr)."""
    try:
        import transformers
    except ImportError as exc:
        raise InvalidInput(
            "transformers image classifiers need the transformers package: install Kai's 'ml' "
            "extra (pip install 'kai[ml]')"
        ) from exc
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return transformers


def _state_dicts() -> StateDictFormat:
    return StateDictFormat()


def _weights(folder: Path) -> Path:
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise InvalidInput(f"The model folder has none of {list(WEIGHT_NAMES)} beside config.json")


def _head(model: nn.Module, wanted: str | None) -> str:
    names = dict(model.named_modules())
    if wanted is not None:
        if wanted not in names:
            raise InvalidInput(
                f"The model has no layer named {wanted!r}", details={"field": "headLayer"}
            )
        return wanted
    found = next((name for name in HEAD_NAMES if isinstance(names.get(name), nn.Module)), None)
    return found or architectures.head_name(model) or "classifier"


def _labels(config: dict[str, Any]) -> list[str] | None:
    raw = config.get("id2label")
    if not isinstance(raw, dict) or not raw:
        return None
    try:
        ordered = [str(raw[key]) for key in sorted(raw, key=int)]
    except (TypeError, ValueError):
        return None
    return None if all(_DEFAULT_LABEL.match(label) for label in ordered) else ordered


def _input_spec(
    config: dict[str, Any], folder: Path, options: ImportOptions, notes: list[str]
) -> InputSpec:
    spec = _preprocessor_spec(folder, config, notes)
    given = {"size_px": options.input_size_px, "mean": options.mean, "std": options.std}
    return spec.model_copy(update={k: v for k, v in given.items() if v is not None})


def _preprocessor_spec(folder: Path, config: dict[str, Any], notes: list[str]) -> InputSpec:
    processor = (
        read_config(folder / PREPROCESSOR_NAME) if (folder / PREPROCESSOR_NAME).is_file() else {}
    )
    mean, std = triple(processor.get("image_mean")), triple(processor.get("image_std"))
    if mean is None or std is None:
        notes.append("No image_mean and image_std in preprocessor_config.json; ImageNet's assumed")
    size, crop_fraction = _processor_size(processor, config)
    if size is None:
        notes.append("No input size in the model's configs; 224 px is assumed")
    return InputSpec(
        size_px=size or (224, 224),
        mean=mean or IMAGENET_MEAN,
        std=std or IMAGENET_STD,
        crop_fraction=crop_fraction,
    )


def _processor_size(
    processor: dict[str, Any], config: dict[str, Any]
) -> tuple[tuple[int, int] | None, float]:
    size, crop = processor.get("size"), processor.get("crop_size")
    if isinstance(crop, dict) and "height" in crop:
        shortest = size.get("shortest_edge") if isinstance(size, dict) else None
        fraction = int(crop["height"]) / int(shortest) if shortest else 1.0
        return (int(crop["height"]), int(crop["width"])), min(fraction, 1.0)
    if isinstance(size, dict) and "height" in size:
        return (int(size["height"]), int(size["width"])), 1.0
    if isinstance(size, dict) and "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        return (edge, edge), float(processor.get("crop_pct") or 1.0)
    image_size = config.get("image_size")
    if isinstance(image_size, int):
        return (image_size, image_size), 1.0
    return None, 0.875


def _trial_outputs(module: nn.Module, height: int, width: int) -> Any:
    trial = np.random.default_rng(0).standard_normal((1, 3, height, width), np.float32)
    try:
        with torch.inference_mode():
            return module(torch.from_numpy(trial)).float().numpy()
    except (RuntimeError, ValueError) as exc:
        raise InvalidInput(f"The model failed on a {height}x{width} px input: {exc}") from exc


def _safety_checks(folder: Path) -> list[str]:
    checks = [
        "the class is transformers' own for the config's model_type; no auto_map, "
        "trust_remote_code never set",
    ]
    if _weights(folder).suffix == ".bin":
        checks.append("pytorch_model.bin passed the pickle scan; loaded with weights_only")
    else:
        checks.append("safetensors holds tensors only, no code")
    return checks


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []
