"""Builders of the caches each hub client's download leaves, holding models made in the test.

``huggingface_hub`` keeps ``models--ORG--NAME/{blobs,snapshots/COMMIT,refs/REF}``
with snapshot files linked to content-named blobs; ``torch.hub`` keeps
``TORCH_HOME/hub/checkpoints/FILE``; ``kagglehub`` keeps
``models/OWNER/MODEL/FRAMEWORK/VARIATION/N`` with an ``N.complete`` marker beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import safetensors.torch
import torch

COMMIT = "9d2c4e6f8a0b1c3d5e7f9a1b3c5d7e9f0a2b4c6d"
TIMM_ARCHITECTURE = "test_efficientnet"
LABEL_NAMES = ("porcelain", "slate", "oak")
INPUT_SIZE_PX = 40
MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.3)


def hf_repo_dir(cache: Path, repo_id: str) -> Path:
    """The model repository's folder in a hub cache."""
    return cache / f"models--{repo_id.replace('/', '--')}"


def add_hf_file(cache: Path, repo_id: str, path: str, data: bytes, *, commit: str = COMMIT) -> None:
    """Store one file as the hub download does: a blob, and a relative link in the snapshot."""
    repo = hf_repo_dir(cache, repo_id)
    if path.endswith((".safetensors", ".bin", ".onnx")):
        blob_name = hashlib.sha256(data).hexdigest()  # LFS files are named by SHA-256
    else:
        header = f"blob {len(data)}\0".encode()
        blob_name = hashlib.sha1(header + data).hexdigest()  # git names plain files by SHA-1
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "blobs" / blob_name).write_bytes(data)
    target = repo / "snapshots" / commit / path
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(repo / "blobs" / blob_name, target.parent), target)


def set_hf_ref(cache: Path, repo_id: str, ref: str = "main", *, commit: str = COMMIT) -> None:
    """Point a branch of the cached repository at the commit."""
    refs = hf_repo_dir(cache, repo_id) / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / ref).write_text(commit)


def safetensors_bytes(model: torch.nn.Module) -> bytes:
    """The model's state dict as a safetensors file's bytes."""
    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return safetensors.torch.save(tensors)


def timm_config(
    architecture: str = TIMM_ARCHITECTURE, label_names: Sequence[str] = LABEL_NAMES
) -> dict[str, object]:
    """A config.json as timm's ``push_to_hub`` writes it."""
    return {
        "architecture": architecture,
        "num_classes": len(label_names),
        "num_features": 1280,
        "global_pool": "avg",
        "label_names": list(label_names),
        "pretrained_cfg": {
            "tag": "kai_test",
            "input_size": [3, INPUT_SIZE_PX, INPUT_SIZE_PX],
            "interpolation": "bicubic",
            "mean": list(MEAN),
            "std": list(STD),
            "crop_pct": 0.9,
            "num_classes": len(label_names),
            "classifier": "classifier",
        },
    }


def make_timm_repo(
    cache: Path,
    repo_id: str,
    model: torch.nn.Module,
    *,
    config: Mapping[str, object] | None = None,
    weights_name: str = "model.safetensors",
    commit: str = COMMIT,
) -> None:
    """A timm model repository, cached at ``main``."""
    document = json.dumps(config if config is not None else timm_config(), indent=2)
    add_hf_file(cache, repo_id, "config.json", document.encode(), commit=commit)
    if weights_name.endswith(".safetensors"):
        data = safetensors_bytes(model)
    else:
        data = _torch_save_bytes(model)
    add_hf_file(cache, repo_id, weights_name, data, commit=commit)
    set_hf_ref(cache, repo_id, commit=commit)


def make_torch_checkpoint(torch_home: Path, filename: str, model: torch.nn.Module) -> Path:
    """A checkpoint where ``torch.hub.load_state_dict_from_url`` leaves it."""
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    torch.save(model.state_dict(), path)
    return path


def make_kaggle_model(cache: Path, handle: str, version: int, files: Mapping[str, bytes]) -> Path:
    """A model version as ``kagglehub.model_download`` leaves it, marked complete."""
    base = cache / "models" / handle
    folder = base / str(version)
    for path, data in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (base / f"{version}.complete").touch()
    return folder


def _torch_save_bytes(model: torch.nn.Module) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def make_transformers_repo(
    cache: Path,
    repo_id: str,
    folder: Path,
    *,
    extra_files: Mapping[str, bytes] | None = None,
    commit: str = COMMIT,
) -> None:
    """A transformers model repository, cached at ``main``: every file of a saved folder."""
    for path in sorted(folder.iterdir()):
        add_hf_file(cache, repo_id, path.name, path.read_bytes(), commit=commit)
    for name, data in (extra_files or {}).items():
        add_hf_file(cache, repo_id, name, data, commit=commit)
    set_hf_ref(cache, repo_id, commit=commit)


def make_hub_repo(torch_home: Path, owner: str, repo: str, hubconf: str, ref: str = "main") -> Path:
    """A GitHub repository where ``torch.hub`` leaves it: ``TORCH_HOME/hub/OWNER_REPO_REF``."""
    folder = torch_home / "hub" / f"{owner}_{repo}_{ref}"
    folder.mkdir(parents=True)
    (folder / "hubconf.py").write_text(hubconf)
    return folder
