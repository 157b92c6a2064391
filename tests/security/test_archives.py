"""SafeZip refuses hostile archives with a message naming the problem, and reads good ones."""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kai.config import Settings
from kai.errors import CorruptArchive, InsufficientStorage, InvalidInput, UnsafeArchive
from kai.security import archives
from kai.security.archives import ArchiveLimits, ArchiveRule, SafeZip, SkipReason

LOCAL_HEADER = struct.Struct("<4s5H3L2H")
CENTRAL_RECORD = struct.Struct("<4s6H3L5H2L")
END_RECORD = struct.Struct("<4s4H2LH")


@pytest.fixture
def limits() -> ArchiveLimits:
    return ArchiveLimits.from_settings(Settings())


@pytest.fixture
def upload_dir(tmp_path: Path) -> Path:
    """The folder archives are written to; the test checks nothing else appears anywhere."""
    path = tmp_path / "upload"
    path.mkdir()
    return path


def make_zip(path: Path, members: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def open_zip(path: Path, limits: ArchiveLimits) -> SafeZip:
    return SafeZip(path, limits, free_space_dir=path.parent)


def read_all(path: Path, limits: ArchiveLimits) -> dict[str, bytes]:
    with open_zip(path, limits) as archive:
        return {entry.name: b"".join(archive.iter_chunks(entry)) for entry in archive.entries}


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*")}


def central_records(data: bytes) -> Iterator[tuple[int, str]]:
    """The offset and name of each central-directory record."""
    end = data.rindex(b"PK\x05\x06")
    _, _, _, _, count, _, start, _ = END_RECORD.unpack_from(data, end)
    offset = start
    for _ in range(count):
        fields = CENTRAL_RECORD.unpack_from(data, offset)
        name_bytes, extra_bytes, comment_bytes = fields[10], fields[11], fields[12]
        name = data[offset + 46 : offset + 46 + name_bytes].decode()
        yield offset, name
        offset += 46 + name_bytes + extra_bytes + comment_bytes


def patch_entry(path: Path, name: str, **fields: int) -> None:
    """Overwrite header fields (flags, file_size) of one entry in both of its headers."""
    data = bytearray(path.read_bytes())
    local_positions = {"flags": 6, "file_size": 22}
    central_positions = {"flags": 8, "file_size": 24}
    formats = {"flags": "<H", "file_size": "<L"}
    for offset, record_name in list(central_records(bytes(data))):
        if record_name != name:
            continue
        local = struct.unpack_from("<L", data, offset + 42)[0]
        for field, value in fields.items():
            struct.pack_into(formats[field], data, offset + central_positions[field], value)
            struct.pack_into(formats[field], data, local + local_positions[field], value)
    path.write_bytes(bytes(data))


def assert_refused(
    path: Path,
    limits: ArchiveLimits,
    rule: ArchiveRule,
    *words: str,
    error: type[Exception] = UnsafeArchive,
) -> None:
    """Opening and reading the archive fails with ``error`` naming ``words``; nothing is written."""
    before = files_under(path.parent.parent)
    with pytest.raises(error) as caught:
        read_all(path, limits)
    message = str(caught.value)
    for word in words:
        assert word in message
    assert caught.value.details["rule"] == rule  # type: ignore[attr-defined]
    assert files_under(path.parent.parent) == before


@pytest.mark.parametrize(
    ("name", "rule", "word"),
    [
        ("../escaped.jpg", ArchiveRule.PATH_TRAVERSAL, ".."),
        ("tiles/../../escaped.jpg", ArchiveRule.PATH_TRAVERSAL, ".."),
        ("/tmp/escaped.jpg", ArchiveRule.ABSOLUTE_PATH, "absolute"),
        ("tiles\\..\\..\\escaped.jpg", ArchiveRule.BACKSLASH, "backslash"),
        ("C:/Windows/escaped.jpg", ArchiveRule.DRIVE_LETTER, "drive letter"),
        ("tiles/bad\x07name.jpg", ArchiveRule.CONTROL_CHARACTER, "control characters"),
    ],
    ids=["dot-dot", "nested-dot-dot", "absolute", "backslash", "drive-letter", "control"],
)
def test_refuses_unsafe_entry_names(
    upload_dir: Path, limits: ArchiveLimits, name: str, rule: ArchiveRule, word: str
) -> None:
    path = make_zip(upload_dir / "names.zip", {"tiles/ok.jpg": b"fine", name: b"payload"})

    assert_refused(path, limits, rule, repr(name), word)

    assert not (upload_dir.parent / "escaped.jpg").exists()
    assert not Path("/tmp/escaped.jpg").exists()


def test_refuses_names_over_the_length_limit(upload_dir: Path, limits: ArchiveLimits) -> None:
    name = "tiles/" + "a" * 300 + ".jpg"
    path = make_zip(upload_dir / "long.zip", {name: b"x"})

    assert_refused(path, limits, ArchiveRule.NAME_TOO_LONG, "310 characters", "255")


def test_refuses_symlink_entries(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = upload_dir / "link.zip"
    link = zipfile.ZipInfo("tiles/passwd.jpg")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("tiles/ok.jpg", b"fine")
        archive.writestr(link, "/etc/passwd")

    assert_refused(path, limits, ArchiveRule.LINK, "'tiles/passwd.jpg'", "symbolic link")


def test_refuses_encrypted_entries(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "secret.zip", {"tiles/a.jpg": b"secret"})
    patch_entry(path, "tiles/a.jpg", flags=0x1)

    assert_refused(path, limits, ArchiveRule.ENCRYPTED, "'tiles/a.jpg'", "encrypted")


def test_refuses_unsupported_compression(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "bz.zip", {"tiles/a.jpg": b"data"}, method=zipfile.ZIP_BZIP2)

    assert_refused(path, limits, ArchiveRule.UNSUPPORTED_COMPRESSION, "bzip2", "Deflate")


def test_refuses_high_ratio_bomb(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "bomb.zip", {"tiles/zeros.jpg": bytes(50 * 1024 * 1024)})
    assert path.stat().st_size < 1024 * 1024

    assert_refused(path, limits, ArchiveRule.COMPRESSION_RATIO, "'tiles/zeros.jpg'", "zip bomb")


def test_refuses_archive_over_total_limit(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "big.zip", {"a.jpg": os.urandom(6000), "b.jpg": os.urandom(6000)})
    small = ArchiveLimits(**{**limits.__dict__, "max_uncompressed_bytes": 10_000})

    assert_refused(path, small, ArchiveRule.TOTAL_TOO_LARGE, "KAI_MAX_UNCOMPRESSED_BYTES")


def test_refuses_entry_over_size_limit(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "big.zip", {"a.jpg": os.urandom(6000)})
    small = ArchiveLimits(**{**limits.__dict__, "max_entry_bytes": 5000})

    assert_refused(path, small, ArchiveRule.ENTRY_TOO_LARGE, "'a.jpg'", "KAI_MAX_ENTRY_BYTES")


def overlapping_zip(path: Path) -> Path:
    """Entry ``outer.jpg`` stores bytes that are themselves entry ``inner.jpg``'s header and data.

    Both central-directory records point into the same stretch of the file, the
    trick behind overlapping-entry bombs.
    """
    inner_data = b"inner bytes"
    crc = zipfile.crc32(inner_data)
    inner = (
        LOCAL_HEADER.pack(
            b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(inner_data), len(inner_data), 9, 0
        )
        + b"inner.jpg"
        + inner_data
    )
    outer_crc = zipfile.crc32(inner)
    outer_header = LOCAL_HEADER.pack(
        b"PK\x03\x04", 20, 0, 0, 0, 0, outer_crc, len(inner), len(inner), 9, 0
    )
    body = outer_header + b"outer.jpg" + inner
    inner_offset = len(outer_header) + 9
    records = [
        (b"outer.jpg", outer_crc, len(inner), 0),
        (b"inner.jpg", crc, len(inner_data), inner_offset),
    ]
    directory = b"".join(
        CENTRAL_RECORD.pack(
            b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc_, size, size, len(name), 0, 0, 0, 0, 0, offset
        )
        + name
        for name, crc_, size, offset in records
    )
    end = END_RECORD.pack(b"PK\x05\x06", 0, 0, 2, 2, len(directory), len(body), 0)
    path.write_bytes(body + directory + end)
    return path


def test_refuses_overlapping_entries(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = overlapping_zip(upload_dir / "overlap.zip")
    assert sorted(zipfile.ZipFile(path).namelist()) == ["inner.jpg", "outer.jpg"]

    assert_refused(
        path, limits, ArchiveRule.OVERLAPPING_ENTRIES, "'outer.jpg'", "'inner.jpg'", "overlap"
    )


def test_refuses_two_records_for_one_local_header(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "twice.zip", {"a.jpg": os.urandom(100), "b.jpg": os.urandom(100)})
    data = bytearray(path.read_bytes())
    second = list(central_records(bytes(data)))[1][0]
    struct.pack_into("<L", data, second + 42, 0)
    path.write_bytes(bytes(data))

    assert_refused(path, limits, ArchiveRule.OVERLAPPING_ENTRIES, "'a.jpg'", "'b.jpg'")


def test_refuses_size_header_that_understates(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "liar.zip", {"tiles/a.jpg": os.urandom(200_000)})
    patch_entry(path, "tiles/a.jpg", file_size=1000)
    with open_zip(path, limits) as archive:
        assert archive.entries[0].size == 1000

    assert_refused(path, limits, ArchiveRule.SIZE_MISMATCH, "'tiles/a.jpg'", "declared size")


def test_refuses_size_header_that_overstates(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "liar.zip", {"tiles/a.jpg": os.urandom(2000)})
    patch_entry(path, "tiles/a.jpg", file_size=3000)

    assert_refused(path, limits, ArchiveRule.SIZE_MISMATCH, "'tiles/a.jpg'", "3000 bytes")


def test_stream_stops_a_lying_entry_within_one_chunk(
    upload_dir: Path, limits: ArchiveLimits
) -> None:
    path = make_zip(upload_dir / "liar.zip", {"a.jpg": os.urandom(5 * archives.CHUNK_BYTES)})
    patch_entry(path, "a.jpg", file_size=10)
    received = 0
    with open_zip(path, limits) as archive, pytest.raises(UnsafeArchive):
        for chunk in archive.iter_chunks(archive.entries[0]):
            received += len(chunk)

    assert received == 0


def test_refuses_damaged_data(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "crc.zip", {"a.jpg": b"A" * 100}, method=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    path.write_bytes(bytes(data))

    assert_refused(path, limits, ArchiveRule.CORRUPT, "'a.jpg'", "CRC", error=CorruptArchive)


def test_refuses_damaged_deflate_stream(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "zlib.zip", {"a.jpg": b"abc" * 10_000})
    data = bytearray(path.read_bytes())
    data[40:60] = b"\xff" * 20
    path.write_bytes(bytes(data))

    assert_refused(path, limits, ArchiveRule.CORRUPT, "'a.jpg'", error=CorruptArchive)


@pytest.mark.parametrize(
    "content",
    [b"", b"plain text, not an archive", b"PK\x03\x04 truncated"],
    ids=["empty-file", "text", "truncated"],
)
def test_refuses_files_that_are_not_zip(
    upload_dir: Path, limits: ArchiveLimits, content: bytes
) -> None:
    path = upload_dir / "not.zip"
    path.write_bytes(content)

    assert_refused(path, limits, ArchiveRule.CORRUPT, "not a ZIP archive", error=CorruptArchive)


def test_refuses_truncated_archive(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "cut.zip", {"a.jpg": os.urandom(5000), "b.jpg": os.urandom(10)})
    data = path.read_bytes()
    path.write_bytes(data[:2000] + data[-200:])

    with pytest.raises(CorruptArchive, match="damaged"):
        read_all(path, limits)


def million_entry_zip(path: Path, num_entries: int = 1_000_000, *, zip64: bool = True) -> Path:
    """A real ZIP of empty stored entries ``f0000000``..., built with numpy for speed.

    Past 65535 entries a writer adds a ZIP64 end record holding the true count;
    without it (``zip64=False``) only the saturated 16-bit count remains.
    """
    digits = (np.arange(num_entries)[:, None] // 10 ** np.arange(6, -1, -1)) % 10 + ord("0")
    names = np.hstack([np.full((num_entries, 1), ord("f")), digits]).astype(np.uint8)
    names = names.view("V8").ravel()
    local_type = [("head", "V26"), ("name_len", "<u2"), ("extra_len", "<u2"), ("name", "V8")]
    local = np.zeros(num_entries, dtype=local_type)
    header = LOCAL_HEADER.pack(b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    local["head"], local["name_len"], local["name"] = np.frombuffer(header[:26], "V26"), 8, names
    central_type = [("head", "V28"), ("name_len", "<u2"), ("rest", "V12"), ("offset", "<u4")]
    central = np.zeros(num_entries, dtype=[*central_type, ("name", "V8")])
    record = CENTRAL_RECORD.pack(b"PK\x01\x02", 20, 20, *[0] * 14)
    central["head"], central["name_len"], central["name"] = (
        np.frombuffer(record[:28], "V28"),
        8,
        names,
    )
    central["offset"] = np.arange(num_entries, dtype=np.uint32) * local.itemsize

    directory = central.tobytes()
    start, size = local.nbytes, len(directory)
    tail = b""
    if zip64 and num_entries > 0xFFFF:
        record64 = struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, num_entries, num_entries, size, start
        )
        locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, start + size, 1)
        tail = record64 + locator
    count = min(num_entries, 0xFFFF)
    end = END_RECORD.pack(b"PK\x05\x06", 0, 0, count, count, size, start, 0)
    path.write_bytes(local.tobytes() + directory + tail + end)
    return path


def test_million_entry_helper_makes_real_archives(upload_dir: Path) -> None:
    small = million_entry_zip(upload_dir / "few.zip", num_entries=3)
    assert zipfile.ZipFile(small).namelist() == ["f0000000", "f0000001", "f0000002"]
    zip64 = million_entry_zip(upload_dir / "zip64.zip", num_entries=70_000)
    assert len(zipfile.ZipFile(zip64).infolist()) == 70_000


@pytest.mark.parametrize("zip64", [True, False], ids=["zip64-count", "saturated-16-bit-count"])
def test_refuses_a_million_entries_before_parsing_the_directory(
    upload_dir: Path, limits: ArchiveLimits, monkeypatch: pytest.MonkeyPatch, zip64: bool
) -> None:
    path = million_entry_zip(upload_dir / "many.zip", zip64=zip64)

    def parse_forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the central directory was parsed")

    monkeypatch.setattr(archives.zipfile, "ZipFile", parse_forbidden)
    assert_refused(path, limits, ArchiveRule.TOO_MANY_ENTRIES, "entries", "200000")


def test_refuses_too_many_entries_by_end_record(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "many.zip", {f"tiles/{i}.jpg": b"x" for i in range(20)})
    few = ArchiveLimits(**{**limits.__dict__, "max_entries": 10})

    assert_refused(path, few, ArchiveRule.TOO_MANY_ENTRIES, "20 entries", "KAI_MAX_ARCHIVE_ENTRIES")


def test_refuses_too_many_entries_when_end_record_understates(
    upload_dir: Path, limits: ArchiveLimits
) -> None:
    path = make_zip(upload_dir / "many.zip", {f"tiles/{i}.jpg": b"x" for i in range(20)})
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 5, 5)
    path.write_bytes(bytes(data))
    few = ArchiveLimits(**{**limits.__dict__, "max_entries": 10})

    assert_refused(path, few, ArchiveRule.TOO_MANY_ENTRIES, "more than 10 entries")


@pytest.mark.parametrize("name", ["tiles/inner.zip", "tiles/photos.tar.gz", "tiles/x.7z", "a.rar"])
def test_refuses_nested_archive_by_name(upload_dir: Path, limits: ArchiveLimits, name: str) -> None:
    path = make_zip(upload_dir / "outer.zip", {"tiles/a.jpg": b"x", name: b"whatever"})

    assert_refused(path, limits, ArchiveRule.NESTED_ARCHIVE, repr(name), "archive inside")


def test_refuses_nested_archive_by_content(upload_dir: Path, limits: ArchiveLimits) -> None:
    inner = make_zip(upload_dir / "inner.bin", {"a.jpg": os.urandom(2000)})
    path = make_zip(upload_dir / "outer.zip", {"tiles/disguised.jpg": inner.read_bytes()})
    inner.unlink()

    assert_refused(path, limits, ArchiveRule.NESTED_ARCHIVE, "'tiles/disguised.jpg'", "ZIP")


def test_refuses_duplicate_names(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "dup.zip", {"tiles/a.jpg": b"one", "tiles//a.jpg": b"two"})

    assert_refused(path, limits, ArchiveRule.DUPLICATE_NAME, "'tiles/a.jpg'", "twice")


def test_refuses_empty_archive(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "empty.zip", {})

    assert_refused(path, limits, ArchiveRule.EMPTY, "no usable files", error=InvalidInput)


def test_refuses_archive_of_only_junk(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(
        upload_dir / "junk.zip", {"tiles/": b"", "__MACOSX/._a.jpg": b"x", ".DS_Store": b"x"}
    )

    assert_refused(
        path, limits, ArchiveRule.EMPTY, "no usable files", "__MACOSX", error=InvalidInput
    )


def test_refuses_when_free_space_is_short(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "ok.zip", {"a.jpg": b"x"})
    greedy = ArchiveLimits(**{**limits.__dict__, "min_free_bytes": 2**62})

    with pytest.raises(InsufficientStorage, match="KAI_MIN_FREE_BYTES"):
        read_all(path, greedy)


def test_skips_and_lists_junk(upload_dir: Path, limits: ArchiveLimits) -> None:
    members = {
        "tiles/": b"",
        "tiles/a.jpg": b"a",
        "__MACOSX/tiles/._a.jpg": b"resource fork",
        "tiles/.DS_Store": b"finder",
        ".git/config": b"hidden folder",
        "tiles/Thumbs.db": b"windows",
        "tiles/desktop.ini": b"windows",
        "wood/b.jpg": b"b",
    }
    path = make_zip(upload_dir / "junk.zip", members)

    with open_zip(path, limits) as archive:
        names = [entry.name for entry in archive.entries]
        skipped = {item.name: item.reason for item in archive.skipped}

    assert names == ["tiles/a.jpg", "wood/b.jpg"]
    assert skipped == {
        "tiles": SkipReason.DIRECTORY,
        "__MACOSX/tiles/._a.jpg": SkipReason.MACOS_METADATA,
        "tiles/.DS_Store": SkipReason.HIDDEN,
        ".git/config": SkipReason.HIDDEN,
        "tiles/Thumbs.db": SkipReason.SYSTEM_FILE,
        "tiles/desktop.ini": SkipReason.SYSTEM_FILE,
    }


def test_reads_valid_archive_byte_for_byte(upload_dir: Path, limits: ArchiveLimits) -> None:
    members = {
        "tiles/ceramic/a.jpg": os.urandom(3 * archives.CHUNK_BYTES + 17),
        "tiles/ceramic/b.png": b"small",
        "./wood/c.jpg": os.urandom(10),
        "stone/empty.jpg": b"",
        "stone/text.jpg": b"repetitive " * 5000,
    }
    path = make_zip(upload_dir / "good.zip", members)
    stored = make_zip(upload_dir / "stored.zip", members, method=zipfile.ZIP_STORED)
    before = files_under(upload_dir.parent)

    for archive_path in (path, stored):
        with open_zip(archive_path, limits) as archive:
            by_name = {entry.name: entry for entry in archive.entries}
            assert by_name["tiles/ceramic/a.jpg"].size == len(members["tiles/ceramic/a.jpg"])
            assert archive.open(by_name["wood/c.jpg"]).read() == members["./wood/c.jpg"]
            with archive.open(by_name["tiles/ceramic/a.jpg"]) as handle:
                first = handle.read(1000)
                rest = handle.read()
            assert first + rest == members["tiles/ceramic/a.jpg"]
        assert read_all(archive_path, limits) == {
            name.removeprefix("./"): data for name, data in members.items()
        }
    assert files_under(upload_dir.parent) == before


def test_reading_after_close_fails_clearly(upload_dir: Path, limits: ArchiveLimits) -> None:
    path = make_zip(upload_dir / "good.zip", {"a.jpg": b"x"})
    with open_zip(path, limits) as archive:
        entry = archive.entries[0]

    with pytest.raises(RuntimeError, match="closed"):
        b"".join(archive.iter_chunks(entry))


def test_checks_free_space_while_streaming(
    upload_dir: Path, limits: ArchiveLimits, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_zip(upload_dir / "ok.zip", {"a.jpg": os.urandom(3 * archives.CHUNK_BYTES)})
    free = iter([10 * 2**30, 1024])

    def disk_usage(folder: Path) -> SimpleNamespace:
        return SimpleNamespace(total=20 * 2**30, used=0, free=next(free))

    monkeypatch.setattr(archives, "FREE_SPACE_CHECK_BYTES", archives.CHUNK_BYTES)
    monkeypatch.setattr(archives.shutil, "disk_usage", disk_usage)
    with (
        open_zip(path, limits) as archive,
        pytest.raises(InsufficientStorage, match=r"only 1\.0 KiB is free"),
    ):
        b"".join(archive.iter_chunks(archive.entries[0]))


def test_reading_an_entry_twice_counts_once_against_the_total(
    upload_dir: Path, limits: ArchiveLimits
) -> None:
    path = make_zip(upload_dir / "ok.zip", {"a.jpg": os.urandom(6000), "b.jpg": os.urandom(3000)})
    tight = ArchiveLimits(**{**limits.__dict__, "max_uncompressed_bytes": 10_000})

    with open_zip(path, tight) as archive:
        for _ in range(3):
            for entry in archive.entries:
                assert len(b"".join(archive.iter_chunks(entry))) == entry.size
