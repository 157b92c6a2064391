"""Layout detection reads classes and splits from names, and lists what it skips."""

from __future__ import annotations

import pytest

from kai.datasets.layouts import detect_layout
from kai.db.tables import Split
from kai.errors import InvalidDatasetLayout


def placed(names: list[str]) -> dict[str, tuple[str, Split | None]]:
    layout = detect_layout(names)
    return {f.name: (f.label, f.split) for f in layout.files}


def test_folder_per_class() -> None:
    layout = detect_layout(["stone/a.jpg", "wood/b.PNG", "wood/c.jpeg"])
    assert layout.shape == "classes"
    assert layout.classes == ["stone", "wood"]
    assert not layout.has_splits


def test_split_folders_above_classes() -> None:
    files = placed(["train/stone/a.jpg", "Validation/wood/b.jpg", "testing/stone/c.jpg"])
    assert files == {
        "train/stone/a.jpg": ("stone", Split.TRAIN),
        "Validation/wood/b.jpg": ("wood", Split.VAL),
        "testing/stone/c.jpg": ("stone", Split.TEST),
    }
    assert detect_layout(list(files)).shape == "splits-above"


def test_split_folders_below_classes() -> None:
    layout = detect_layout(["stone/train/a.jpg", "wood/valid/b.jpg", "wood/training/c.jpg"])
    assert layout.shape == "splits-below"
    assert {(f.label, f.split) for f in layout.files} == {
        ("stone", Split.TRAIN),
        ("wood", Split.VAL),
        ("wood", Split.TRAIN),
    }


def test_wrapping_root_folder_is_ignored() -> None:
    files = placed(["materials/train/stone/a.jpg", "materials/train/wood/b.jpg"])
    assert set(files.values()) == {("stone", Split.TRAIN), ("wood", Split.TRAIN)}


def test_junk_and_stray_files_are_listed_with_reasons() -> None:
    layout = detect_layout(
        [
            "tiles/stone/a.jpg",
            "tiles/wood/b.jpg",
            "tiles/README.txt",
            "tiles/cover.jpg",
            "tiles/.DS_Store",
            "tiles/wood/Thumbs.db",
            "tiles/stone/deeper/c.jpg",
        ]
    )
    assert layout.classes == ["stone", "wood"]
    reasons = {s.name: s.reason for s in layout.skipped}
    assert reasons["tiles/README.txt"].startswith("not an image file")
    assert reasons["tiles/.DS_Store"] == "system file"
    assert reasons["tiles/wood/Thumbs.db"] == "system file"
    assert "class folders" in reasons["tiles/cover.jpg"]
    assert "tiles/stone/deeper/c.jpg" in reasons


def test_one_class_only_is_refused() -> None:
    with pytest.raises(InvalidDatasetLayout, match="at least two classes; found only 'stone'"):
        detect_layout(["data/stone/a.jpg", "data/stone/b.jpg"])


def test_no_images_is_refused() -> None:
    with pytest.raises(InvalidDatasetLayout, match="no image files"):
        detect_layout(["notes.txt", "more/readme.md"])


def test_files_outside_split_folders_are_skipped_when_others_are_split() -> None:
    layout = detect_layout(["train/stone/a.jpg", "train/wood/b.jpg", "extra/wood/c.jpg"])
    assert [s.name for s in layout.skipped] == ["extra/wood/c.jpg"]
    assert layout.has_splits
