"""The pickle scanner refuses anything that could run code, without ever unpickling.

Every hostile payload here would create a canary file when loaded; a control
test loads each live one with plain pickle to prove it really would, and the
other tests assert the canary never appears after scanning and after
PyTorch's own safe load.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import struct
import subprocess
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from kai.errors import CorruptModelFile, UnsafeModelFile
from kai.security.pickles import (
    PickleRule,
    scan_numpy_file,
    scan_pickle_bytes,
    scan_torch_file,
)

# Raw opcodes, to build pickles the way an attacker would.
PROTO_4 = b"\x80\x04"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"
POP = b"0"
MARK = b"("
TUPLE = b"t"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
TUPLE3 = b"\x87"
REDUCE = b"R"
STOP = b"."
EMPTY_TUPLE = b")"


def text(value: str) -> bytes:
    """SHORT_BINUNICODE."""
    data = value.encode()
    return b"\x8c" + bytes([len(data)]) + data


def binbytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def binget(index: int) -> bytes:
    return b"h" + bytes([index])


def glob(module: str, name: str) -> bytes:
    """Protocol-0 GLOBAL."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def python_creating(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').close()"


class SystemCall:
    """Pickles as os.system(...): harmless to save, runs the command when loaded."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (os.system, (self.command,))


class SubprocessCall:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (subprocess.check_call, (self.argv,))


class ExecCall:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (builtins.exec, (self.code,))


# Payloads: each builds hostile pickle bytes that create the canary when unpickled.


def os_system(canary: Path) -> bytes:
    return pickle.dumps(SystemCall(f"touch {canary}"), protocol=2)


def subprocess_call(canary: Path) -> bytes:
    return pickle.dumps(SubprocessCall(["touch", str(canary)]), protocol=4)


def builtins_exec(canary: Path) -> bytes:
    return pickle.dumps(ExecCall(python_creating(canary)), protocol=4)


def memoized_stack_global(canary: Path) -> bytes:
    """Module and name memoised, popped, and fetched back far from STACK_GLOBAL."""
    return (
        PROTO_4
        + text("builtins") + MEMOIZE + POP
        + text("exec") + MEMOIZE + POP
        + binget(0) + binget(1)
        + STACK_GLOBAL
        + text(python_creating(canary)) + TUPLE1 + REDUCE + STOP
    )  # fmt: skip


def decoy_strings_before_stack_global(canary: Path) -> bytes:
    """The two strings just before STACK_GLOBAL are allowed names; the stack holds others."""
    return (
        PROTO_4
        + text("os") + text("system")
        + text("torch._utils") + text("_rebuild_tensor_v2") + POP + POP
        + STACK_GLOBAL
        + text(f"touch {canary}") + TUPLE1 + REDUCE + STOP
    )  # fmt: skip


def python2_builtin_alias(canary: Path) -> bytes:
    return (
        b"\x80\x02"
        + glob("__builtin__", "exec")
        + text(python_creating(canary)) + TUPLE1 + REDUCE + STOP
    )  # fmt: skip


def getattr_chain(canary: Path) -> bytes:
    """getattr(__import__('os'), 'system')('touch canary'), with allowed-looking imports only."""
    return (
        PROTO_4
        + glob("builtins", "getattr")
        + glob("builtins", "__import__") + text("os") + TUPLE1 + REDUCE
        + text("system") + TUPLE2 + REDUCE
        + text(f"touch {canary}") + TUPLE1 + REDUCE + STOP
    )  # fmt: skip


def copyreg_reconstructor(canary: Path) -> bytes:
    """copyreg._reconstructor(Popen, Popen, argv) runs Popen.__init__(argv)."""
    return (
        PROTO_4
        + glob("copyreg", "_reconstructor")
        + glob("subprocess", "Popen") + glob("subprocess", "Popen")
        + MARK + text("touch") + text(str(canary)) + b"l"  # LIST
        + TUPLE3 + REDUCE + STOP
    )  # fmt: skip


def nested_pickle(canary: Path) -> bytes:
    """A hostile pickle carried as bytes and handed to the C unpickler's loads."""
    return (
        PROTO_4
        + glob("_pickle", "loads")
        + binbytes(builtins_exec(canary)) + TUPLE1 + REDUCE + STOP
    )  # fmt: skip


def torch_load_reentry(canary: Path) -> bytes:
    """torch.serialization.load on a hostile file: a second load the first cannot see."""
    return (
        PROTO_4 + glob("torch.serialization", "load") + text(str(canary)) + TUPLE1 + REDUCE + STOP
    )


def storage_called(canary: Path) -> bytes:
    """An allowed data import, a storage type, called to allocate."""
    return PROTO_4 + glob("torch", "FloatStorage") + b"J\x00\x00\x00\x10" + TUPLE1 + REDUCE + STOP


LIVE_PAYLOADS = [
    os_system,
    subprocess_call,
    builtins_exec,
    memoized_stack_global,
    decoy_strings_before_stack_global,
    python2_builtin_alias,
    getattr_chain,
    copyreg_reconstructor,
    nested_pickle,
]
PAYLOADS = [*LIVE_PAYLOADS, torch_load_reentry, storage_called]


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "canary"


@pytest.mark.parametrize("payload", LIVE_PAYLOADS, ids=lambda payload: payload.__name__)
def test_control_each_live_payload_really_runs_code_when_unpickled(
    payload: Callable[[Path], bytes], canary: Path
) -> None:
    loaded = pickle.loads(payload(canary))  # the scanner is what stands between this and a user
    if isinstance(loaded, subprocess.Popen):
        loaded.wait()

    assert canary.exists()


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda payload: payload.__name__)
def test_hostile_pickles_are_refused_without_running(
    payload: Callable[[Path], bytes], canary: Path
) -> None:
    with pytest.raises(UnsafeModelFile) as caught:
        scan_pickle_bytes(payload(canary), name="payload.pkl")

    assert "payload.pkl" in caught.value.message
    assert caught.value.details["file"] == "payload.pkl"
    assert not canary.exists()


@pytest.mark.parametrize(
    ("payload", "offending"),
    [
        (os_system, "posix.system"),
        (memoized_stack_global, "builtins.exec"),
        (decoy_strings_before_stack_global, "os.system"),
        (python2_builtin_alias, "__builtin__.exec"),
        (getattr_chain, "builtins.getattr"),
        (copyreg_reconstructor, "copyreg._reconstructor"),
        (torch_load_reentry, "torch.serialization.load"),
        (storage_called, "torch.FloatStorage (called)"),
    ],
)
def test_the_refusal_names_the_offending_import(
    payload: Callable[[Path], bytes], offending: str, canary: Path
) -> None:
    with pytest.raises(UnsafeModelFile, match="which a state dict never needs") as caught:
        scan_pickle_bytes(payload(canary), name="payload.pkl")

    assert caught.value.details["import"] == offending
    assert offending in caught.value.message


def test_a_pickle_inside_bytes_is_refused_even_unused(canary: Path) -> None:
    data = PROTO_4 + binbytes(builtins_exec(canary)) + STOP

    with pytest.raises(UnsafeModelFile, match="another pickle") as caught:
        scan_pickle_bytes(data, name="nested.pkl")

    assert caught.value.details["rule"] == PickleRule.NESTED_PICKLE


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\x80\x02\x82\x01" + EMPTY_TUPLE + REDUCE + STOP, "EXT1"),
        (b"Pfoo\n" + STOP, "PERSID"),
        (PROTO_4 + text("torch") + EMPTY_TUPLE + REDUCE + STOP, "not an import"),
        (PROTO_4 + b"K\x01" + text("x") + STACK_GLOBAL + STOP, "STACK_GLOBAL"),
        (b"\x80\x05\x97" + STOP, "NEXT_BUFFER"),
        (b"c" + b"os system\nx\n" + STOP, "ambiguously"),
    ],
)
def test_constructs_the_walk_cannot_follow_are_refused(data: bytes, what: str) -> None:
    with pytest.raises(UnsafeModelFile, match=what) as caught:
        scan_pickle_bytes(data, name="odd.pkl")

    assert caught.value.details["rule"] == PickleRule.UNFOLLOWABLE


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(UnsafeModelFile, match="protocol"):
        scan_pickle_bytes(b"\x80\x09N.", name="future.pkl")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80\x04\x8c\x05ab", PROTO_4 + binget(3) + STOP, b"\xff\xfe garbage", PROTO_4 + POP],
    ids=["empty", "truncated", "unwritten-memo", "garbage", "empty-stack"],
)
def test_malformed_pickles_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptModelFile, match="not a well-formed pickle"):
        scan_pickle_bytes(data, name="bad.pkl")


# PyTorch checkpoints.


def state_dict() -> OrderedDict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    return model.state_dict()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_state_dict_saved_by_torch_passes_and_loads_safely(
    tmp_path: Path, zip_format: bool
) -> None:
    path = tmp_path / "weights.pt"
    weights = state_dict()
    torch.save(weights, path, _use_new_zipfile_serialization=zip_format)

    scan = scan_torch_file(path)

    assert "torch._utils._rebuild_tensor_v2" in scan.imports
    assert scan.pickles == (1 if zip_format else 5)
    loaded = torch.load(path, weights_only=True, map_location="cpu")
    assert loaded.keys() == weights.keys()
    assert all(torch.equal(loaded[key], weights[key]) for key in weights)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("make_payload", [SystemCall, ExecCall], ids=["os.system", "exec"])
def test_a_checkpoint_with_a_hostile_object_is_refused_and_never_runs(
    tmp_path: Path, canary: Path, zip_format: bool, make_payload: type
) -> None:
    path = tmp_path / "model.pt"
    argument = f"touch {canary}" if make_payload is SystemCall else python_creating(canary)
    checkpoint = {"weights": torch.ones(2), "extra": make_payload(argument)}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)

    with pytest.raises(UnsafeModelFile, match=r"model\.pt") as caught:
        scan_torch_file(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)

    assert caught.value.details["rule"] == PickleRule.FORBIDDEN_IMPORT
    assert not canary.exists()


def test_control_the_hostile_checkpoint_runs_code_under_an_unsafe_load(
    tmp_path: Path, canary: Path
) -> None:
    path = tmp_path / "model.pt"
    torch.save({"extra": SystemCall(f"touch {canary}")}, path)

    torch.load(path, weights_only=False)  # what Kai never does

    assert canary.exists()


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda payload: payload.__name__)
def test_crafted_pickles_inside_a_real_checkpoint_are_refused(
    tmp_path: Path, canary: Path, payload: Callable[[Path], bytes]
) -> None:
    original, path = tmp_path / "good.pt", tmp_path / "bad.pt"
    torch.save(state_dict(), original)
    replace_member(original, path, "data.pkl", payload(canary))

    with pytest.raises(UnsafeModelFile, match=r"bad.pt:good/data.pkl"):
        scan_torch_file(path)
    # PyTorch refuses them too, as an unpickling error or, for a called storage type, a TypeError.
    with pytest.raises((pickle.UnpicklingError, TypeError)), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
        torch.load(path, weights_only=True)

    assert not canary.exists()


def test_a_second_pickle_member_is_scanned_too(tmp_path: Path, canary: Path) -> None:
    path = tmp_path / "extra.pt"
    torch.save(state_dict(), path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("extra/other.pkl", os_system(canary))

    with pytest.raises(UnsafeModelFile, match=r"other\.pkl"):
        scan_torch_file(path)


def test_a_torchscript_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))

    with pytest.raises(UnsafeModelFile, match="TorchScript") as caught:
        scan_torch_file(path)

    assert caught.value.details["rule"] == PickleRule.TORCHSCRIPT


def test_a_pickled_module_is_refused_with_the_way_to_save_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), path)

    with pytest.raises(
        UnsafeModelFile, match=r"torch\.save\(model\.state_dict\(\), path\)"
    ) as caught:
        scan_torch_file(path)

    assert caught.value.details["rule"] == PickleRule.PICKLED_MODULE


@pytest.mark.parametrize(
    "content",
    [b"PK\x03\x04 not really a zip", b"\x80\x02K\x01.", b"just text"],
    ids=["broken-zip", "plain-pickle", "text"],
)
def test_files_that_are_not_checkpoints_are_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "odd.pt"
    path.write_bytes(content)

    with pytest.raises(CorruptModelFile):
        scan_torch_file(path)


def replace_member(source: Path, dest: Path, suffix: str, data: bytes) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(dest, "w") as new:
        for info in old.infolist():
            content = data if info.filename.endswith(suffix) else old.read(info)
            new.writestr(info, content)


# NumPy files.


def test_a_numeric_npy_passes_and_an_object_npy_is_refused(tmp_path: Path, canary: Path) -> None:
    numeric, hostile = tmp_path / "ok.npy", tmp_path / "objects.npy"
    np.save(numeric, np.arange(12, dtype=np.float32).reshape(3, 4))
    np.save(hostile, np.array([SystemCall(f"touch {canary}")], dtype=object), allow_pickle=True)

    scan = scan_numpy_file(numeric)
    with pytest.raises(UnsafeModelFile, match="Python objects") as caught:
        scan_numpy_file(hostile)
    with pytest.raises(ValueError, match="allow_pickle"):
        np.load(hostile, allow_pickle=False)

    assert [(array.dtype, array.shape) for array in scan.arrays] == [("<f4", (3, 4))]
    assert caught.value.details["rule"] == PickleRule.OBJECT_ARRAY
    assert not canary.exists()


def test_an_npz_with_one_object_array_is_refused(tmp_path: Path, canary: Path) -> None:
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, weight=np.ones((2, 2)), bias=np.zeros(2, dtype=np.int64))
    objects = np.array([ExecCall(python_creating(canary))], dtype=object)
    np.savez_compressed(bad, weight=np.ones(2), payload=objects)

    scan = scan_numpy_file(good)
    with pytest.raises(UnsafeModelFile, match=r"bad.npz:payload.npy"):
        scan_numpy_file(bad)

    assert sorted(array.name for array in scan.arrays) == ["bias", "weight"]
    assert not canary.exists()


def test_structured_and_truncated_npy_files_are_refused(tmp_path: Path) -> None:
    structured, truncated = tmp_path / "structured.npy", tmp_path / "truncated.npy"
    np.save(structured, np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]))
    buffer = io.BytesIO()
    np.save(buffer, np.ones(1000))
    truncated.write_bytes(buffer.getvalue()[:500])

    with pytest.raises(UnsafeModelFile, match="plain numeric"):
        scan_numpy_file(structured)
    with pytest.raises(CorruptModelFile, match="truncated"):
        scan_numpy_file(truncated)
