"""Frozen TensorFlow graphs (``.pb`` GraphDefs), and the TensorFlow files Kai refuses.

A SavedModel uploaded as a ZIP of its folder (``saved_model.pb`` with
``variables/``) is run by :mod:`.saved_models`, which the registry tries
first. What is left is detected here, from the protobuf's structure rather
than its name:

- a frozen ``GraphDef`` (repeated field 1 nodes, each with an ``op``, and
  field 4 ``versions``): run by TensorFlow like a SavedModel, with the same
  operator checks, fed through its ``Placeholder`` and read at the node that
  ends the graph; ``graphInput`` and ``graphOutput`` name them when there are
  several. A frozen graph names no embedding, so its class scores serve as
  its features;
- ``saved_model.pb`` alone (a ``SavedModel`` message: field 1 a varint
  schema version, field 2 the meta graphs), or a ZIP holding one without its
  ``variables/`` folder: refused with what to upload instead (the whole
  folder zipped, or a TFLite or ONNX conversion).
"""

from __future__ import annotations

import shutil
import sys
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
from kai.models.formats.saved_models import (
    GRAPH_SAFETY_CHECKS,
    FrozenGraph,
    GraphRunner,
    SavedModelPredictor,
    WorkerGraph,
    inspect_graph,
    require_tensorflow,
)

ARTIFACT_NAME = "model.pb"
FROZEN_GRAPH = "frozen TensorFlow graph (GraphDef)"
MAX_FIELDS_READ = 64
MAX_HEAD_BYTES = 1 << 26
_VARINT, _LEN = 0, 2
_GRAPH_DEF_FIELDS = frozenset({1, 2, 3, 4})
CONVERT_ADVICE = (
    "Kai runs TensorFlow SavedModels uploaded as a ZIP of the whole SavedModel folder "
    "(saved_model.pb with its variables/ folder) and frozen .pb graphs, with the 'tensorflow' "
    "extra installed (pip install 'kai[tensorflow]'); a saved_model.pb without its variables "
    "cannot run. Zip the whole folder, or convert the model where TensorFlow is installed "
    "and upload the result: to TFLite with tf.lite.TFLiteConverter.from_saved_model(folder), "
    "to ONNX with 'python -m tf2onnx.convert --saved-model folder --output model.onnx', or, "
    "for a Keras model, model.save('model.keras')"
)


class TensorFlowGraphFormat:
    """Frozen graphs, run by TensorFlow; a lone ``saved_model.pb`` refused with the way in."""

    name = "tensorflow"
    framework = "tensorflow"
    suffixes: tuple[str, ...] = (".pb", ".zip")

    def detect(self, path: Path) -> bool:
        """A zipped SavedModel, a ``SavedModel`` message or a frozen ``GraphDef``."""
        return savedmodel_kind(path) is not None

    def check(self, path: Path, options: ImportOptions) -> None:
        """Refuse what Kai does not run, naming its kind; a frozen graph needs TensorFlow."""
        del options
        kind = savedmodel_kind(path) or "TensorFlow graph"
        if kind == FROZEN_GRAPH:
            require_tensorflow()
            return
        raise InvalidInput(
            f"{path.name!r} is a {kind}. {CONVERT_ADVICE}",
            details={"field": "file", "format": self.name, "kind": kind},
        )

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        """Check the graph's operators, import it and run it once."""
        self.check(path, options)
        graph = FrozenGraph(path, options.graph_input, options.graph_output)
        notes = ["A frozen graph names no embedding; its class scores serve as its features"]
        return inspect_graph(
            self.name,
            graph,
            options,
            notes,
            group_module=graph.output_name,
            safety_checks=list(GRAPH_SAFETY_CHECKS),
        )

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        """Keep the graph as it is."""
        del inspection
        shutil.copyfile(path, out_dir / ARTIFACT_NAME)
        return [ArtifactFile("weights", ARTIFACT_NAME, out_dir / ARTIFACT_NAME)]

    def load(self, artifact_dir: Path, spec: ModelSpec) -> Predictor:
        """A predictor over the kept graph; in a TensorFlow worker unless TensorFlow is here."""
        path = artifact_dir / ARTIFACT_NAME
        runner: GraphRunner
        if "tensorflow" in sys.modules:
            runner = FrozenGraph(path, spec.graph_input, spec.graph_output)
        else:
            runner = WorkerGraph(path, spec.graph_input, spec.graph_output, frozen=True)
        return SavedModelPredictor(runner, spec)


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
        return FROZEN_GRAPH
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
