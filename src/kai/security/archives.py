"""Reading untrusted ZIP archives one entry at a time, without extracting them.

Dataset uploads arrive as ZIP files from people Kai does not know. Nothing in
them is written to disk under its own name: :class:`SafeZip` checks the whole
archive when it opens, then streams each usable entry's bytes to the caller,
who hashes them straight into the blob store.

On open, before :mod:`zipfile` reads the central directory into memory, the
end-of-central-directory record is read by hand and the directory's records
are counted without being kept, so that an archive with too many entries, or
a central directory too big for its entry count, is refused cheaply. Then
every entry is judged: unsafe names (``..``, absolute paths, backslashes,
drive letters, control characters), links and special files, encryption,
unsupported compression, nested archives, duplicate names, declared sizes
and compression ratios, and local headers whose data overlaps another
entry's (the overlapping-entry bomb). Junk such as ``__MACOSX/``, hidden
files, ``Thumbs.db`` and folders is skipped and listed.

While streaming, the bytes actually inflated are counted against the
entry's declared size, the per-entry and total limits and the compression
ratio, and free space is checked every so often, so a header that lies
about sizes is caught after at most one chunk. Memory stays bounded by the
chunk size whatever the archive holds.

A :class:`SafeZip` is not thread-safe; entries may be read in any order.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, BinaryIO, NoReturn

from kai.config import Settings
from kai.errors import CorruptArchive, InsufficientStorage, InvalidInput, UnsafeArchive

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
READ_BYTES = 256 * 1024
# Ratios of small entries say nothing: a few kilobytes of zeros compress a thousandfold.
RATIO_FLOOR_BYTES = 1024 * 1024
FREE_SPACE_CHECK_BYTES = 64 * 1024 * 1024
# Room per central-directory record: fixed part, name (UTF-8, repeated in a
# Unicode-path extra field) and a generous allowance for other extra fields.
_RECORD_EXTRA_BYTES = 1024
_HEAD_BYTES = 512

_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_CENTRAL_RECORD_BYTES = 46
_MAX_COMMENT_BYTES = 65535

_STORED = zipfile.ZIP_STORED
_DEFLATED = zipfile.ZIP_DEFLATED
_METHOD_NAMES = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 99: "AES encryption"}
_NESTED_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
_SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini"})
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ArchiveRule(StrEnum):
    """The safety rule an archive broke; carried in ``details["rule"]``."""

    CORRUPT = "corrupt"
    TOO_MANY_ENTRIES = "too_many_entries"
    DIRECTORY_TOO_LARGE = "central_directory_too_large"
    MULTI_DISK = "multi_disk"
    CONTROL_CHARACTER = "control_character"
    NAME_TOO_LONG = "name_too_long"
    BACKSLASH = "backslash"
    ABSOLUTE_PATH = "absolute_path"
    DRIVE_LETTER = "drive_letter"
    PATH_TRAVERSAL = "path_traversal"
    DUPLICATE_NAME = "duplicate_name"
    LINK = "link"
    SPECIAL_FILE = "special_file"
    ENCRYPTED = "encrypted"
    UNSUPPORTED_COMPRESSION = "unsupported_compression"
    NESTED_ARCHIVE = "nested_archive"
    ENTRY_TOO_LARGE = "entry_too_large"
    TOTAL_TOO_LARGE = "total_too_large"
    COMPRESSION_RATIO = "compression_ratio"
    SIZE_MISMATCH = "size_mismatch"
    OVERLAPPING_ENTRIES = "overlapping_entries"
    EMPTY = "empty"


class SkipReason(StrEnum):
    """Why an entry was left out without failing the archive."""

    DIRECTORY = "directory"
    MACOS_METADATA = "macOS metadata (__MACOSX)"
    HIDDEN = "hidden file or folder"
    SYSTEM_FILE = "operating-system file"


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may hold.

    Attributes:
        max_entries: Entries in the central directory, usable or not.
        max_uncompressed_bytes: Bytes of all usable entries together.
        max_entry_bytes: Bytes of one entry.
        max_compression_ratio: Uncompressed over compressed size, per entry and overall.
        max_name_length: Characters in an entry's name.
        min_free_bytes: Free space to keep on top of the declared total.
    """

    max_entries: int
    max_uncompressed_bytes: int
    max_entry_bytes: int
    max_compression_ratio: float
    max_name_length: int
    min_free_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveLimits:
        """The limits configured by ``KAI_MAX_*`` and ``KAI_MIN_FREE_BYTES``."""
        return cls(
            max_entries=settings.max_archive_entries,
            max_uncompressed_bytes=settings.max_uncompressed_bytes,
            max_entry_bytes=settings.max_entry_bytes,
            max_compression_ratio=settings.max_compression_ratio,
            max_name_length=settings.max_name_length,
            min_free_bytes=settings.min_free_bytes,
        )


@dataclass(frozen=True)
class ArchiveEntry:
    """A usable file in the archive.

    Attributes:
        name: Normalised POSIX path inside the archive, such as ``tiles/a.jpg``.
        size: Declared uncompressed size in bytes (enforced while reading).
        info: The central-directory record.
    """

    name: str
    size: int
    info: zipfile.ZipInfo


@dataclass(frozen=True)
class SkippedEntry:
    """An entry left out, with the reason."""

    name: str
    reason: SkipReason


@dataclass(frozen=True)
class _EndRecord:
    entry_count: int
    directory_bytes: int
    directory_start: int
    disk_numbers: tuple[int, int]


class SafeZip:
    """A ZIP archive opened for safe, streaming reads.

    Args:
        path: The archive file.
        limits: What the archive may hold.
        free_space_dir: Where the entries' bytes will be stored; its free space
            must cover the declared total plus ``min_free_bytes``. None skips
            the check (a remote blob store).

    Raises (on ``with``):
        UnsafeArchive: An entry or the archive breaks a rule; ``details`` holds
            ``rule`` and, where one entry is to blame, ``entry``.
        CorruptArchive: The file is damaged or not a ZIP archive.
        InvalidInput: The archive holds no usable files.
        InsufficientStorage: Not enough free space for the declared total.
    """

    def __init__(self, path: Path, limits: ArchiveLimits, *, free_space_dir: Path | None) -> None:
        self.path = Path(path)
        self.limits = limits
        self.free_space_dir = free_space_dir
        self.entries: list[ArchiveEntry] = []
        self.skipped: list[SkippedEntry] = []
        self._handle: BinaryIO | None = None
        self._data_offsets: dict[str, int] = {}
        self._bytes_read = 0
        self._bytes_at_space_check = 0
        self._unpacked_bytes = 0
        self._unpacked_by_entry: dict[str, int] = {}

    def __enter__(self) -> SafeZip:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    @property
    def declared_bytes(self) -> int:
        """The declared uncompressed size of all usable entries."""
        return sum(entry.size for entry in self.entries)

    def open(self, entry: ArchiveEntry) -> IO[bytes]:
        """A file object over the entry's bytes, checked as :meth:`iter_chunks` does."""
        return io.BufferedReader(_ChunkReader(self.iter_chunks(entry)), buffer_size=CHUNK_BYTES)

    def iter_chunks(self, entry: ArchiveEntry) -> Iterator[bytes]:
        """The entry's bytes in chunks of at most ``CHUNK_BYTES``.

        Raises:
            UnsafeArchive: The entry inflates past its declared size or a limit,
                or turns out to be an archive itself.
            CorruptArchive: The data is truncated or fails its checksum.
            InsufficientStorage: Free space fell below ``min_free_bytes``.
        """
        meter = _EntryMeter(self, entry)
        head: bytearray | None = bytearray()
        for chunk in self._inflate(entry):
            meter.count(chunk)
            if head is not None:
                head += chunk
                if len(head) < _HEAD_BYTES:
                    continue
                chunk, head = bytes(head), None
                _refuse_nested_content(entry, chunk)
            yield chunk
        meter.finish()
        if head:
            _refuse_nested_content(entry, bytes(head))
            yield bytes(head)

    # Opening and judging the archive.

    def _open(self) -> None:
        self._handle = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        file_bytes = self.path.stat().st_size
        end = _read_end_record(self._handle, file_bytes)
        _check_end_record(end, self.limits)
        _count_directory_records(self._handle, end, self.limits)
        infos = _read_central_directory(self._handle)
        if len(infos) > self.limits.max_entries:
            _refuse_entry_count(f"{len(infos)} entries", self.limits)

        self._judge_entries(infos)
        self._check_local_headers(infos, end.directory_start)
        self._check_totals(file_bytes)
        self._check_free_space(self.declared_bytes + self.limits.min_free_bytes)
        if not self.entries:
            _refuse_empty(self.skipped)
        logger.debug(
            "Opened archive %s: %d entries, %d skipped",
            self.path.name,
            len(self.entries),
            len(self.skipped),
        )

    def _judge_entries(self, infos: list[zipfile.ZipInfo]) -> None:
        seen: set[str] = set()
        for info in infos:
            name = _normalised_name(info, self.limits)
            reason = _skip_reason(name, info)
            if reason is not None:
                self.skipped.append(SkippedEntry(name or info.orig_filename, reason))
                continue
            _check_entry(name, info, self.limits)
            if name in seen:
                _refuse("it appears twice in the archive", name, ArchiveRule.DUPLICATE_NAME)
            seen.add(name)
            self.entries.append(ArchiveEntry(name=name, size=info.file_size, info=info))

    def _check_local_headers(self, infos: list[zipfile.ZipInfo], directory_start: int) -> None:
        """Refuse entries whose header and data overlap another's; note where data starts."""
        assert self._handle is not None
        previous_end, previous_name = 0, ""
        for info in sorted(infos, key=lambda item: item.header_offset):
            name = info.orig_filename
            if not 0 <= info.header_offset <= directory_start - _LOCAL_HEADER.size:
                _refuse_corrupt(f"entry {name!r} points outside the archive")
            if info.header_offset < previous_end:
                _refuse(
                    f"its data overlaps entry {name!r} (an overlapping-entry zip bomb); "
                    "the archive is malformed or malicious",
                    previous_name,
                    ArchiveRule.OVERLAPPING_ENTRIES,
                )
            data_start = _read_local_header(self._handle, info)
            previous_end, previous_name = data_start + info.compress_size, name
            if previous_end > directory_start:
                _refuse_corrupt(f"entry {name!r} runs past the archive's data")
            self._data_offsets[name] = data_start

    def _check_totals(self, file_bytes: int) -> None:
        total = self.declared_bytes
        limit = self.limits.max_uncompressed_bytes
        if total > limit:
            raise UnsafeArchive(
                f"The archive unpacks to {_format_bytes(total)}, over the limit of "
                f"{_format_bytes(limit)} (KAI_MAX_UNCOMPRESSED_BYTES); split it into smaller "
                "archives",
                details={"rule": ArchiveRule.TOTAL_TOO_LARGE, "bytes": total, "limit": limit},
            )
        ratio = total / max(file_bytes, 1)
        if total > RATIO_FLOOR_BYTES and ratio > self.limits.max_compression_ratio:
            raise UnsafeArchive(
                f"The archive unpacks to {ratio:.0f} times its size, over the limit of "
                f"{self.limits.max_compression_ratio:.0f} (KAI_MAX_COMPRESSION_RATIO); "
                "it looks like a zip bomb",
                details={"rule": ArchiveRule.COMPRESSION_RATIO, "ratio": ratio},
            )

    def _check_free_space(self, needed_bytes: int) -> None:
        self._bytes_at_space_check = self._bytes_read
        if self.free_space_dir is None:
            return
        free = shutil.disk_usage(_existing_folder(self.free_space_dir)).free
        if free < needed_bytes:
            raise InsufficientStorage(
                f"Reading the archive needs {_format_bytes(needed_bytes)} free in "
                f"{self.free_space_dir}, including {_format_bytes(self.limits.min_free_bytes)} "
                f"to spare (KAI_MIN_FREE_BYTES), but only {_format_bytes(free)} is free",
                details={"needed": needed_bytes, "free": free},
            )

    # Streaming one entry.

    def _account(self, entry_name: str, entry_bytes: int, chunk_bytes: int) -> None:
        """Count inflated bytes against the archive's total and check free space now and then.

        The total counts each entry once, by the most of it read so far, so
        reading an entry twice does not count against the limit twice.
        """
        counted = self._unpacked_by_entry.get(entry_name, 0)
        if entry_bytes > counted:
            self._unpacked_by_entry[entry_name] = entry_bytes
            self._unpacked_bytes += entry_bytes - counted
        if self._unpacked_bytes > self.limits.max_uncompressed_bytes:
            _refuse_total_read(entry_name, self.limits)

        self._bytes_read += chunk_bytes
        if self._bytes_read - self._bytes_at_space_check > FREE_SPACE_CHECK_BYTES:
            self._check_free_space(self.limits.min_free_bytes)

    def _inflate(self, entry: ArchiveEntry) -> Iterator[bytes]:
        if self._handle is None:
            raise RuntimeError("The archive is closed; read entries inside its 'with' block")
        handle = self._handle
        offset = self._data_offsets[entry.info.orig_filename]
        remaining = entry.info.compress_size
        inflater = zlib.decompressobj(-zlib.MAX_WBITS) if entry.info.compress_type else None
        while remaining > 0:
            handle.seek(offset)
            raw = handle.read(min(READ_BYTES, remaining))
            if not raw:
                _refuse_corrupt(f"entry {entry.name!r} is truncated")
            offset += len(raw)
            remaining -= len(raw)
            if inflater is None:
                yield raw
                continue
            yield from _inflate_piece(inflater, raw, entry)
            if inflater.eof:
                return
        if inflater is not None and not inflater.eof:
            _refuse_corrupt(f"entry {entry.name!r} ends before its compressed data does")


class _EntryMeter:
    """Counts an entry's inflated bytes against its declared size and the limits."""

    def __init__(self, archive: SafeZip, entry: ArchiveEntry) -> None:
        self.archive = archive
        self.entry = entry
        self.limits = archive.limits
        self.num_bytes = 0
        self.crc = 0

    def count(self, chunk: bytes) -> None:
        self.num_bytes += len(chunk)
        self.crc = zlib.crc32(chunk, self.crc)
        self.archive._account(self.entry.name, self.num_bytes, len(chunk))
        name = self.entry.name
        if self.num_bytes > self.entry.size:
            _refuse(
                f"it inflates past its declared size of {self.entry.size} bytes "
                "(a forged size header)",
                name,
                ArchiveRule.SIZE_MISMATCH,
            )
        if self.num_bytes > self.limits.max_entry_bytes:
            _refuse_entry_size(name, self.num_bytes, self.limits)
        self._check_ratio()

    def _check_ratio(self) -> None:
        ratio = self.num_bytes / max(self.entry.info.compress_size, 1)
        if self.num_bytes > RATIO_FLOOR_BYTES and ratio > self.limits.max_compression_ratio:
            _refuse_ratio(self.entry.name, ratio, self.limits)

    def finish(self) -> None:
        if self.num_bytes != self.entry.size:
            _refuse(
                f"it holds {self.num_bytes} bytes, not the {self.entry.size} bytes "
                "its header declares",
                self.entry.name,
                ArchiveRule.SIZE_MISMATCH,
            )
        if self.crc != self.entry.info.CRC:
            _refuse_corrupt(f"entry {self.entry.name!r} fails its CRC-32 check")


class _ChunkReader(io.RawIOBase):
    """A raw, read-only file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._chunk:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._chunk = memoryview(chunk)
        target = memoryview(buffer).cast("B")
        size = min(len(target), len(self._chunk))
        target[:size] = self._chunk[:size]
        self._chunk = self._chunk[size:]
        return size

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


def _inflate_piece(inflater: zlib._Decompress, raw: bytes, entry: ArchiveEntry) -> Iterator[bytes]:
    """Inflate one piece of compressed input, at most ``CHUNK_BYTES`` at a time."""
    try:
        data = inflater.decompress(raw, CHUNK_BYTES)
        while True:
            if data:
                yield data
            if not inflater.unconsumed_tail or inflater.eof:
                return
            data = inflater.decompress(inflater.unconsumed_tail, CHUNK_BYTES)
    except zlib.error as exc:
        raise CorruptArchive(
            f"Archive entry {entry.name!r} has damaged compressed data ({exc})",
            details={"rule": ArchiveRule.CORRUPT, "entry": entry.name},
        ) from exc


# The end-of-central-directory record and the central directory.


def _read_end_record(handle: BinaryIO, file_bytes: int) -> _EndRecord:
    """Find and read the end record (ZIP64 aware) without parsing the directory."""
    tail_bytes = min(file_bytes, _EOCD.size + _MAX_COMMENT_BYTES)
    handle.seek(file_bytes - tail_bytes)
    tail = handle.read(tail_bytes)
    position = _find_end_signature(tail)
    if position < 0:
        _refuse_corrupt("the file is not a ZIP archive (no end-of-central-directory record)")
    fields = _EOCD.unpack_from(tail, position)
    _, disk, directory_disk, _, entry_count, directory_bytes, directory_offset, _ = fields
    record_offset = file_bytes - tail_bytes + position
    if entry_count == 0xFFFF or 0xFFFFFFFF in (directory_bytes, directory_offset):
        zip64 = _read_zip64_end_record(handle, record_offset)
        if zip64 is not None:
            return zip64
    return _EndRecord(
        entry_count=entry_count,
        directory_bytes=directory_bytes,
        directory_start=record_offset - directory_bytes,
        disk_numbers=(disk, directory_disk),
    )


def _find_end_signature(tail: bytes) -> int:
    position = len(tail)
    while (position := tail.rfind(b"PK\x05\x06", 0, position)) >= 0:
        if position + _EOCD.size <= len(tail):
            comment_bytes = _EOCD.unpack_from(tail, position)[-1]
            if position + _EOCD.size + comment_bytes <= len(tail):
                return position
    return -1


def _read_zip64_end_record(handle: BinaryIO, record_offset: int) -> _EndRecord | None:
    """The ZIP64 end record, or None when the archive has none (exactly 65535 entries)."""
    locator_offset = record_offset - _EOCD64_LOCATOR.size
    if locator_offset < _EOCD64.size:
        return None
    handle.seek(locator_offset)
    signature, _, _, _ = _EOCD64_LOCATOR.unpack(handle.read(_EOCD64_LOCATOR.size))
    if signature != b"PK\x06\x07":
        return None
    zip64_offset = locator_offset - _EOCD64.size
    handle.seek(zip64_offset)
    fields = _EOCD64.unpack(handle.read(_EOCD64.size))
    if fields[0] != b"PK\x06\x06":
        _refuse_corrupt("its ZIP64 end record is damaged")
    _, _, _, _, disk, directory_disk, _, entry_count, directory_bytes, _ = fields
    return _EndRecord(
        entry_count=entry_count,
        directory_bytes=directory_bytes,
        directory_start=zip64_offset - directory_bytes,
        disk_numbers=(disk, directory_disk),
    )


def _check_end_record(end: _EndRecord, limits: ArchiveLimits) -> None:
    if end.disk_numbers != (0, 0):
        raise UnsafeArchive(
            "The archive is split across several files; join the parts into one ZIP file",
            details={"rule": ArchiveRule.MULTI_DISK},
        )
    if end.entry_count > limits.max_entries:
        _refuse_entry_count(f"{end.entry_count} entries", limits)
    if end.directory_start < 0:
        _refuse_corrupt("its central directory starts before the file does")


def _count_directory_records(handle: BinaryIO, end: _EndRecord, limits: ArchiveLimits) -> int:
    """Walk the central directory's records without keeping them.

    The end record's 16-bit count can understate; this bounds what
    :mod:`zipfile` will hold in memory before it parses anything.
    """
    handle.seek(end.directory_start)
    position = count = 0
    while position < end.directory_bytes:
        fixed = handle.read(_CENTRAL_RECORD_BYTES)
        if len(fixed) < _CENTRAL_RECORD_BYTES or not fixed.startswith(b"PK\x01\x02"):
            _refuse_corrupt("its central directory is damaged")
        variable_bytes = sum(struct.unpack_from("<3H", fixed, 28))
        handle.seek(variable_bytes, io.SEEK_CUR)
        position += _CENTRAL_RECORD_BYTES + variable_bytes
        count += 1
        if count > limits.max_entries:
            _refuse_entry_count(f"more than {limits.max_entries} entries", limits)

    record_budget = _CENTRAL_RECORD_BYTES + 8 * limits.max_name_length + _RECORD_EXTRA_BYTES
    if end.directory_bytes > max(count, 1) * record_budget:
        raise UnsafeArchive(
            f"The archive's central directory takes {_format_bytes(end.directory_bytes)} "
            f"for {count} entries; the archive is malformed or malicious",
            details={"rule": ArchiveRule.DIRECTORY_TOO_LARGE, "bytes": end.directory_bytes},
        )
    return count


def _read_central_directory(handle: BinaryIO) -> list[zipfile.ZipInfo]:
    try:
        with zipfile.ZipFile(handle) as archive:
            return archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise CorruptArchive(
            f"The archive is damaged: {exc}", details={"rule": ArchiveRule.CORRUPT}
        ) from exc


def _read_local_header(handle: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Check the entry's local header and return where its data starts."""
    name = info.orig_filename
    handle.seek(info.header_offset)
    fields = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
    if fields[0] != b"PK\x03\x04":
        _refuse_corrupt(f"entry {name!r} has no local header where the directory says")
    name_bytes, extra_bytes = int(fields[-2]), int(fields[-1])
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if handle.read(name_bytes) != name.encode(encoding):
        _refuse_corrupt(f"entry {name!r} has a different name in its local header")
    return info.header_offset + _LOCAL_HEADER.size + name_bytes + extra_bytes


# Judging one entry.


def _normalised_name(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str:
    """The entry's safe POSIX path, or an UnsafeArchive naming the rule it breaks."""
    raw = info.orig_filename
    if _CONTROL.search(raw):
        _refuse("its name holds control characters", raw, ArchiveRule.CONTROL_CHARACTER)
    if len(raw) > limits.max_name_length:
        _refuse(
            f"its name is {len(raw)} characters long, over the limit of "
            f"{limits.max_name_length} (KAI_MAX_NAME_LENGTH)",
            raw[:80] + "...",
            ArchiveRule.NAME_TOO_LONG,
        )
    if "\\" in raw:
        _refuse("its name holds a backslash; ZIP paths use '/'", raw, ArchiveRule.BACKSLASH)
    if raw.startswith("/"):
        _refuse("it has an absolute path", raw, ArchiveRule.ABSOLUTE_PATH)
    if _DRIVE_LETTER.match(raw):
        _refuse("it has a Windows drive letter", raw, ArchiveRule.DRIVE_LETTER)
    parts = raw.split("/")
    if ".." in parts:
        _refuse("its path climbs out of the archive with '..'", raw, ArchiveRule.PATH_TRAVERSAL)
    return "/".join(part for part in parts if part not in ("", "."))


def _skip_reason(name: str, info: zipfile.ZipInfo) -> SkipReason | None:
    parts = name.split("/")
    if not name or info.orig_filename.endswith("/"):
        return SkipReason.DIRECTORY
    if "__MACOSX" in parts:
        return SkipReason.MACOS_METADATA
    if any(part.startswith(".") for part in parts):
        return SkipReason.HIDDEN
    if parts[-1].lower() in _SYSTEM_FILES:
        return SkipReason.SYSTEM_FILE
    if stat.S_ISDIR(info.external_attr >> 16):
        return SkipReason.DIRECTORY
    return None


def _check_entry(name: str, info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        _refuse("it is a symbolic link", name, ArchiveRule.LINK)
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        _refuse("it is a device, pipe or socket, not a file", name, ArchiveRule.SPECIAL_FILE)
    if info.flag_bits & 0x41 or info.compress_type == 99:
        _refuse(
            "it is encrypted; upload an archive without a password", name, ArchiveRule.ENCRYPTED
        )
    if info.compress_type not in (_STORED, _DEFLATED):
        method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        _refuse(
            f"it is compressed with {method}; re-create the archive with standard "
            "ZIP (Deflate) compression",
            name,
            ArchiveRule.UNSUPPORTED_COMPRESSION,
        )
    if name.lower().endswith(_NESTED_SUFFIXES):
        _refuse_nested(name, "its name")
    _check_entry_sizes(name, info, limits)


def _check_entry_sizes(name: str, info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    if info.file_size > limits.max_entry_bytes:
        _refuse_entry_size(name, info.file_size, limits)
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_FLOOR_BYTES and ratio > limits.max_compression_ratio:
        _refuse_ratio(name, ratio, limits)
    if info.compress_type == _STORED and info.compress_size != info.file_size:
        _refuse(
            "it is stored uncompressed but declares two different sizes",
            name,
            ArchiveRule.SIZE_MISMATCH,
        )


def _refuse_nested_content(entry: ArchiveEntry, head: bytes) -> None:
    kind = _sniff_archive(head)
    if kind is not None:
        _refuse_nested(entry.name, f"its content ({kind})")


def _sniff_archive(head: bytes) -> str | None:
    """The kind of archive or compressed stream ``head`` starts, if any."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "ZIP"
    if head.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    if head.startswith(b"BZh") and head[4:10] == b"1AY&SY":
        return "bzip2"
    signatures = {
        b"\xfd7zXZ\x00": "xz",
        b"7z\xbc\xaf\x27\x1c": "7-Zip",
        b"Rar!\x1a\x07": "RAR",
        b"\x28\xb5\x2f\xfd": "Zstandard",
    }
    for magic, kind in signatures.items():
        if head.startswith(magic):
            return kind
    if head[257:262] == b"ustar":
        return "tar"
    return None


# Refusals: each names the entry, the rule and what to do.


def _refuse(problem: str, entry: str, rule: ArchiveRule) -> NoReturn:
    raise UnsafeArchive(
        f"Archive entry {entry!r} is refused: {problem}",
        details={"rule": rule, "entry": entry},
    )


def _refuse_corrupt(problem: str) -> NoReturn:
    raise CorruptArchive(
        f"The archive is damaged: {problem}", details={"rule": ArchiveRule.CORRUPT}
    )


def _refuse_nested(entry: str, evidence: str) -> NoReturn:
    _refuse(
        f"{evidence} shows it is an archive inside the archive; unpack it and upload "
        "its files instead",
        entry,
        ArchiveRule.NESTED_ARCHIVE,
    )


def _refuse_entry_count(count: str, limits: ArchiveLimits) -> NoReturn:
    raise UnsafeArchive(
        f"The archive has {count}, over the limit of {limits.max_entries} "
        "(KAI_MAX_ARCHIVE_ENTRIES); split it into smaller archives",
        details={"rule": ArchiveRule.TOO_MANY_ENTRIES},
    )


def _refuse_entry_size(entry: str, num_bytes: int, limits: ArchiveLimits) -> NoReturn:
    _refuse(
        f"it holds {_format_bytes(num_bytes)}, over the limit of "
        f"{_format_bytes(limits.max_entry_bytes)} per file (KAI_MAX_ENTRY_BYTES)",
        entry,
        ArchiveRule.ENTRY_TOO_LARGE,
    )


def _refuse_total_read(entry: str, limits: ArchiveLimits) -> NoReturn:
    _refuse(
        f"reading it takes the archive past {_format_bytes(limits.max_uncompressed_bytes)} "
        "unpacked (KAI_MAX_UNCOMPRESSED_BYTES)",
        entry,
        ArchiveRule.TOTAL_TOO_LARGE,
    )


def _refuse_ratio(entry: str, ratio: float, limits: ArchiveLimits) -> NoReturn:
    _refuse(
        f"it inflates {ratio:.0f} times, over the compression-ratio limit of "
        f"{limits.max_compression_ratio:.0f} (KAI_MAX_COMPRESSION_RATIO); it looks like "
        "a zip bomb",
        entry,
        ArchiveRule.COMPRESSION_RATIO,
    )


def _refuse_empty(skipped: list[SkippedEntry]) -> NoReturn:
    what = "nothing at all"
    if skipped:
        reasons = sorted({str(item.reason) for item in skipped})
        what = f"only skipped entries ({', '.join(reasons)})"
    raise InvalidInput(
        f"The archive holds no usable files, {what}; add the images and upload it again",
        details={"rule": ArchiveRule.EMPTY, "skipped": len(skipped)},
    )


def _existing_folder(path: Path) -> Path:
    """``path`` or its nearest existing parent, whose file system it will live on."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _format_bytes(num_bytes: int) -> str:
    if num_bytes < 1024:
        return f"{num_bytes} bytes"
    size = num_bytes / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
