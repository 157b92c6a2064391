"""Hugging Face datasets, read through ``huggingface_hub`` and ``datasets``.

``snapshot_download`` fetches the repository into the hub cache, or, when the
hub cannot be reached (or ``HF_HUB_OFFLINE`` is set), returns the snapshot an
earlier download left there. ``datasets.load_dataset`` then reads that local
folder, which keeps the features: the image column and the class-label
column are found from them, whether the repository holds Parquet files or
an image folder. Loading by repository name would not read the hub cache
offline, which is why the snapshot comes first.

Images are read one row at a time without decoding; an image stored as a
path is read only when the path lies inside the cached repository or the job's
scratch folder, since the files come from an untrusted repository.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from kai.config import Settings
from kai.datasets.layouts import SkippedFile, split_from_folder
from kai.datasets.sources.opened import (
    OpenedSource,
    ReaderFileSet,
    SourceImage,
    StageReport,
    silent_report,
)
from kai.datasets.sources.references import SourceRef
from kai.errors import InvalidDatasetLayout, InvalidImage, NotFound, PermissionDenied

logger = logging.getLogger(__name__)

IMAGE_COLUMN_NAMES = ("image", "img", "picture", "photo")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "class", "category", "target")
TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


def hub_cache_dir() -> Path:
    """The hub cache the client's own download fills (``HF_HUB_CACHE`` or ``HF_HOME/hub``)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or "~/.cache/huggingface"
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the client to reach the hub."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_VALUES


@contextmanager
def open_huggingface(
    ref: SourceRef,
    settings: Settings,
    *,
    work_dir: Path,
    report: StageReport = silent_report,
) -> Iterator[OpenedSource]:
    """Open a Hugging Face dataset from the hub or its cache.

    Raises:
        NotFound: No such repository or revision, or not cached and no network.
        PermissionDenied: The repository is gated and the token may not read it.
        InvalidDatasetLayout: No image column, no class labels, or unreadable files.
    """
    report("download", 0.0)
    snapshot = download_snapshot(ref)
    report("download", 1.0)
    report("extract", 0.0)
    splits = _load(snapshot, ref, work_dir)
    columns = _Columns.find(splits, ref)
    images, rows, skipped = columns.index(splits)
    report("extract", 1.0)
    # Snapshot files link to the repository's blobs, so the whole repository folder is allowed.
    reader = _RowReader(splits, columns.image, rows, allowed=(snapshot.parents[1], work_dir))
    yield OpenedSource(
        files=ReaderFileSet(list(rows), reader.read, max_file_bytes=settings.max_entry_bytes),
        images=images,
        classes=columns.classes,
        revision=snapshot.name,
        details={
            "imageColumn": columns.image,
            "labelColumn": columns.label,
            "splits": sorted(splits),
            "cache": str(hub_cache_dir()),
        },
        skipped=skipped,
    )


def download_snapshot(ref: SourceRef) -> Path:
    """The local snapshot folder of the repository at the revision; its name is the commit."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    subject = _subject(ref)
    try:
        folder = snapshot_download(
            ref.reference,
            repo_type="dataset",
            revision=ref.revision,
            cache_dir=hub_cache_dir(),
            local_files_only=hub_offline(),
        )
    except GatedRepoError as exc:
        raise PermissionDenied(
            f"{subject} is gated: accept its terms on huggingface.co and set HF_TOKEN for the "
            "workers, or copy a cache made on a machine with access"
        ) from exc
    except RevisionNotFoundError as exc:
        raise NotFound(f"{subject} has no revision {ref.revision!r}") from exc
    except RepositoryNotFoundError as exc:
        raise NotFound(f"There is no {subject} (or it is private)") from exc
    except LocalEntryNotFoundError as exc:
        raise _not_cached(ref) from exc
    return Path(folder)


def _not_cached(ref: SourceRef) -> NotFound:
    cache = hub_cache_dir()
    repo_dir = cache / f"datasets--{ref.reference.replace('/', '--')}"
    revision = ref.revision or "main"
    cached = sorted(p.name for p in (repo_dir / "refs").glob("*")) if repo_dir.is_dir() else []
    held = f" (the cache holds revisions {cached})" if cached else ""
    command = f"hf download {ref.reference} --repo-type dataset --revision {revision}"
    return NotFound(
        f"{_subject(ref)} at revision {revision!r} is not in the Hugging Face cache at "
        f"{cache}{held}, and the hub could not be reached. On a machine with network, run "
        f"'{command}' with HF_HUB_CACHE set to an empty folder, then copy that folder's "
        f"'{repo_dir.name}' into {cache} here (or point HF_HUB_CACHE at it)",
        details={"cache": str(cache), "repository": ref.reference, "revision": revision},
    )


def _subject(ref: SourceRef) -> str:
    return f"Hugging Face dataset {ref.reference!r}"


def _load(snapshot: Path, ref: SourceRef, work_dir: Path) -> Any:
    import datasets

    datasets.disable_progress_bars()
    folder, name = snapshot, ref.config
    if ref.config and (snapshot / ref.config).is_dir():
        # Converted Parquet branches keep one folder per configuration.
        folder, name = snapshot / ref.config, None
    unreadable = (ValueError, TypeError, FileNotFoundError, datasets.exceptions.DatasetsError)
    try:
        loaded = datasets.load_dataset(
            str(folder), name=name, cache_dir=str(work_dir / "hf-datasets")
        )
    except unreadable as exc:
        raise InvalidDatasetLayout(
            f"{_subject(ref)} could not be read as a dataset: {exc}"
        ) from exc
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


class _Columns:
    """The image and label columns of a dataset, found from its features."""

    def __init__(self, image: str, label: str, classes: list[str], by_index: bool) -> None:
        self.image = image
        self.label = label
        self.classes = classes
        self.by_index = by_index

    @classmethod
    def find(cls, splits: Any, ref: SourceRef) -> _Columns:
        import datasets

        first = next(iter(splits.values()))
        features = first.features
        described = ", ".join(f"{name} ({type(f).__name__})" for name, f in features.items())
        images = [n for n, f in features.items() if isinstance(f, datasets.Image)]
        if not images:
            raise InvalidDatasetLayout(
                f"{_subject(ref)} has no image column; its columns are {described}"
            )
        image = _preferred(images, IMAGE_COLUMN_NAMES)
        labels = [n for n, f in features.items() if isinstance(f, datasets.ClassLabel)]
        if labels:
            label = _preferred(labels, LABEL_COLUMN_NAMES)
            return cls(image, label, [str(n) for n in features[label].names], by_index=True)
        return cls._string_labels(splits, features, image, ref, described)

    @classmethod
    def _string_labels(
        cls, splits: Any, features: Any, image: str, ref: SourceRef, described: str
    ) -> _Columns:
        import datasets

        texts = [
            n
            for n, f in features.items()
            if isinstance(f, datasets.Value) and f.dtype in ("string", "large_string")
        ]
        named = [n for n in LABEL_COLUMN_NAMES if n in texts]
        if not named:
            raise InvalidDatasetLayout(
                f"{_subject(ref)} has no class-label column, so it is not an "
                f"image-classification dataset; its columns are {described}"
            )
        values = {str(v) for split in splits.values() for v in split[named[0]] if v}
        return cls(image, named[0], sorted(values), by_index=False)

    def index(
        self, splits: Any
    ) -> tuple[list[SourceImage], dict[str, tuple[str, int]], list[SkippedFile]]:
        """Every labelled row as an image, the row behind each name, and unlabelled rows."""
        images: list[SourceImage] = []
        rows: dict[str, tuple[str, int]] = {}
        skipped: list[SkippedFile] = []
        for split_name, split in splits.items():
            extra = [c for c in split.column_names if c not in (self.image, self.label)]
            extras = split.select_columns(extra).to_list() if extra else [{}] * len(split)
            paths = _image_paths(split, self.image)
            for index, value in enumerate(split[self.label]):
                name = _row_name(split_name, index, paths[index])
                label = self._label(value)
                if label is None:
                    skipped.append(SkippedFile(name, "the row has no label"))
                    continue
                metadata = {"sourceSplit": split_name, "sourceIndex": index}
                metadata |= {k: v for k, v in extras[index].items() if _is_plain(v)}
                images.append(SourceImage(name, label, split_from_folder(split_name), metadata))
                rows[name] = (split_name, index)
        return images, rows, skipped

    def _label(self, value: Any) -> str | None:
        if value is None:
            return None
        if not self.by_index:
            return str(value) or None
        # A negative class index (-1) marks an unlabelled row, as in ImageNet's test split.
        return self.classes[value] if 0 <= int(value) < len(self.classes) else None


def _preferred(candidates: list[str], preferred: tuple[str, ...]) -> str:
    return next((name for name in preferred if name in candidates), candidates[0])


def _image_paths(split: Any, column: str) -> list[str | None]:
    table = split.data.column(column)
    paths: list[str | None] = []
    for chunk in table.chunks:
        paths.extend(chunk.field("path").to_pylist())
    return paths


def _row_name(split_name: str, index: int, path: str | None) -> str:
    base = PurePosixPath(path).name if path else ""
    return f"{split_name}/{index:07d}" + (f"-{base}" if base else "")


def _is_plain(value: Any) -> bool:
    if isinstance(value, str | int | float | bool) or value is None:
        return True
    if isinstance(value, list | tuple):
        return len(value) <= 100 and all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return len(value) <= 100 and all(_is_plain(item) for item in value.values())
    return False


class _RowReader:
    """Reads one row's encoded image, from its bytes or from a file it names."""

    def __init__(
        self,
        splits: Any,
        column: str,
        rows: dict[str, tuple[str, int]],
        *,
        allowed: tuple[Path, ...],
    ) -> None:
        import datasets

        self._splits = {
            name: split.select_columns([column]).cast_column(column, datasets.Image(decode=False))
            for name, split in splits.items()
        }
        self._column = column
        self._rows = rows
        self._allowed = tuple(folder.resolve() for folder in allowed)

    def read(self, name: str) -> bytes:
        split_name, index = self._rows[name]
        value = self._splits[split_name][index][self._column] or {}
        if value.get("bytes"):
            return bytes(value["bytes"])
        path = value.get("path")
        if not path:
            raise InvalidImage(f"Row {name!r} holds no image")
        real = Path(path).resolve()
        if not any(real.is_relative_to(folder) for folder in self._allowed):
            raise InvalidImage(f"Row {name!r} names a file outside the dataset: {path!r}")
        return real.read_bytes()
