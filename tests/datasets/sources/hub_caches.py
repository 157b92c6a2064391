"""Builders of the caches each hub client's download leaves, made from images made here.

``huggingface_hub`` keeps ``datasets--ORG--NAME/{blobs,snapshots/COMMIT,refs/REF}``
with snapshot files linked to content-named blobs; ``kagglehub`` keeps
``datasets/OWNER/SLUG/versions/N`` with an ``N.complete`` marker beside it.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

COMMIT = "3f1c0d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e"


def png_bytes(seed: int, *, size_px: int = 32) -> bytes:
    """A small PNG whose pixels depend on ``seed``."""
    image = Image.new("RGB", (size_px, size_px), ((seed * 53) % 256, (seed * 29) % 256, 70))
    for x in range(size_px):
        image.putpixel((x, seed % size_px), (250, (x * 7) % 256, (seed * 11) % 256))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def hf_repo_dir(cache: Path, repo_id: str) -> Path:
    """The repository's folder in a hub cache."""
    return cache / f"datasets--{repo_id.replace('/', '--')}"


def add_hf_file(cache: Path, repo_id: str, path: str, data: bytes, *, commit: str = COMMIT) -> None:
    """Store one file as the hub download does: a blob, and a relative link in the snapshot."""
    repo = hf_repo_dir(cache, repo_id)
    if path.endswith((".parquet", ".png", ".jpg")):
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


def make_hf_parquet_repo(
    cache: Path,
    repo_id: str,
    *,
    class_names: Sequence[str],
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    work: Path,
    image_column: str = "image",
    label_column: str | None = "label",
) -> None:
    """A Parquet dataset repository as ``push_to_hub`` lays it out, cached at ``main``.

    Each row maps column names to values; the image column holds PNG bytes.
    """
    import datasets

    for split, split_rows in rows.items():
        features = _features(split_rows[0], class_names, image_column, label_column)
        columns = {name: [row[name] for row in split_rows] for name in features}
        columns[image_column] = [{"bytes": b, "path": None} for b in columns[image_column]]
        table = datasets.Dataset.from_dict(columns, features=features)
        parquet = work / f"{repo_id.replace('/', '_')}-{split}.parquet"
        table.to_parquet(str(parquet))
        add_hf_file(cache, repo_id, f"data/{split}-00000-of-00001.parquet", parquet.read_bytes())
    card = "---\nconfigs:\n- config_name: default\n  data_files:\n"
    card += "".join(f"  - split: {s}\n    path: data/{s}-*\n" for s in rows)
    add_hf_file(cache, repo_id, "README.md", (card + "---\n# Test dataset\n").encode())
    set_hf_ref(cache, repo_id)


def _features(
    row: Mapping[str, Any], class_names: Sequence[str], image: str, label: str | None
) -> Any:
    import datasets

    features: dict[str, Any] = {}
    for name, value in row.items():
        if name == image:
            features[name] = datasets.Image()
        elif name == label:
            features[name] = datasets.ClassLabel(names=list(class_names))
        elif isinstance(value, int):
            features[name] = datasets.Value("int64")
        else:
            features[name] = datasets.Value("string")
    return datasets.Features(features)


def make_hf_imagefolder_repo(cache: Path, repo_id: str, files: Mapping[str, bytes]) -> None:
    """An image-folder repository (``train/CLASS/x.png``), cached at ``main``."""
    for path, data in files.items():
        add_hf_file(cache, repo_id, path, data)
    set_hf_ref(cache, repo_id)


def make_kaggle_dataset(cache: Path, handle: str, version: int, files: Mapping[str, bytes]) -> Path:
    """A dataset version as ``kagglehub.dataset_download`` leaves it, marked complete."""
    owner, slug = handle.split("/")
    base = cache / "datasets" / owner / slug
    folder = base / "versions" / str(version)
    for path, data in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (base / f"{version}.complete").touch()
    return folder
