"""Reading pickled model files' opcodes to refuse any that could run code.

A pickle is a small program: its ``GLOBAL``, ``STACK_GLOBAL`` and ``INST``
opcodes import any callable and ``REDUCE`` calls it, so loading a pickle
from a stranger runs the stranger's code. PyTorch checkpoints are pickles.
``torch.load(..., weights_only=True)`` is the first defence; this module is
the second, and it never unpickles anything: it walks the opcodes with
:mod:`pickletools`, keeps a symbolic stack and memo so that ``STACK_GLOBAL``
sees the strings it will import (memoised ones included), and collects every
import.

It fails closed. An import outside the short list that state dicts need
(tensor and parameter rebuilders, storages, dtypes, ``torch.Size``,
``torch.device``, ``collections.OrderedDict``) is refused, as is anything the
walk cannot follow: an unknown protocol or opcode, a malformed stream, a call
of something that is not an allowed import, extension-registry opcodes
(``EXT1/2/4``), out-of-band buffers, text persistent ids, and bytes that hold
another pickle. Storages and dtypes may appear as data but are never called.

Files come in three shapes: a plain pickle, a PyTorch zip checkpoint (every
``*.pkl`` member is walked; TorchScript archives are refused) and the legacy
PyTorch file (five pickles in a row before the raw storages). NumPy ``.npy``
and ``.npz`` files are judged by their headers: plain numeric arrays pass,
object arrays (which ``numpy.load`` would unpickle) are refused.
"""

from __future__ import annotations

import io
import logging
import math
import pickletools
import struct
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, NoReturn

import numpy as np
import numpy.lib.format as npy_format

from kai.errors import CorruptModelFile, UnsafeModelFile

__all__ = [
    "NumpyArray",
    "NumpyScan",
    "PickleRule",
    "PickleScan",
    "scan_numpy_file",
    "scan_pickle_bytes",
    "scan_torch_file",
]

logger = logging.getLogger(__name__)

MAX_PICKLE_BYTES = 256 * 1024 * 1024
MAX_ZIP_MEMBERS = 100_000
MAX_NPY_HEADER_BYTES = 64 * 1024
HIGHEST_PROTOCOL = 5
ZIP_MAGIC = b"PK\x03\x04"
# What torch.save writes first in a legacy file, and the format version after it.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
LEGACY_PICKLES = 5

_STORAGES = (
    "Float",
    "Double",
    "Half",
    "BFloat16",
    "Long",
    "Int",
    "Short",
    "Char",
    "Byte",
    "Bool",
    "ComplexFloat",
    "ComplexDouble",
)
_DTYPES = (
    "float16",
    "float32",
    "float64",
    "bfloat16",
    "complex64",
    "complex128",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "bool",
    "float8_e4m3fn",
    "float8_e5m2",
)
# Imports a state dict needs that may be called while loading.
CALLABLE_IMPORTS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch", "Size"),
        ("torch", "device"),
    }
)
# Imports that may appear as values (storage types in persistent ids, dtypes) but are never called.
DATA_IMPORTS = frozenset(
    {("torch", f"{kind}Storage") for kind in _STORAGES}
    | {("torch", "UntypedStorage")}
    | {("torch", dtype) for dtype in _DTYPES}
)
_STRING_OPCODES = frozenset(
    {
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
    }
)
_BYTES_OPCODES = frozenset({"SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8"})
_PUT_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPCODES = frozenset({"GET", "BINGET", "LONG_BINGET"})
_UNFOLLOWABLE_OPCODES = {
    "EXT1": "an extension-registry import (EXT1)",
    "EXT2": "an extension-registry import (EXT2)",
    "EXT4": "an extension-registry import (EXT4)",
    "PERSID": "a text persistent id (PERSID)",
    "NEXT_BUFFER": "an out-of-band buffer (NEXT_BUFFER)",
    "READONLY_BUFFER": "an out-of-band buffer (READONLY_BUFFER)",
}
_NUMERIC_KINDS = frozenset("biufc")
_MALFORMED = (ValueError, EOFError, struct.error, OverflowError, IndexError, KeyError)


class PickleRule(StrEnum):
    """Why a model file was refused; carried in ``details["rule"]``."""

    FORBIDDEN_IMPORT = "forbidden_import"
    PICKLED_MODULE = "pickled_module"
    UNFOLLOWABLE = "unfollowable"
    NESTED_PICKLE = "nested_pickle"
    TORCHSCRIPT = "torchscript"
    OBJECT_ARRAY = "object_array"
    MALFORMED = "malformed"
    NOT_A_CHECKPOINT = "not_a_checkpoint"
    TOO_LARGE = "too_large"


@dataclass(frozen=True)
class PickleScan:
    """What a scanned file imports, all of it allowed.

    Attributes:
        name: The file's name, as given or as found on disk.
        imports: Every ``module.name`` the pickles import, sorted.
        pickles: Pickle streams walked.
    """

    name: str
    imports: tuple[str, ...]
    pickles: int


@dataclass(frozen=True)
class NumpyArray:
    """One array of a ``.npy`` or ``.npz`` file, from its header."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class NumpyScan:
    """The arrays of a scanned NumPy file, all plain numeric."""

    name: str
    arrays: tuple[NumpyArray, ...]


def scan_pickle_bytes(data: bytes, *, name: str) -> PickleScan:
    """Walk one or more pickles back to back in ``data``; they must fill it exactly.

    Args:
        data: The pickled bytes.
        name: What to call them in messages, such as ``model.pt:archive/data.pkl``.

    Raises:
        UnsafeModelFile: An import outside the allowlist, or a construct the walk
            cannot follow; ``details`` holds ``file``, ``rule`` and ``imports``.
        CorruptModelFile: The bytes are not a well-formed pickle.
    """
    stream = io.BytesIO(data)
    imports: set[str] = set()
    pickles = 0
    while stream.tell() < len(data) or pickles == 0:
        imports |= _PickleWalk(name).run(stream)
        pickles += 1
    return PickleScan(name=name, imports=tuple(sorted(imports)), pickles=pickles)


def scan_torch_file(path: Path) -> PickleScan:
    """Walk every pickle in a PyTorch checkpoint, zip or legacy, before it is loaded.

    The format is told the way ``torch.load`` tells it: by the first four
    bytes, not by the file name.

    Raises:
        UnsafeModelFile: A pickle imports something a state dict does not need,
            cannot be followed, or the file is a TorchScript archive.
        CorruptModelFile: The file is damaged or not a PyTorch checkpoint.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    scan = _scan_torch_zip(path) if head == ZIP_MAGIC else _scan_torch_legacy(path)
    logger.debug("Scanned %s: %s", path.name, ", ".join(scan.imports) or "no imports")
    return scan


def scan_numpy_file(path: Path) -> NumpyScan:
    """Judge a ``.npy`` or ``.npz`` file by its array headers, reading no pickles.

    Raises:
        UnsafeModelFile: An array holds Python objects or is not plain numeric.
        CorruptModelFile: The file is damaged or not a NumPy file.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if head == ZIP_MAGIC:
        arrays = _scan_npz(path)
    else:
        with open(path, "rb") as handle:
            size_bytes = path.stat().st_size
            arrays = (_read_npy_header(handle, path.name, path.name, size_bytes),)
    return NumpyScan(name=path.name, arrays=arrays)


# The opcode walk.


@dataclass(frozen=True)
class _Import:
    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def callable(self) -> bool:
        return (self.module, self.name) in CALLABLE_IMPORTS


class _Marker:
    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return self.label


_MARK = _Marker("mark")
_UNKNOWN = _Marker("value")
_Value = str | _Import | _Marker


class _PickleWalk:
    """One pickle's opcodes run against a stack of strings, imports and placeholders."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stack: list[_Value] = []
        self.memo: dict[int, _Value] = {}
        self.imports: set[str] = set()
        self.refused: list[str] = []

    def run(self, stream: IO[bytes]) -> set[str]:
        for opcode, arg, _position in self._opcodes(stream):
            self._step(opcode, arg)
        if self.refused:
            _refuse_imports(self.name, self.refused, sorted(self.imports))
        return self.imports

    def _opcodes(
        self, stream: IO[bytes]
    ) -> Iterator[tuple[pickletools.OpcodeInfo, object, int | None]]:
        try:
            yield from pickletools.genops(stream)
        except _MALFORMED as exc:
            _corrupt(f"{self.name} is not a well-formed pickle: {exc}", PickleRule.MALFORMED, exc)

    def _step(self, opcode: pickletools.OpcodeInfo, arg: object) -> None:
        name = opcode.name
        if name in _UNFOLLOWABLE_OPCODES:
            self._unfollowable(_UNFOLLOWABLE_OPCODES[name])
        elif name == "PROTO":
            self._check_protocol(arg)
        elif name in _STRING_OPCODES:
            self.stack.append(str(arg))
        elif name in _BYTES_OPCODES:
            self._check_bytes(arg)
            self.stack.append(_UNKNOWN)
        elif name in _PUT_OPCODES or name == "MEMOIZE":
            self._memoize(arg if name != "MEMOIZE" else len(self.memo))
        elif name in _GET_OPCODES:
            self._recall(arg)
        elif name == "DUP":
            self.stack.append(self._peek())
        elif name in ("GLOBAL", "INST"):
            self._text_import(name, arg)
        elif name == "STACK_GLOBAL":
            self._stack_global()
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"):
            self._call(name)
        else:
            self._generic(opcode)

    def _check_protocol(self, arg: object) -> None:
        if not isinstance(arg, int) or arg > HIGHEST_PROTOCOL:
            self._unfollowable(f"pickle protocol {arg}, which Kai does not know")

    def _check_bytes(self, arg: object) -> None:
        data = bytes(arg) if isinstance(arg, bytes | bytearray) else b""
        if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= HIGHEST_PROTOCOL:
            _refuse(
                f"{self.name} carries another pickle inside its bytes, a way to smuggle code "
                "past scanners; Kai refuses it",
                PickleRule.NESTED_PICKLE,
                self.name,
            )

    def _memoize(self, index: object) -> None:
        if not isinstance(index, int):
            self._unfollowable("a memo index that is not a number")
        self.memo[index] = self._peek()

    def _recall(self, index: object) -> None:
        if not isinstance(index, int) or index not in self.memo:
            self._malformed(f"it reads memo slot {index!r}, which was never written")
        self.stack.append(self.memo[index])

    def _text_import(self, opcode_name: str, arg: object) -> None:
        parts = str(arg).split(" ")
        if len(parts) != 2:
            self._unfollowable(f"an import it spells ambiguously ({arg!r})")
        imported = self._import(parts[0], parts[1])
        if opcode_name == "GLOBAL":
            self.stack.append(imported)
            return
        self._pop_to_mark()
        self._check_call(imported, "INST")
        self.stack.append(_UNKNOWN)

    def _stack_global(self) -> None:
        name, module = self._pop(), self._pop()
        if not isinstance(module, str) or not isinstance(name, str):
            self._unfollowable("an import whose module or name is computed (STACK_GLOBAL)")
        self.stack.append(self._import(module, name))

    def _import(self, module: str, name: str) -> _Import:
        imported = _Import(module, name)
        self.imports.add(imported.dotted)
        if (module, name) not in CALLABLE_IMPORTS | DATA_IMPORTS:
            self.refused.append(imported.dotted)
        return imported

    def _call(self, opcode_name: str) -> None:
        if opcode_name == "OBJ":
            items = self._pop_to_mark()
            target = items[0] if items else _UNKNOWN
        else:
            for _ in range({"REDUCE": 1, "NEWOBJ": 1, "NEWOBJ_EX": 2}[opcode_name]):
                self._pop()
            target = self._pop()
        self._check_call(target, opcode_name)
        self.stack.append(_UNKNOWN)

    def _check_call(self, target: _Value, opcode_name: str) -> None:
        if not isinstance(target, _Import):
            self._unfollowable(f"a call ({opcode_name}) of something that is not an import")
        if not target.callable and target.dotted not in self.refused:
            self.refused.append(f"{target.dotted} (called)")

    def _generic(self, opcode: pickletools.OpcodeInfo) -> None:
        before = opcode.stack_before
        below_mark = len(before)
        if pickletools.markobject in before:
            self._pop_to_mark()
            below_mark = before.index(pickletools.markobject)
        for _ in range(below_mark):
            self._pop()
        for kind in opcode.stack_after:
            self.stack.append(_MARK if kind is pickletools.markobject else _UNKNOWN)

    def _peek(self) -> _Value:
        if not self.stack:
            self._malformed("an opcode needs a value on an empty stack")
        return self.stack[-1]

    def _pop(self) -> _Value:
        value = self._peek()
        self.stack.pop()
        return value

    def _pop_to_mark(self) -> list[_Value]:
        items: list[_Value] = []
        while True:
            value = self._pop()
            if value is _MARK:
                return items[::-1]
            items.append(value)

    def _unfollowable(self, what: str) -> NoReturn:
        if self.refused:  # a forbidden import already found is the clearer reason
            _refuse_imports(self.name, self.refused, sorted(self.imports))
        _refuse(
            f"{self.name} contains {what}; Kai cannot prove such a pickle safe and refuses it",
            PickleRule.UNFOLLOWABLE,
            self.name,
            imports=sorted(self.imports),
        )

    def _malformed(self, why: str) -> NoReturn:
        _corrupt(f"{self.name} is not a well-formed pickle: {why}", PickleRule.MALFORMED)


def _refuse_imports(name: str, refused: list[str], imports: list[str]) -> NoReturn:
    module_like = [item for item in refused if item.startswith("torch.nn.")]
    if module_like:
        _refuse(
            f"{name} holds a whole pickled model ({module_like[0]}), not a state dict; "
            "loading it would run code from the file. Save the weights alone with "
            "torch.save(model.state_dict(), path) and upload that file",
            PickleRule.PICKLED_MODULE,
            name,
            imports=imports,
            offending=refused[0],
        )
    others = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
    _refuse(
        f"{name} imports {refused[0]}{others}, which a state dict never needs; "
        "loading it could run code, so Kai refuses the file",
        PickleRule.FORBIDDEN_IMPORT,
        name,
        imports=imports,
        offending=refused[0],
    )


# PyTorch checkpoints.


def _scan_torch_zip(path: Path) -> PickleScan:
    try:
        with zipfile.ZipFile(path) as archive:
            members = _pickle_members(archive, path.name)
            scans = [_scan_member(archive, info, path.name) for info in members]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        _corrupt(f"{path.name} is a damaged zip checkpoint: {exc}", PickleRule.MALFORMED, exc)
    imports = sorted({item for scan in scans for item in scan.imports})
    return PickleScan(name=path.name, imports=tuple(imports), pickles=len(scans))


def _pickle_members(archive: zipfile.ZipFile, file_name: str) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(infos) > MAX_ZIP_MEMBERS or len(set(names)) != len(names):
        _corrupt(
            f"{file_name} has too many or duplicate zip members for a checkpoint",
            PickleRule.MALFORMED,
        )
    if any(name.rsplit("/", 1)[-1] == "constants.pkl" or "/code/" in name for name in names):
        _refuse(
            f"{file_name} is a TorchScript archive, which runs its own code when loaded; "
            "upload a state dict saved with torch.save(model.state_dict(), path)",
            PickleRule.TORCHSCRIPT,
            file_name,
        )
    members = [info for info in infos if info.filename.lower().endswith(".pkl")]
    if not any(info.filename.rsplit("/", 1)[-1] == "data.pkl" for info in members):
        _corrupt(
            f"{file_name} is a zip file without data.pkl, not a PyTorch checkpoint",
            PickleRule.NOT_A_CHECKPOINT,
        )
    return members


def _scan_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_name: str) -> PickleScan:
    label = f"{file_name}:{info.filename}"
    if info.file_size > MAX_PICKLE_BYTES:
        _refuse(
            f"{label} is a {info.file_size}-byte pickle, over the {MAX_PICKLE_BYTES}-byte limit",
            PickleRule.TOO_LARGE,
            label,
        )
    return scan_pickle_bytes(archive.read(info), name=label)


def _scan_torch_legacy(path: Path) -> PickleScan:
    if _is_tar(path):
        _refuse(
            f"{path.name} is an old tar-format checkpoint, which Kai does not load; "
            "re-save it with a current PyTorch",
            PickleRule.NOT_A_CHECKPOINT,
            path.name,
        )
    imports: set[str] = set()
    with open(path, "rb") as handle:
        for index in range(LEGACY_PICKLES):
            start = handle.tell()
            imports |= _PickleWalk(f"{path.name} (pickle {index + 1})").run(handle)
            if index < 2:
                _check_legacy_header(path, handle, start, index)
    return PickleScan(name=path.name, imports=tuple(sorted(imports)), pickles=LEGACY_PICKLES)


def _check_legacy_header(path: Path, handle: IO[bytes], start: int, index: int) -> None:
    """The first two pickles must be torch's magic number and format version."""
    end = handle.tell()
    handle.seek(start)
    values = [arg for opcode, arg, _ in pickletools.genops(handle) if isinstance(arg, int)]
    handle.seek(end)
    expected = (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION)[index]
    if values[-1:] != [expected]:
        _corrupt(
            f"{path.name} is neither a zip nor a legacy PyTorch checkpoint",
            PickleRule.NOT_A_CHECKPOINT,
        )


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


# NumPy files.


def _scan_npz(path: Path) -> tuple[NumpyArray, ...]:
    arrays: list[NumpyArray] = []
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ZIP_MEMBERS:
                _corrupt(f"{path.name} has too many members", PickleRule.MALFORMED)
            for info in infos:
                label = f"{path.name}:{info.filename}"
                if not info.filename.endswith(".npy"):
                    _refuse(f"{label} is not a .npy array", PickleRule.MALFORMED, label)
                with archive.open(info) as member:
                    arrays.append(_read_npy_header(member, label, info.filename, info.file_size))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        _corrupt(f"{path.name} is a damaged .npz file: {exc}", PickleRule.MALFORMED, exc)
    return tuple(arrays)


def _read_npy_header(handle: IO[bytes], label: str, name: str, size_bytes: int) -> NumpyArray:
    try:
        version = npy_format.read_magic(handle)
        if version == (1, 0):
            header = npy_format.read_array_header_1_0(handle, max_header_size=MAX_NPY_HEADER_BYTES)
        elif version == (2, 0):
            header = npy_format.read_array_header_2_0(handle, max_header_size=MAX_NPY_HEADER_BYTES)
        else:
            _corrupt(f"{label} uses .npy format {version}, which Kai does not read")
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        _corrupt(f"{label} is not a valid .npy array: {exc}", PickleRule.MALFORMED, exc)
    shape, _fortran_order, dtype = header
    _check_numpy_dtype(dtype, label)
    data_bytes = math.prod(shape) * dtype.itemsize
    if data_bytes > size_bytes:
        _corrupt(f"{label} is truncated: its header promises {data_bytes} bytes of data")
    return NumpyArray(name=name.removesuffix(".npy"), dtype=dtype.str, shape=tuple(shape))


def _check_numpy_dtype(dtype: np.dtype[np.generic], label: str) -> None:
    if dtype.hasobject:
        _refuse(
            f"{label} holds an array of Python objects ({dtype}), which NumPy would unpickle; "
            "Kai accepts only numeric arrays",
            PickleRule.OBJECT_ARRAY,
            label,
        )
    if dtype.fields is not None or dtype.kind not in _NUMERIC_KINDS:
        _refuse(
            f"{label} holds a {dtype} array; Kai accepts only plain numeric arrays",
            PickleRule.OBJECT_ARRAY,
            label,
        )


# Errors.


def _refuse(
    message: str,
    rule: PickleRule,
    file: str,
    *,
    imports: list[str] | None = None,
    offending: str | None = None,
) -> NoReturn:
    details: dict[str, object] = {"rule": rule, "file": file}
    if imports is not None:
        details["imports"] = imports
    if offending is not None:
        details["import"] = offending
    raise UnsafeModelFile(message, details=details)


def _corrupt(
    message: str,
    rule: PickleRule = PickleRule.MALFORMED,
    cause: BaseException | None = None,
) -> NoReturn:
    raise CorruptModelFile(message, details={"rule": rule}) from cause
