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
Its layer groups, which training freezes by, are the embeddings, each block
of the encoder and the head.

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
    LayerGroup,
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
    from transformers import PretrainedConfig, PreTrainedModel

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
        head = find_head(model, options.head_layer)
        values = _trial_outputs(ClassifierLogits(model), *input_spec.size_px)
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
            layer_groups=find_classifier_groups(model, head),
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
        head = spec.graph_output or find_head(model, None)
        return TorchFeaturePredictor(ClassifierLogits(model), spec, f"model.{head}")


class ClassifierLogits(nn.Module):
    """A transformers classifier called on pixels, returning its logits.

    Its parameters are the classifier's under ``model.``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Any) -> Any:
        """Logits ``(N, num_labels)`` for normalised pixels ``(N, 3, H, W)``."""
        return self.model(pixel_values=pixel_values).logits


def model_folder(path: Path) -> Path:
    """The folder holding ``config.json``: unpacked from a ZIP, or the path itself."""
    if path.is_dir():
        return path
    configs = sorted(unpacked_bundle(path).rglob(CONFIG_NAME), key=lambda p: len(p.parts))
    if not configs:
        raise InvalidInput(f"The ZIP {path.name!r} holds no {CONFIG_NAME}")
    return configs[0].parent


def load_classifier(folder: Path, *, config: PretrainedConfig | None = None) -> PreTrainedModel:
    """The classifier transformers maps the folder's model type to, with its weights, in eval.

    Args:
        folder: The model folder.
        config: The folder's own config with other labels: the head is built for
            them, and weights that no longer fit it start afresh.
    """
    model_class = classifier_class(read_config(folder / CONFIG_NAME))
    given = {} if config is None else {"config": config, "ignore_mismatched_sizes": True}
    try:
        model: PreTrainedModel = model_class.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False, **given
        )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise InvalidInput(f"transformers cannot load the model: {str(exc)[:300]}") from exc
    model.train(False)
    return model


def classifier_class(config: dict[str, Any]) -> Any:
    """The transformers class for the parsed ``config.json`` (see :func:`model_class_name`)."""
    return getattr(import_transformers(), model_class_name(config))


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


def find_head(model: nn.Module, wanted: str | None) -> str:
    """The classification layer's name: ``wanted`` when the model has it, else found by name.

    Raises:
        InvalidInput: ``wanted`` names no layer of the model.
    """
    names = dict(model.named_modules())
    if wanted is not None:
        if wanted not in names:
            raise InvalidInput(
                f"The model has no layer named {wanted!r}", details={"field": "headLayer"}
            )
        return wanted
    found = next((name for name in HEAD_NAMES if isinstance(names.get(name), nn.Module)), None)
    return found or architectures.head_name(model) or "classifier"


def find_classifier_groups(model: nn.Module, head: str) -> list[LayerGroup]:
    """The classifier's layer groups, from the input side to the head, as training freezes them.

    Each block of the encoder (the module list holding the most parameters: ViT's
    layers, ConvNeXt's and ResNet's stages) is a group; what comes before the
    blocks (the embeddings) is the stem, and what follows them (a final norm, a
    pooler) joins the last block. A model without such a list is grouped by its
    top-level children, as other PyTorch models are.

    Args:
        model: The transformers classifier.
        head: Its classification layer's name, the last group.
    """
    blocks = _block_list(model, head)
    if blocks is None:
        return architectures.find_layer_groups(model, head)
    depth = len(blocks.split("."))
    groups: dict[str, dict[str, int]] = {}
    current = "stem"
    for name, parameter in model.named_parameters():
        index = _block_index(name, blocks)
        if _within(name, head):
            group, module = "head", head
        elif index is not None:
            current = group = f"stage{index + 1}"
            module = f"{blocks}.{index}"
        else:
            group, module = current, _owner(name, depth, blocks)
        sizes = groups.setdefault(group, {})
        sizes[module] = sizes.get(module, 0) + parameter.numel()
    # The head is last whatever order the model registered its modules in.
    groups = {name: sizes for name, sizes in groups.items() if name != "head"} | (
        {"head": groups["head"]} if "head" in groups else {}
    )
    return [
        LayerGroup(name=name, modules=list(sizes), parameter_count=sum(sizes.values()))
        for name, sizes in groups.items()
    ]


def _block_list(model: nn.Module, head: str) -> str | None:
    """The name of the module list of two or more blocks holding the most parameters."""
    found, most = None, 0
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2 or _within(name, head):
            continue
        size = sum(parameter.numel() for parameter in module.parameters())
        if size > most:
            found, most = name, size
    return found


def _block_index(name: str, blocks: str) -> int | None:
    if not name.startswith(blocks + "."):
        return None
    index = name[len(blocks) + 1 :].split(".", 1)[0]
    return int(index) if index.isdigit() else None


def _owner(name: str, depth: int, blocks: str) -> str:
    """The parameter's module, as deep as the block list, so a group names a few modules."""
    prefix = ".".join(name.split(".")[:-1][:depth])
    # A parameter held by a module above the blocks is named alone, not by that module.
    if not prefix or _within(blocks, prefix):
        return name
    return prefix


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


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
