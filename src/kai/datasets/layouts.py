"""Reading a classification dataset's layout from its file names alone.

A layout maps each image file to a class and, when the folders say so, a
split. Understood shapes, in any mix of letter case:

    cat/001.jpg                      a folder per class
    train/cat/001.jpg                split folders above the classes
    cat/train/001.jpg                split folders below the classes
    materials/train/cat/001.jpg      any of these inside one wrapping folder

Split folders are ``train``/``training``, ``val``/``valid``/``validation``
and ``test``/``testing``. System files (``__MACOSX/``, hidden files,
``Thumbs.db``), files that are not images and files outside the class
folders are skipped, each with its reason, so the import report lists them.
Detection reads names only, so it runs on an archive's central directory
before a single entry is decompressed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from kai.db.tables import Split
from kai.errors import InvalidDatasetLayout

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
ARCHIVE_SUFFIXES = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar"})
SYSTEM_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini", "ehthumbs.db"})

SPLIT_FOLDERS: dict[str, Split] = {
    "train": Split.TRAIN,
    "training": Split.TRAIN,
    "val": Split.VAL,
    "valid": Split.VAL,
    "validation": Split.VAL,
    "test": Split.TEST,
    "testing": Split.TEST,
}

MIN_CLASSES = 2


@dataclass(frozen=True)
class SkippedFile:
    """A file the import left out, with the reason shown in the import report."""

    name: str
    reason: str


@dataclass(frozen=True)
class PlannedFile:
    """An image file the import will read, with where it goes."""

    name: str
    label: str
    split: Split | None = None
    group: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Layout:
    """The plan for an import: the files to read and those left out.

    Attributes:
        files: Image files with their class and split (None when unsplit).
        skipped: Files left out by name, with reasons.
        shape: ``classes``, ``splits-above``, ``splits-below`` or ``csv``.
    """

    files: list[PlannedFile]
    skipped: list[SkippedFile] = field(default_factory=list)
    shape: str = "classes"

    @property
    def classes(self) -> list[str]:
        """The class names, sorted."""
        return sorted({planned.label for planned in self.files})

    @property
    def has_splits(self) -> bool:
        """Whether the source assigned every file a split."""
        return bool(self.files) and all(planned.split for planned in self.files)


def split_from_folder(name: str) -> Split | None:
    """The split a folder name stands for, or None."""
    return SPLIT_FOLDERS.get(name.lower())


def reason_to_skip(name: str) -> str | None:
    """Why a file is not an image candidate by its name alone, or None if it is one."""
    path = PurePosixPath(name)
    for part in path.parts:
        if part.startswith(".") or part.lower() in SYSTEM_NAMES:
            return "system file"
    suffix = path.suffix.lower()
    if suffix in ARCHIVE_SUFFIXES:
        return "nested archive; archives inside archives are not imported"
    if suffix not in IMAGE_SUFFIXES:
        return f"not an image file ({suffix or 'no extension'})"
    return None


def detect_layout(names: Iterable[str], *, min_classes: int = MIN_CLASSES) -> Layout:
    """Plan an import from the relative POSIX names of a source's files.

    Raises:
        InvalidDatasetLayout: No image files, or fewer than two classes.
    """
    candidates: list[str] = []
    skipped: list[SkippedFile] = []
    for name in names:
        reason = reason_to_skip(name)
        if reason:
            skipped.append(SkippedFile(name, reason))
        else:
            candidates.append(name)
    if not candidates:
        raise InvalidDatasetLayout(
            "The upload contains no image files (looked for "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}); {len(skipped)} other files were skipped",
            details={"skipped": len(skipped)},
        )
    files, outside, shape = _place_files(candidates)
    skipped.extend(outside)
    layout = Layout(files=files, skipped=skipped, shape=shape)
    require_classes(layout.files, min_classes=min_classes)
    return layout


def require_classes(files: Iterable[PlannedFile], *, min_classes: int = MIN_CLASSES) -> None:
    """Raise unless the files span at least ``min_classes`` classes (at least one file)."""
    counts = Counter(planned.label for planned in files)
    if counts and len(counts) >= min_classes:
        return
    if min_classes < MIN_CLASSES:
        raise InvalidDatasetLayout(
            "No image is inside a class folder; put each image in a folder named after its class"
        )
    found = f"found only {sorted(counts)[0]!r}" if counts else "found no class folders"
    raise InvalidDatasetLayout(
        f"A classification dataset needs at least two classes; {found}. "
        "Put each class's images in a folder named after the class.",
        details={"classes": sorted(counts)},
    )


@dataclass(frozen=True)
class _Parsed:
    name: str
    folders: tuple[str, ...]
    split: Split | None
    split_position: str


def _parse(name: str) -> _Parsed | SkippedFile:
    folders = PurePosixPath(name).parts[:-1]
    split_at = [i for i, part in enumerate(folders) if split_from_folder(part)]
    if len(split_at) > 1:
        return SkippedFile(name, "inside more than one split folder")
    if not split_at:
        return _Parsed(name, folders, None, "none")
    index = split_at[0]
    split = split_from_folder(folders[index])
    rest = folders[:index] + folders[index + 1 :]
    position = "below" if index == len(folders) - 1 else "above"
    return _Parsed(name, rest, split, position)


def _place_files(names: list[str]) -> tuple[list[PlannedFile], list[SkippedFile], str]:
    parsed: list[_Parsed] = []
    skipped: list[SkippedFile] = []
    for name in names:
        result = _parse(name)
        if isinstance(result, SkippedFile):
            skipped.append(result)
        else:
            parsed.append(result)
    depth = _usual_depth(parsed)
    prefix = _common_prefix([p.folders for p in parsed if len(p.folders) == depth], depth - 1)
    uses_splits = any(p.split for p in parsed)
    files: list[PlannedFile] = []
    for item in parsed:
        reason = _misplaced(item, prefix, depth, uses_splits)
        if reason:
            skipped.append(SkippedFile(item.name, reason))
        else:
            files.append(PlannedFile(item.name, item.folders[-1], item.split))
    return files, skipped, _shape(parsed)


def _usual_depth(parsed: list[_Parsed]) -> int:
    depths = Counter(len(p.folders) for p in parsed if p.folders)
    if not depths:
        return 1
    # The most common depth wins; ties go to the shallower layout.
    return min(depths, key=lambda depth: (-depths[depth], depth))


def _common_prefix(paths: list[tuple[str, ...]], max_length: int) -> tuple[str, ...]:
    if not paths:
        return ()
    prefix = paths[0][:max_length]
    for path in paths[1:]:
        length = 0
        while length < len(prefix) and path[length] == prefix[length]:
            length += 1
        prefix = prefix[:length]
    return prefix


def _misplaced(item: _Parsed, prefix: tuple[str, ...], depth: int, uses_splits: bool) -> str:
    if not item.folders:
        if item.split:
            return "inside a split folder but not inside a class folder"
        return "not inside a class folder"
    if len(item.folders) != depth or item.folders[: len(prefix)] != prefix:
        return "outside the dataset's class folders"
    if len(item.folders) != len(prefix) + 1:
        return "in a nested folder below its class folder"
    if uses_splits and not item.split:
        return "outside the split folders while the rest of the dataset is split"
    return ""


def _shape(parsed: list[_Parsed]) -> str:
    positions = Counter(p.split_position for p in parsed if p.split)
    if not positions:
        return "classes"
    return "splits-above" if positions.most_common(1)[0][0] == "above" else "splits-below"
