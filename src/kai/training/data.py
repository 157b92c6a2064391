"""Images from the blob store as tensors: transforms, the dataset, the loaders.

A sample's reduced copy is read from the blob store by address, decoded with
Pillow, resized to the model's input size and normalised with its mean and
standard deviation. Training images are varied by one of the presets made
of torchvision's ``transforms.v2`` (``off``, ``light``, ``standard``,
``strong``) or an explicit list of steps, or by a focus preset that steers an ensemble member toward
texture, colour or pattern; evaluation images get the resize and centre crop
the model was designed with.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import sys
from collections.abc import Sequence, Sized
from multiprocessing.context import BaseContext

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    Sampler,
    WeightedRandomSampler,
)
from torchvision.transforms import v2

from kai.config import usable_cores
from kai.errors import InvalidImage
from kai.jobs.allocator import release_free_memory
from kai.models.formats import InputSpec
from kai.storage.blobs import BlobStore
from kai.training.config import (
    AugmentationPreset,
    AugmentationStep,
    FocusPreset,
    TrainingConfig,
)
from kai.training.samples import TrainingSample

logger = logging.getLogger(__name__)

MAX_LOADER_WORKERS = 4
OFF = AugmentationPreset.OFF
# The smallest share of the image a training crop keeps, by preset.
_CROP_SCALE = {
    AugmentationPreset.LIGHT: 0.7,
    AugmentationPreset.STANDARD: 0.35,
    AugmentationPreset.STRONG: 0.08,
}


def create_transform(spec: InputSpec, config: TrainingConfig, *, train: bool) -> v2.Compose:
    """The transform from a PIL image to a normalised ``(3, H, W)`` float tensor."""
    size = _input_size(spec, config)
    if train and config.focus is not FocusPreset.NONE:
        steps = _focus(size, config.focus)
    elif train and config.enable_data_augmentation and config.augmentations is not None:
        steps = explicit_steps(size, config.augmentations, spec.crop_fraction)
    elif train and config.enable_data_augmentation and config.augmentation is not OFF:
        steps = _augmentations(size, config.augmentation)
    else:
        resize = round(max(size) / spec.crop_fraction)
        steps = [v2.Resize(resize, antialias=True), v2.CenterCrop(size)]
    finish = [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(spec.mean), list(spec.std)),
    ]
    return v2.Compose([*steps, *finish])


def _input_size(spec: InputSpec, config: TrainingConfig) -> tuple[int, int]:
    if config.image_size_px is not None:
        return (config.image_size_px, config.image_size_px)
    return (int(spec.size_px[0]), int(spec.size_px[1]))


def _augmentations(size: tuple[int, int], preset: AugmentationPreset) -> list[v2.Transform]:
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop(size, scale=(_CROP_SCALE[preset], 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if preset is AugmentationPreset.STANDARD:
        steps.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2))
    if preset is AugmentationPreset.STRONG:
        # Materials have no up or down, so vertical flips add true variety.
        steps += [v2.RandomVerticalFlip(), v2.TrivialAugmentWide()]
    return steps


def explicit_steps(
    size: tuple[int, int], names: Sequence[AugmentationStep], crop_fraction: float
) -> list[v2.Transform]:
    """The transforms of an explicit list; without a ``crop`` the image is resized first."""
    steps: list[v2.Transform] = []
    if AugmentationStep.CROP not in names:
        steps = [v2.Resize(round(max(size) / crop_fraction), antialias=True), v2.CenterCrop(size)]
    made = {
        AugmentationStep.CROP: lambda: v2.RandomResizedCrop(
            size, scale=(0.35, 1.0), antialias=True
        ),
        AugmentationStep.HORIZONTAL_FLIP: v2.RandomHorizontalFlip,
        AugmentationStep.VERTICAL_FLIP: v2.RandomVerticalFlip,
        AugmentationStep.ROTATE: lambda: v2.RandomRotation(15),
        AugmentationStep.COLOUR_JITTER: lambda: v2.ColorJitter(0.2, 0.2, 0.2),
        AugmentationStep.GREYSCALE: lambda: v2.RandomGrayscale(p=0.2),
        AugmentationStep.BLUR: lambda: v2.GaussianBlur(3),
        AugmentationStep.TRIVIAL_AUGMENT: v2.TrivialAugmentWide,
    }
    return steps + [made[name]() for name in names]


def _focus(size: tuple[int, int], focus: FocusPreset) -> list[v2.Transform]:
    flips: list[v2.Transform] = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if focus is FocusPreset.TEXTURE:
        # Small crops keep the grain at full resolution; dropping colour at random
        # keeps the member from deciding by hue alone.
        crop = v2.RandomResizedCrop(size, scale=(0.05, 0.3), ratio=(0.8, 1.25), antialias=True)
        return [crop, *flips, v2.RandomGrayscale(p=0.3)]
    if focus is FocusPreset.COLOUR:
        # Colour is the signal: no jitter, and crops that keep most of the surface.
        crop = v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True)
        return [crop, *flips]
    # Pattern: large crops that keep the repeat, mostly in grey so layout decides.
    crop = v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True)
    return [crop, *flips, v2.RandomGrayscale(p=0.7), v2.RandomRotation(15)]


class BlobImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Samples read from the blob store, decoded and transformed on access.

    Args:
        samples: The images with their class indexes.
        blobs: The store their reduced copies live in.
        transform: Turns a PIL image into the model's input tensor.
    """

    def __init__(
        self, samples: Sequence[TrainingSample], blobs: BlobStore, transform: v2.Compose
    ) -> None:
        self.samples = list(samples)
        self.blobs = blobs
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        image = decode_image(self.blobs.read_bytes(sample.sha256), sample.uid)
        tensor: torch.Tensor = self.transform(image)
        return tensor, sample.target


def decode_image(data: bytes, uid: str) -> Image.Image:
    """The image as RGB; InvalidImage naming the sample when its bytes do not decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidImage(
            f"Bad data: sample {uid} cannot be decoded for training ({exc}); "
            "remove or replace it in a new dataset version"
        ) from exc


def create_loader(
    dataset: BlobImageDataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int | None,
    shard: tuple[int, int] | None = None,
    balanced: bool = False,
) -> DataLoader[tuple[torch.Tensor, int]]:
    """A loader over ``dataset``; a training batch of one image left over is dropped.

    With ``shard`` (rank, world size) the loader reads that rank's share of the
    images, reshuffled each epoch once its sampler is told the epoch. With
    ``balanced`` it draws images with replacement, every class equally likely.
    """
    workers = loader_workers() if num_workers is None else num_workers
    generator = torch.Generator().manual_seed(seed)
    sampler: Sampler[int] | None = None
    if shard is not None:
        rank, world = shard
        sampler = DistributedSampler(dataset, world, rank, shuffle=shuffle, seed=seed)
    elif balanced:
        sampler = balanced_sampler(dataset.samples, generator)
    size = len(sampler) if isinstance(sampler, Sized) else len(dataset)
    # Batch norm cannot train on a batch of one image, so such a remainder is skipped.
    drop_last = shuffle and size > batch_size and size % batch_size == 1
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        multiprocessing_context=loader_context() if workers > 0 else None,
    )


def loader_context() -> BaseContext | None:
    """Forked loader processes on Linux, the platform's default elsewhere.

    A job process is itself started by a fork server, which makes that its
    default too: each loader process would then start a fresh interpreter,
    import PyTorch again and unpickle the dataset, seconds of a core taken
    from the first epoch. A fork shares what the job has already loaded.
    """
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return None


def start_loader_processes(loaders: Sequence[DataLoader[tuple[torch.Tensor, int]]]) -> None:
    """Start every loader's persistent processes now, before the first training step.

    A process forked once training has run shares the job's heap, which keeps
    freed activation buffers for reuse (:mod:`kai.jobs.allocator`); every
    page the next step writes would then be copied first. Measured here on
    EfficientNet-Lite0, a validation loader started after the first epoch cost
    a fifth of the run's speed. Each loader reads its first batches now and
    drops them when its first pass begins.
    """
    release_free_memory()
    for loader in loaders:
        if loader.num_workers > 0 and loader.persistent_workers:
            iter(loader)


def balanced_sampler(
    samples: Sequence[TrainingSample], generator: torch.Generator
) -> WeightedRandomSampler:
    """Draws as many images as there are, with replacement, each class equally likely."""
    targets = torch.tensor([sample.target for sample in samples], dtype=torch.long)
    return balanced_target_sampler(targets, generator)


def balanced_target_sampler(
    targets: torch.Tensor, generator: torch.Generator
) -> WeightedRandomSampler:
    """The balanced sampler over rows whose class indices are ``targets``."""
    counts = torch.bincount(targets).float()
    weights = (1.0 / counts.clamp(min=1))[targets]
    return WeightedRandomSampler(
        weights.tolist(), len(targets), replacement=True, generator=generator
    )


def loader_workers() -> int:
    """Decoding processes: one core is left to the training step, at most a few."""
    return max(0, min(MAX_LOADER_WORKERS, usable_cores() - 1))
