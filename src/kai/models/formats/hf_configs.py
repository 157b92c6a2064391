"""Reading Hugging Face model configs without importing a framework: timm's and transformers'.

The repository resolver and the transformers format both judge a
``config.json`` here: which layout it is, what import options it gives, and
which transformers class (if any) classifies images for its ``model_type``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kai.errors import InvalidInput, UnsafeModelFile
from kai.models.formats.base import ImportOptions

CONFIG_NAME = "config.json"
PREPROCESSOR_NAME = "preprocessor_config.json"
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def timm_options(config: dict[str, Any]) -> dict[str, Any] | None:
    """The import options a timm hub ``config.json`` gives; None when it is not timm's."""
    architecture = config.get("architecture")
    pretrained = config.get("pretrained_cfg")
    if not isinstance(architecture, str) or not isinstance(pretrained, dict):
        return None
    labels = config.get("label_names")
    size = pretrained.get("input_size")
    return {
        "framework": "pytorch_state_dict",
        "architecture": architecture,
        "class_names": [str(n) for n in labels] if isinstance(labels, list) and labels else None,
        "input_size_px": (int(size[-2]), int(size[-1]))
        if isinstance(size, list) and len(size) == 3
        else None,
        "mean": triple(pretrained.get("mean")),
        "std": triple(pretrained.get("std")),
    }


def fill_options(given: ImportOptions, found: dict[str, Any]) -> ImportOptions:
    """``given`` with ``found``'s values where the person left a field empty."""
    updates = {k: v for k, v in found.items() if v is not None and getattr(given, k) is None}
    return given.model_copy(update=updates)


def read_config(path: Path) -> dict[str, Any]:
    """A ``config.json``, parsed; InvalidInput when it is too large or not a JSON object."""
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidInput(f"{path.name} is over {MAX_CONFIG_BYTES} bytes")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidInput(f"{path.name} is not a JSON object")
    return config


def model_class_name(config: dict[str, Any]) -> str:
    """The transformers class for the config's ``model_type``.

    Raises:
        UnsafeModelFile: The config ships its own code (``auto_map``).
        InvalidInput: The model type is missing or has no image classification class.
    """
    if "auto_map" in config:
        raise UnsafeModelFile(
            "The model's config.json maps to code shipped with the model (auto_map); Kai never "
            "runs a model's own code (trust_remote_code). Use a model whose type transformers "
            "defines, or export it to ONNX",
            details={"field": "file"},
        )
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES as CLASSIFIERS,
    )

    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CLASSIFIERS:
        raise InvalidInput(
            f"config.json's model_type {model_type!r} has no transformers image classifier; "
            f"known types include {', '.join(sorted(CLASSIFIERS)[:12])} ...",
            details={"field": "file", "modelType": str(model_type)},
        )
    found: Any = CLASSIFIERS[model_type]
    return str(found if isinstance(found, str) else found[0])


def triple(value: Any) -> tuple[float, float, float] | None:
    """Three floats from a JSON list of three numbers; None for anything else."""
    if isinstance(value, list) and len(value) == 3:
        return (float(value[0]), float(value[1]), float(value[2]))
    return None
