"""TensorFlow graphs Kai does not run: recognised, and refused with the way in.

A SavedModel uploaded as a ZIP of its folder (``saved_model.pb`` with
``variables/``) is run by :mod:`.saved_models`, which the registry tries
first. What is left is detected here, from the protobuf's structure rather
than its name, so that such a file is answered with what to do instead of
"not a model": zip the whole SavedModel folder, or convert the graph to
TFLite or ONNX, both of which Kai reads, or to a Keras file.

Shapes recognised:

- a ZIP holding ``saved_model.pb`` without its ``variables/`` folder;
- ``saved_model.pb`` itself: a ``SavedModel`` message (field 1 a varint
  schema version, field 2 the meta graphs);
- a frozen ``GraphDef``: repeated field 1 nodes, each with an ``op``, and
  field 4 ``versions``. Frozen graphs name no signature, and Kai does not
  load them.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from kai.errors import InvalidInput
from kai.models.formats.base import (
    ArtifactFile,
    ImportOptions,
    Inspection,
    ModelSpec,
    Predictor,
)

MAX_FIELDS_READ = 64
MAX_HEAD_BYTES = 1 << 26
_VARINT, _LEN = 0, 2
_GRAPH_DEF_FIELDS = frozenset({1, 2, 3, 4})
CONVERT_ADVICE = (
    "Kai runs TensorFlow SavedModels uploaded as a ZIP of the whole SavedModel folder "
    "(saved_model.pb with its variables/ folder), with the 'tensorflow' extra installed "
    "(pip install 'kai[tensorflow]'); it does not run frozen graphs or a saved_model.pb alone. "
    "Zip the folder, or convert the model where TensorFlow is installed and upload the "
    "result: to TFLite with tf.lite.TFLiteConverter.from_saved_model(folder), "
    "to ONNX with 'python -m tf2onnx.convert --saved-model folder --output model.onnx', or, "
    "for a Keras model, model.save('model.keras')"
)


class TensorFlowGraphFormat:
    """Recognises TensorFlow graphs so that the refusal can say what to upload instead."""

    name = "tensorflow"
    framework = "tensorflow"
    suffixes: tuple[str, ...] = (".pb", ".zip")

    def detect(self, path: Path) -> bool:
        """A zipped SavedModel, a ``SavedModel`` message or a frozen ``GraphDef``."""
        return savedmodel_kind(path) is not None

    def check(self, path: Path, options: ImportOptions) -> None:
        """Refuse the graph, naming its kind and the conversions Kai reads."""
        del options
        kind = savedmodel_kind(path) or "TensorFlow graph"
        raise InvalidInput(
            f"{path.name!r} is a {kind}. {CONVERT_ADVICE}",
            details={"field": "file", "format": self.name, "kind": kind},
        )

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        """Never reached: :meth:`check` refuses every file."""
        self.check(path, options)
        raise AssertionError("check() always raises")

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        """Never reached: :meth:`check` refuses every file."""
        raise InvalidInput(CONVERT_ADVICE)

    def load(self, artifact_dir: Path, spec: ModelSpec) -> Predictor:
        """Never reached: no TensorFlow version is ever stored."""
        raise InvalidInput(CONVERT_ADVICE)


def savedmodel_kind(path: Path) -> str | None:
    """``TensorFlow SavedModel``, ``frozen TensorFlow graph (GraphDef)`` or None."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "TensorFlow SavedModel (zipped)" if _zip_has_savedmodel(path) else None
    data = _head_bytes(path)
    fields = list(_top_fields(data))
    if len(fields) >= 2 and fields[0][:2] == (1, _VARINT) and fields[0][2] == 1:
        return "TensorFlow SavedModel" if fields[1][:2] == (2, _LEN) else None
    if fields and {f[0] for f in fields} <= _GRAPH_DEF_FIELDS and _is_node(data, fields[0]):
        return "frozen TensorFlow graph (GraphDef)"
    return None


def _is_node(data: bytes, field: tuple[int, int, int, int]) -> bool:
    """Whether a field is a ``NodeDef``: a readable name (field 1), then an op (field 2)."""
    number, wire, start, end = field
    if (number, wire) != (1, _LEN):
        return False
    inner = list(_top_fields(data[start:end]))
    if len(inner) < 2 or [f[:2] for f in inner[:2]] != [(1, _LEN), (2, _LEN)]:
        return False
    _, _, name_start, name_end = inner[1]
    op = data[start + name_start : start + name_end]
    return op.isascii() and op.decode().isidentifier()


def _zip_has_savedmodel(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(PurePosixPath(name).name == "saved_model.pb" for name in names)


def _head_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(MAX_HEAD_BYTES)


def _top_fields(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """``(number, wire type, value start, value end)`` of a message's first fields.

    A varint field's start holds its value. Reading stops at the first malformed field.
    """
    offset = 0
    for _ in range(MAX_FIELDS_READ):
        if offset >= len(data):
            return
        key, offset = _varint(data, offset)
        number, wire = key >> 3, key & 7
        if offset < 0 or number == 0 or wire not in (_VARINT, _LEN):
            return
        value, after = _varint(data, offset)
        if after < 0 or (wire == _LEN and after + value > len(data)):
            return
        if wire == _VARINT:
            yield number, wire, value, after
            offset = after
        else:
            yield number, wire, after, after + value
            offset = after + value


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while offset < len(data) and shift < 64:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
    return 0, -1
