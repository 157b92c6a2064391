"""Training transforms: the augmentation presets and the focus presets for ensemble members."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from kai.models.formats import InputSpec
from kai.training import AugmentationPreset, AugmentationStep, FocusPreset, TrainingConfig
from kai.training.data import create_transform

SPEC = InputSpec(size_px=(32, 32))


def kinds(transform: v2.Compose) -> list[type]:
    return [type(step) for step in transform.transforms]


def test_the_off_preset_trains_on_the_evaluation_transform() -> None:
    config = TrainingConfig(augmentation=AugmentationPreset.OFF)
    assert kinds(create_transform(SPEC, config, train=True)) == kinds(
        create_transform(SPEC, config, train=False)
    )


@pytest.mark.parametrize("focus", [FocusPreset.TEXTURE, FocusPreset.COLOUR, FocusPreset.PATTERN])
def test_focus_presets_choose_their_crops_and_colour_handling(focus: FocusPreset) -> None:
    transform = create_transform(SPEC, TrainingConfig(focus=focus), train=True)
    steps = {type(step): step for step in transform.transforms}
    crop = steps[v2.RandomResizedCrop]
    low, high = crop.scale  # type: ignore[attr-defined]
    greys = v2.RandomGrayscale in steps
    jitter = v2.ColorJitter in steps
    if focus is FocusPreset.TEXTURE:
        assert high <= 0.3 and greys  # small crops at full grain, colour dropped at times
    if focus is FocusPreset.COLOUR:
        assert low >= 0.5 and not greys  # colours stay exact
    if focus is FocusPreset.PATTERN:
        assert low >= 0.5 and greys
    assert not jitter
    image = Image.new("RGB", (48, 40), (120, 60, 30))
    tensor = transform(image)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32


def test_a_focus_preset_leaves_evaluation_images_alone() -> None:
    plain = create_transform(SPEC, TrainingConfig(), train=False)
    focused = create_transform(SPEC, TrainingConfig(focus=FocusPreset.PATTERN), train=False)
    assert kinds(plain) == kinds(focused)


def test_an_explicit_list_replaces_the_preset_in_its_order() -> None:
    steps = [AugmentationStep.VERTICAL_FLIP, AugmentationStep.GREYSCALE]
    config = TrainingConfig(augmentations=steps)
    transform = create_transform(SPEC, config, train=True)
    assert kinds(transform)[:4] == [
        v2.Resize,
        v2.CenterCrop,
        v2.RandomVerticalFlip,
        v2.RandomGrayscale,
    ]
    cropped = TrainingConfig(augmentations=[AugmentationStep.CROP, AugmentationStep.BLUR])
    assert kinds(create_transform(SPEC, cropped, train=True))[:2] == [
        v2.RandomResizedCrop,
        v2.GaussianBlur,
    ]
    image = Image.new("RGB", (40, 40), (10, 200, 30))
    assert transform(image).shape == (3, 32, 32)
