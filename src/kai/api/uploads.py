"""Streaming multipart uploads: file parts go straight to disk as they arrive.

Large dataset archives must never sit in memory, nor wait in a temporary
file before being copied again. :func:`receive_multipart` feeds the request
body to python-multipart's low-level parser chunk by chunk; each expected
file part is written to its own file in the upload's folder under a name
Kai chooses (the client's file name is kept only as a label). The body's
size is checked against the limit from the ``Content-Length`` header first
and then byte by byte, so a lying or missing header cannot get past it.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from kai.errors import InvalidInput, TooLarge

logger = logging.getLogger(__name__)

MAX_FIELD_BYTES = 64 * 1024
MAX_FILENAME_LENGTH = 255


@dataclass(frozen=True)
class ReceivedFile:
    """A file part written to disk.

    Attributes:
        field: The form field it came in.
        filename: The client's name for it (base name only), for display.
        path: Where it was written.
        size: Its size in bytes.
    """

    field: str
    filename: str
    path: Path
    size: int


@dataclass
class ReceivedForm:
    """A multipart form whose files are on disk in ``directory``."""

    directory: Path
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, ReceivedFile] = field(default_factory=dict)

    def text(self, name: str, default: str = "") -> str:
        """A text field's value."""
        return self.fields.get(name, default)

    def discard(self) -> None:
        """Delete the received files."""
        shutil.rmtree(self.directory, ignore_errors=True)


class _FormWriter:
    """The parser's callbacks: collects headers, routes part data to a file or a field."""

    def __init__(self, form: ReceivedForm, file_fields: frozenset[str]) -> None:
        self.form = form
        self.file_fields = file_fields
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._filename: str | None = None
        self._sink: IO[bytes] | None = None
        self._text = bytearray()
        self._size = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._disposition, self._name, self._filename = b"", "", None
        self._text.clear()
        self._size = 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        if raw_filename is None:
            return
        if self._name not in self.file_fields:
            raise InvalidInput(
                f"Unexpected file field {self._name!r}; expected {sorted(self.file_fields)}",
                details={"field": self._name},
            )
        self._filename = _base_name(raw_filename.decode("utf-8", "replace"))
        suffix = PurePosixPath(self._filename).suffix.lower()[:16]
        target = self.form.directory / f"{self._name}{suffix}"
        self._sink = open(target, "wb")  # noqa: SIM115 - closed in _part_end or close()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._sink is not None:
            self._sink.write(data[start:end])
            return
        if self._size > MAX_FIELD_BYTES:
            raise InvalidInput(f"Form field {self._name!r} is over {MAX_FIELD_BYTES} bytes")
        self._text += data[start:end]

    def _part_end(self) -> None:
        if self._sink is None:
            self.form.fields[self._name] = self._text.decode("utf-8", "replace")
            return
        path = Path(self._sink.name)
        self._sink.close()
        self._sink = None
        assert self._filename is not None
        self.form.files[self._name] = ReceivedFile(self._name, self._filename, path, self._size)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None


async def receive_multipart(
    request: Request,
    *,
    uploads_dir: Path,
    max_bytes: int,
    file_fields: frozenset[str],
) -> ReceivedForm:
    """Stream a ``multipart/form-data`` body into a new folder under ``uploads_dir``.

    Raises:
        TooLarge: The body is over ``max_bytes`` (``KAI_MAX_UPLOAD_BYTES``).
        InvalidInput: The body is not multipart form data, or is malformed.
    """
    boundary = _boundary(request.headers.get("content-type", ""))
    _check_declared_length(request.headers.get("content-length"), max_bytes)
    directory = uploads_dir / secrets.token_hex(16)
    directory.mkdir(parents=True)
    form = ReceivedForm(directory)
    writer = _FormWriter(form, file_fields)
    parser = MultipartParser(boundary, writer.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        writer.close()
        form.discard()
        raise InvalidInput(f"The multipart body is malformed: {exc}") from exc
    except BaseException:
        writer.close()
        form.discard()
        raise
    logger.info("Upload received", extra={"bytes": received, "files": sorted(form.files)})
    return form


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput(
            "Send the upload as multipart/form-data with the file in the 'file' field",
            details={"contentType": content_type},
        )
    return boundary


def _check_declared_length(header: str | None, max_bytes: int) -> None:
    if header is None:
        return
    try:
        declared = int(header)
    except ValueError as exc:
        raise InvalidInput(f"Content-Length {header!r} is not a number") from exc
    if declared > max_bytes:
        raise _too_large(max_bytes)


def _too_large(max_bytes: int) -> TooLarge:
    return TooLarge(
        f"The upload is over the limit of {max_bytes} bytes (KAI_MAX_UPLOAD_BYTES)",
        details={"limit": max_bytes},
    )


def _base_name(filename: str) -> str:
    # Browsers on Windows may send a full path; only the last part names the file.
    name = PureWindowsPath(PurePosixPath(filename).name).name
    return name[:MAX_FILENAME_LENGTH] or "upload"
