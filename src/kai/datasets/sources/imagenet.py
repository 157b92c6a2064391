"""ImageNet (ILSVRC-2012) from a folder under an import root.

Understood layouts, found below the given folder:

    train/n01440764/*.JPEG  val/n01440764/*.JPEG      class folders per split
    ILSVRC/Data/CLS-LOC/train/n01440764/*.JPEG        the Kaggle challenge layout, with
    ILSVRC/Data/CLS-LOC/val/*.JPEG                    LOC_val_solution.csv labelling val

Classes are WordNet ids; ``LOC_synset_mapping.txt`` (or ``synset_words.txt``)
gives their human-readable names, which become the labels (the id is kept
beside a name that two synsets share, and in every sample's metadata).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from kai.config import Settings
from kai.datasets.filesets import FolderFileSet, resolve_import_path
from kai.datasets.layouts import SkippedFile, reason_to_skip, split_from_folder
from kai.datasets.sources.opened import OpenedSource, SourceImage, StageReport, silent_report
from kai.datasets.sources.references import SourceRef
from kai.db.tables import Split
from kai.errors import InvalidDatasetLayout, InvalidInput

logger = logging.getLogger(__name__)

SYNSET_FILES = ("LOC_synset_mapping.txt", "synset_words.txt")
VAL_SOLUTION = "LOC_val_solution.csv"


@contextmanager
def open_imagenet(
    ref: SourceRef, settings: Settings, *, report: StageReport = silent_report
) -> Iterator[OpenedSource]:
    """Open an ILSVRC-2012 folder.

    Raises:
        PermissionDenied, InvalidInput, NotFound: The path is not an allowed folder.
        InvalidDatasetLayout: No WordNet class folders were found.
    """
    root = resolve_import_path(ref.reference, settings)
    if not root.is_dir():
        raise InvalidInput(f"The ImageNet path {ref.reference!r} is not a folder")
    report("extract", 0.0)
    files = FolderFileSet(
        root, max_file_bytes=settings.max_entry_bytes, max_files=settings.max_archive_entries
    )
    with files:
        names = files.names()
        synsets = read_synsets(root, names)
        labels = _labels(synsets)
        val_labels = _val_solution(root, names)
        images, skipped = _place(names, labels, val_labels)
        if not images:
            raise InvalidDatasetLayout(
                f"No ImageNet images below {str(root)!r}: expected train/<wnid>/*.JPEG folders "
                "(or the ILSVRC/Data/CLS-LOC layout)"
            )
        report("extract", 1.0)
        used = sorted({image.metadata["wnid"] for image in images})
        yield OpenedSource(
            files=files,
            images=images,
            classes=[labels.get(wnid, wnid) for wnid in used],
            revision="ILSVRC-2012",
            details={"folder": str(root), "synsetNames": bool(synsets)},
            skipped=[*files.skipped, *skipped],
        )


def read_synsets(root: Path, names: list[str]) -> dict[str, str]:
    """WordNet id to its first human-readable name, from the synset file if present."""
    for file_name in SYNSET_FILES:
        found = [n for n in names if PurePosixPath(n).name == file_name]
        if found:
            lines = (root / found[0]).read_text("utf-8").splitlines()
            pairs = (line.strip().split(" ", 1) for line in lines if line.strip())
            return {p[0]: p[1].split(",")[0].strip() for p in pairs if len(p) == 2}
    return {}


def _labels(synsets: dict[str, str]) -> dict[str, str]:
    counts: dict[str, int] = {}
    for name in synsets.values():
        counts[name] = counts.get(name, 0) + 1
    # Two synsets share some names ("crane" the bird and the machine); keep them apart.
    return {
        wnid: name if counts[name] == 1 else f"{name} ({wnid})" for wnid, name in synsets.items()
    }


def _val_solution(root: Path, names: list[str]) -> dict[str, str]:
    found = [n for n in names if PurePosixPath(n).name == VAL_SOLUTION]
    if not found:
        return {}
    with open(root / found[0], encoding="utf-8", newline="") as source:
        rows = csv.DictReader(source)
        return {
            row["ImageId"]: row["PredictionString"].split()[0]
            for row in rows
            if row.get("ImageId") and row.get("PredictionString")
        }


def _place(
    names: list[str], labels: dict[str, str], val_labels: dict[str, str]
) -> tuple[list[SourceImage], list[SkippedFile]]:
    images: list[SourceImage] = []
    skipped: list[SkippedFile] = []
    for name in names:
        path = PurePosixPath(name)
        if reason_to_skip(name):
            continue
        wnid, split = _wnid_and_split(path, val_labels)
        if wnid is None:
            skipped.append(SkippedFile(name, "neither in a WordNet class folder nor labelled"))
            continue
        label = labels.get(wnid, wnid)
        images.append(SourceImage(name, label, split, {"wnid": wnid}))
    return images, skipped


def _wnid_and_split(path: PurePosixPath, val_labels: dict[str, str]) -> tuple[str | None, Split]:
    folders = path.parts[:-1]
    split = next((s for f in folders if (s := split_from_folder(f))), Split.TRAIN)
    parent = folders[-1] if folders else ""
    if _is_wnid(parent):
        return parent, split
    return val_labels.get(path.stem), split


def _is_wnid(name: str) -> bool:
    return len(name) == 9 and name[0] == "n" and name[1:].isdigit()
