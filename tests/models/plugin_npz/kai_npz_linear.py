"""A third-party model format for tests: a linear classifier on mean colour, kept as ``.npz``.

It is found only through a ``kai.model_formats`` entry point, as a real plugin would be.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kai.models.formats import ArtifactFile, ImportOptions, InputSpec, Inspection, ModelSpec
from kai.models.formats.preprocessing import images_to_array, softmax
from kai.security.pickles import scan_numpy_file

ARTIFACT = "linear.npz"


class NpzLinearFormat:
    name = "npz_linear"
    framework = "numpy"
    suffixes: tuple[str, ...] = (".npz",)

    def detect(self, path: Path) -> bool:
        try:
            with zipfile.ZipFile(path) as archive:
                return {"weight.npy", "bias.npy"} <= set(archive.namelist())
        except (zipfile.BadZipFile, OSError):
            return False

    def check(self, path: Path, options: ImportOptions) -> None:
        scan_numpy_file(path)

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        weight, _ = _read(path)
        num_classes = int(weight.shape[0])
        spec = ModelSpec(
            format=self.name,
            num_classes=num_classes,
            input=InputSpec(size_px=(32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
            class_names=options.class_names or [],
        )
        return Inspection(spec=spec, parameter_count=int(weight.size + num_classes))

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        shutil.copyfile(path, out_dir / ARTIFACT)
        return [ArtifactFile("weights", ARTIFACT, out_dir / ARTIFACT)]

    def load(self, artifact_dir: Path, spec: ModelSpec) -> NpzLinearPredictor:
        return NpzLinearPredictor(*_read(artifact_dir / ARTIFACT), spec)


class NpzLinearPredictor:
    def __init__(self, weight: np.ndarray, bias: np.ndarray, spec: ModelSpec) -> None:
        self.weight, self.bias, self.spec = weight, bias, spec

    def predict(self, batch: Any) -> np.ndarray:
        pixels = images_to_array(batch, self.spec.input)
        mean_colour = pixels.mean(axis=(2, 3))
        return softmax(mean_colour @ self.weight.T + self.bias)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        return arrays["weight"].astype(np.float32), arrays["bias"].astype(np.float32)
