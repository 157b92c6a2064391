"""Kaggle datasets, read through ``kagglehub``.

``kagglehub.dataset_download`` fills its cache
(``$KAGGLEHUB_CACHE/datasets/OWNER/SLUG/versions/N``, marked complete by
``N.complete`` beside it) and answers from it when the version is already
there. Without a version it asks Kaggle for the latest one; when Kaggle
cannot be reached, the newest complete version in the cache is read
through the same client call. The files are then planned like a server
folder: class folders (with or without split folders) first, and failing
that a CSV inside the dataset that maps files to labels.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kai.config import Settings
from kai.datasets.csvmap import match_files, read_mapping
from kai.datasets.filesets import FolderFileSet
from kai.datasets.layouts import Layout, detect_layout
from kai.datasets.sources.opened import OpenedSource, SourceImage, StageReport, silent_report
from kai.datasets.sources.references import SourceRef
from kai.errors import InvalidCsv, InvalidDatasetLayout, NotFound

logger = logging.getLogger(__name__)

_VERSION_MARKER = re.compile(r"(\d+)\.complete")


def kaggle_cache_dir() -> Path:
    """The cache ``kagglehub`` downloads into (``KAGGLEHUB_CACHE``, else ~/.cache/kagglehub)."""
    return Path(os.environ.get("KAGGLEHUB_CACHE") or "~/.cache/kagglehub").expanduser()


@contextmanager
def open_kaggle(
    ref: SourceRef, settings: Settings, *, report: StageReport = silent_report
) -> Iterator[OpenedSource]:
    """Open a Kaggle dataset from Kaggle or the kagglehub cache.

    Raises:
        NotFound: No such dataset or version, or not cached and no network.
        InvalidDatasetLayout: Neither class folders nor a usable CSV mapping.
    """
    report("download", 0.0)
    root, version = download_dataset(ref)
    report("download", 1.0)
    report("extract", 0.0)
    files = FolderFileSet(
        root, max_file_bytes=settings.max_entry_bytes, max_files=settings.max_archive_entries
    )
    with files:
        layout = plan_files(root, files.names(), ref, max_rows=settings.max_archive_entries)
        report("extract", 1.0)
        images = [
            SourceImage(p.name, p.label, p.split, {"group": p.group} if p.group else {})
            for p in layout.files
        ]
        yield OpenedSource(
            files=files,
            images=images,
            classes=layout.classes,
            revision=version,
            details={"layout": layout.shape, "cache": str(kaggle_cache_dir())},
            skipped=[*files.skipped, *layout.skipped],
        )


def download_dataset(ref: SourceRef) -> tuple[Path, str]:
    """The dataset's local folder and version number."""
    import kagglehub
    import requests
    from kagglehub.exceptions import KaggleApiHTTPError

    handle = ref.reference + (f"/versions/{ref.revision}" if ref.revision else "")
    try:
        folder = kagglehub.dataset_download(handle)
    except KaggleApiHTTPError as exc:
        raise NotFound(f"Kaggle has no dataset {handle!r} ({exc})") from exc
    except (requests.RequestException, OSError) as exc:
        cached = None if ref.revision else latest_cached_version(ref.reference)
        if cached is None:
            raise _not_cached(ref, exc) from exc
        logger.warning("Kaggle is unreachable; reading cached version %s of %s", cached, handle)
        folder = kagglehub.dataset_download(f"{ref.reference}/versions/{cached}")
    path = Path(folder)
    return path, path.name if path.parent.name == "versions" else (ref.revision or "")


def latest_cached_version(reference: str) -> int | None:
    """The newest version of the dataset that the cache holds complete, if any."""
    owner, slug = reference.split("/", 1)
    folder = kaggle_cache_dir() / "datasets" / owner / slug
    if not folder.is_dir():
        return None
    versions = [
        int(match.group(1))
        for entry in folder.iterdir()
        if (match := _VERSION_MARKER.fullmatch(entry.name))
        and (folder / "versions" / match.group(1)).is_dir()
    ]
    return max(versions, default=None)


def _not_cached(ref: SourceRef, exc: Exception) -> NotFound:
    cache = kaggle_cache_dir()
    handle = ref.reference + (f"/versions/{ref.revision}" if ref.revision else "")
    return NotFound(
        f"Kaggle dataset {handle!r} is not in the kagglehub cache at {cache}, and Kaggle could "
        f"not be reached ({type(exc).__name__}). On a machine with network, run "
        f'"python -c \'import kagglehub; kagglehub.dataset_download(\\"{handle}\\")\'" with '
        f"KAGGLEHUB_CACHE set to an empty folder, then copy its 'datasets' folder into {cache} "
        "here (or point KAGGLEHUB_CACHE at it)",
        details={"cache": str(cache), "dataset": handle},
    )


def plan_files(root: Path, names: list[str], ref: SourceRef, *, max_rows: int) -> Layout:
    """Class folders if the files form them, else the first CSV that maps them.

    Raises:
        InvalidDatasetLayout: Neither works; the message says what was tried.
    """
    try:
        return detect_layout(names)
    except InvalidDatasetLayout as folder_error:
        tried = [f"class folders: {folder_error.message}"]
    for csv_name in sorted(n for n in names if n.lower().endswith(".csv")):
        try:
            mapping = read_mapping(root / csv_name, max_rows=max_rows)
            layout = match_files(mapping, names)
        except (InvalidCsv, InvalidDatasetLayout) as exc:
            tried.append(f"{csv_name}: {exc.message}")
            continue
        layout.skipped = [s for s in layout.skipped if s.name != csv_name]
        return layout
    raise InvalidDatasetLayout(
        f"Kaggle dataset {ref.reference!r} is neither class folders of images nor images "
        f"with a CSV of labels; tried {'; '.join(tried)[:1500]}",
        details={"tried": tried[:20]},
    )
