"""File sets: the named files an import reads, from a ZIP archive or a server folder.

A file set lists its members by relative POSIX name without reading them,
so the layout can be planned first, and then reads one member at a time.
ZIP members stream through :class:`kai.security.archives.SafeZip`, which
enforces the archive limits on the bytes actually decompressed; the archive
is never extracted to disk nor held in memory as a whole.

Folder imports are confined to ``settings.import_roots``: the requested path
is resolved (symbolic links included) before it is compared with the roots,
and links inside the folder are followed only when they stay inside it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol

from kai.config import Settings
from kai.datasets.layouts import SkippedFile
from kai.errors import InvalidInput, NotFound, PermissionDenied, TooLarge
from kai.security.archives import ArchiveEntry, ArchiveLimits, SafeZip, SkipReason

logger = logging.getLogger(__name__)


class FileSet(Protocol):
    """Named files to import; use as a context manager."""

    def names(self) -> list[str]:
        """Every member's relative POSIX name, in the order reads are cheapest."""

    @property
    def skipped(self) -> list[SkippedFile]:
        """Members left out while listing (links, unsafe names), with reasons."""

    def read(self, name: str) -> bytes:
        """A member's bytes, within the configured per-file limit."""

    def __enter__(self) -> FileSet: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class ZipFileSet:
    """The members of a ZIP archive, read through :class:`SafeZip`.

    Args:
        path: The archive.
        settings: Supplies the archive limits and the folder whose free space must
            hold what the archive expands to.
    """

    def __init__(self, path: Path, settings: Settings) -> None:
        self._path = path
        self._limits = ArchiveLimits.from_settings(settings)
        self._space_dir = settings.resolved_data_dir
        self._archive: SafeZip | None = None
        self._entries: dict[str, ArchiveEntry] = {}

    def __enter__(self) -> ZipFileSet:
        archive = SafeZip(self._path, self._limits, free_space_dir=self._space_dir)
        self._archive = archive.__enter__()
        self._entries = {entry.name: entry for entry in self._archive.entries}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._archive is not None:
            self._archive.__exit__(exc_type, exc, traceback)
            self._archive = None

    def names(self) -> list[str]:
        return list(self._entries)

    @property
    def skipped(self) -> list[SkippedFile]:
        archive = self._require_open()
        # Folder entries carry no data; listing them would bury the files that were skipped.
        return [
            SkippedFile(item.name, item.reason)
            for item in archive.skipped
            if item.reason is not SkipReason.DIRECTORY
        ]

    def read(self, name: str) -> bytes:
        archive = self._require_open()
        return b"".join(archive.iter_chunks(self._entries[name]))

    def _require_open(self) -> SafeZip:
        assert self._archive is not None, "use the file set as a context manager"
        return self._archive


class FolderFileSet:
    """The files below a server-side folder.

    Args:
        root: The folder, already resolved and checked with :func:`resolve_import_path`.
        max_file_bytes: Files larger than this are skipped with a reason.
        max_files: More files than this is an error, as for an archive.
    """

    def __init__(self, root: Path, *, max_file_bytes: int, max_files: int) -> None:
        self._root = root
        self._max_file_bytes = max_file_bytes
        self._max_files = max_files
        self._paths: dict[str, Path] = {}
        self._skipped: list[SkippedFile] = []

    def __enter__(self) -> FolderFileSet:
        for name, path, reason in self._walk():
            if reason:
                self._skipped.append(SkippedFile(name, reason))
            else:
                self._paths[name] = path
            if len(self._paths) + len(self._skipped) > self._max_files:
                raise TooLarge(
                    f"The folder {str(self._root)!r} holds more than {self._max_files} files, "
                    "the configured limit (KAI_MAX_ARCHIVE_ENTRIES)"
                )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def names(self) -> list[str]:
        return list(self._paths)

    @property
    def skipped(self) -> list[SkippedFile]:
        return list(self._skipped)

    def read(self, name: str) -> bytes:
        with open(self._paths[name], "rb") as source:
            data = source.read(self._max_file_bytes + 1)
        if len(data) > self._max_file_bytes:
            raise TooLarge(f"{name!r} grew past {self._max_file_bytes} bytes while being read")
        return data

    def _walk(self) -> Iterator[tuple[str, Path, str]]:
        for folder, dirs, files in os.walk(self._root):
            dirs.sort()
            base = Path(folder)
            for file_name in sorted(files):
                path = base / file_name
                name = path.relative_to(self._root).as_posix()
                yield name, path, self._reason_to_skip(path)

    def _reason_to_skip(self, path: Path) -> str:
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(self._root) or not target.is_file():
                return "symbolic link that leads outside the folder"
        try:
            size = path.stat().st_size
        except OSError as exc:
            return f"unreadable: {exc.strerror}"
        if size > self._max_file_bytes:
            return f"larger than the {self._max_file_bytes} bytes allowed per file"
        return ""


def resolve_import_path(path: str, settings: Settings) -> Path:
    """The real path of a server-side folder or file, if it lies under an import root.

    Raises:
        PermissionDenied: Folder imports are not configured.
        InvalidInput: The path is relative or outside every import root.
        NotFound: Nothing exists at the path.
    """
    if not settings.import_roots:
        raise PermissionDenied(
            "Importing from server folders is disabled; set KAI_IMPORT_ROOTS to the folders "
            "Kai may read"
        )
    requested = Path(path).expanduser()
    if not path.strip() or not requested.is_absolute():
        raise InvalidInput(f"The import path {path!r} must be an absolute path on the server")
    real = requested.resolve()
    roots = [root.expanduser().resolve() for root in settings.import_roots]
    if not any(real == root or real.is_relative_to(root) for root in roots):
        raise InvalidInput(
            f"The import path {path!r} is outside the allowed import roots "
            f"({', '.join(str(root) for root in roots)})",
            details={"path": path},
        )
    if not real.exists():
        raise NotFound(f"Nothing exists at the import path {path!r}")
    return real


def open_folder(root: Path, settings: Settings) -> FolderFileSet:
    """A file set over a resolved import folder with the configured limits."""
    if not root.is_dir():
        raise InvalidInput(f"The import path {str(root)!r} is not a folder")
    return FolderFileSet(
        root,
        max_file_bytes=settings.max_entry_bytes,
        max_files=settings.max_archive_entries,
    )
