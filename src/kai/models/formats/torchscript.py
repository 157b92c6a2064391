"""TorchScript archives (``torch.jit.save``): a ZIP of serialised code, constants and tensors.

TorchScript runs no Python code when loaded, but the archive comes from
someone Kai does not know, so its ZIP structure is checked from the central
directory before ``torch.jit.load`` ever sees it, and the import loads it
only inside the sandbox. The input size is not recorded in the archive: the
import options give it, or the ImageNet default is tried.
"""

from __future__ import annotations

import logging
import shutil
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import torch

from kai.errors import InvalidInput
from kai.models.formats.base import (
    ArtifactFile,
    ImportOptions,
    InputSpec,
    Inspection,
    LayerGroup,
    ModelSpec,
    Predictor,
)
from kai.models.formats.class_names import resolve_class_names
from kai.models.formats.preprocessing import looks_like_probabilities
from kai.models.formats.torch_predictors import TorchScorePredictor

logger = logging.getLogger(__name__)

ARTIFACT_NAME = "model.torchscript.pt"
MAX_ENTRIES = 100_000
MAX_DECLARED_BYTES = 64 * 1024**3


class TorchScriptFormat:
    """The TorchScript adapter."""

    name = "torchscript"
    framework = "pytorch"
    suffixes: tuple[str, ...] = (".pt", ".pth", ".torchscript", ".ptl", ".zip")

    def detect(self, path: Path) -> bool:
        """A ZIP holding TorchScript code next to its pickled constants."""
        names = _names(path)
        return any(_part(name, "code") for name in names) and any(
            PurePosixPath(name).name == "constants.pkl" for name in names
        )

    def check(self, path: Path, options: ImportOptions) -> None:
        """Refuse archives with unsafe names, too many entries or an absurd declared size."""
        del options
        try:
            with zipfile.ZipFile(path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidInput(f"{path.name!r} is not a readable TorchScript archive") from exc
        if len(infos) > MAX_ENTRIES:
            raise InvalidInput(f"The TorchScript archive has {len(infos)} entries; too many")
        for info in infos:
            pure = PurePosixPath(info.filename)
            if pure.is_absolute() or ".." in pure.parts or "\\" in info.filename:
                raise InvalidInput(f"The TorchScript archive has an unsafe entry {info.filename!r}")
        if sum(info.file_size for info in infos) > MAX_DECLARED_BYTES:
            raise InvalidInput("The TorchScript archive declares more bytes than Kai accepts")

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        """Load the module (inside the sandbox) and run it once to count its outputs."""
        module = _load(path)
        notes: list[str] = []
        input_spec = _input_spec(options, notes)
        height, width = input_spec.size_px
        with torch.inference_mode():
            outputs = module(torch.randn(1, 3, height, width))
        if isinstance(outputs, tuple | list):
            outputs = outputs[0]
        if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2:
            raise InvalidInput(
                "The TorchScript module must return a (batch, classes) tensor for a "
                f"(1, 3, {height}, {width}) input"
            )
        num_classes = int(outputs.shape[1])
        spec = ModelSpec(
            format=self.name,
            num_classes=num_classes,
            input=input_spec,
            class_names=resolve_class_names(options.class_names, num_classes, notes),
            outputs_probabilities=looks_like_probabilities(outputs.float().numpy()),
        )
        return Inspection(
            spec=spec,
            parameter_count=sum(p.numel() for p in module.parameters()),
            layer_groups=_layer_groups(module),
            notes=notes,
            safety_checks=[
                "ZIP structure checked before loading",
                "TorchScript runs no Python code; first loaded only inside the sandbox",
            ],
            details={"scriptedClass": module.original_name},
        )

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        """Keep the archive as it is."""
        del inspection
        target = out_dir / ARTIFACT_NAME
        shutil.copyfile(path, target)
        return [ArtifactFile("weights", ARTIFACT_NAME, target)]

    def load(self, artifact_dir: Path, spec: ModelSpec) -> Predictor:
        """Load the kept archive; its class scores serve as its features."""
        return TorchScorePredictor(_load(artifact_dir / ARTIFACT_NAME), spec)


def _load(path: Path) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():
            # PyTorch marks TorchScript deprecated; people still export it, and Kai reads it.
            warnings.simplefilter("ignore", FutureWarning)
            module: torch.jit.ScriptModule = torch.jit.load(  # type: ignore[no-untyped-call]
                str(path), map_location="cpu"
            )
    except RuntimeError as exc:
        raise InvalidInput(f"TorchScript could not load {path.name!r}: {str(exc)[:300]}") from exc
    return module.eval()


def _names(path: Path) -> list[str]:
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":
                return []
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def _part(name: str, part: str) -> bool:
    return part in PurePosixPath(name).parts[:-1]


def _input_spec(options: ImportOptions, notes: list[str]) -> InputSpec:
    spec = InputSpec()
    given = {
        key: value
        for key, value in (
            ("size_px", options.input_size_px),
            ("mean", options.mean),
            ("std", options.std),
        )
        if value is not None
    }
    if len(given) < 3:
        notes.append(
            "The archive does not record its input spec; ImageNet's defaults are assumed "
            "where none was given"
        )
    return spec.model_copy(update=given)


def _layer_groups(module: torch.jit.ScriptModule) -> list[LayerGroup]:
    groups: dict[str, int] = {}
    for name, parameter in module.named_parameters():
        top = name.split(".", 1)[0]
        groups[top] = groups.get(top, 0) + parameter.numel()
    items = list(groups.items())
    result = [LayerGroup(name=name, modules=[name], parameter_count=n) for name, n in items]
    if result:
        result[-1] = result[-1].model_copy(update={"name": "head"})
    return result
