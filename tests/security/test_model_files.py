"""Weights load only after their checksum and a pickle scan, and only with weights_only."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections import OrderedDict
from pathlib import Path

import pytest
import safetensors.torch
import torch

from kai.errors import CorruptModelFile, UnsafeModelFile
from kai.security import model_files
from kai.security.model_files import (
    ModelFileFormat,
    ModelFileRule,
    file_sha256,
    load_torch_state_dict,
    sniff_model_file,
)


class SystemCall:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def state_dict() -> OrderedDict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).state_dict()


def assert_same(loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_state_dict_loads_after_its_checksum_matches(tmp_path: Path, zip_format: bool) -> None:
    path = tmp_path / "weights.pth"
    weights = state_dict()
    torch.save(weights, path, _use_new_zipfile_serialization=zip_format)

    loaded = load_torch_state_dict(path, expected_sha256=file_sha256(path).upper())

    assert_same(loaded, weights)
    assert all(tensor.device.type == "cpu" for tensor in loaded.values())


def test_a_training_checkpoint_is_unwrapped_to_its_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    weights = state_dict()
    torch.save({"epoch": 7, "state_dict": weights, "optimizer": {"lr": 0.1}}, path)

    assert_same(load_torch_state_dict(path, expected_sha256=None), weights)


def test_a_checkpoint_without_tensors_is_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "numbers.pt"
    torch.save({"epoch": 7, "best": 0.9}, path)

    with pytest.raises(CorruptModelFile, match="not a state dict") as caught:
        load_torch_state_dict(path, expected_sha256=None)

    assert caught.value.details["rule"] == ModelFileRule.NOT_A_STATE_DICT


def test_a_pickled_module_is_refused_with_the_way_to_save_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "whole-model.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()), path)

    with pytest.raises(UnsafeModelFile) as caught:
        load_torch_state_dict(path, expected_sha256=None)

    message = caught.value.message
    assert "whole pickled model" in message
    assert "torch.save(model.state_dict(), path)" in message


def test_a_wrong_checksum_is_refused_before_anything_reads_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "hostile.pt"
    torch.save({"x": SystemCall(f"touch {canary}")}, path)
    parsed: list[str] = []
    monkeypatch.setattr(model_files, "scan_torch_file", lambda p: parsed.append("scan"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: parsed.append("load"))

    with pytest.raises(UnsafeModelFile, match="not the recorded") as caught:
        load_torch_state_dict(path, expected_sha256=hashlib.sha256(b"other").hexdigest())

    assert caught.value.details["rule"] == ModelFileRule.CHECKSUM_MISMATCH
    assert parsed == []
    assert not canary.exists()


def test_a_malformed_expected_checksum_is_a_programming_error(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(state_dict(), path)

    with pytest.raises(ValueError, match="64 hex digits"):
        load_torch_state_dict(path, expected_sha256="abc")


def test_a_hostile_checkpoint_is_refused_and_never_runs(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "hostile.pt"
    torch.save({"w": torch.ones(1), "x": SystemCall(f"touch {canary}")}, path)

    with pytest.raises(UnsafeModelFile, match=r"posix\.system"):
        load_torch_state_dict(path, expected_sha256=file_sha256(path))

    assert not canary.exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_truncated_checkpoint_is_corrupt(tmp_path: Path, zip_format: bool) -> None:
    full, path = tmp_path / "full.pt", tmp_path / "truncated.pt"
    torch.save(state_dict(), full, _use_new_zipfile_serialization=zip_format)
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])

    with pytest.raises(CorruptModelFile) as caught:
        load_torch_state_dict(path, expected_sha256=None)

    assert "truncated.pt" in caught.value.message


@pytest.mark.parametrize(
    "content", [b"", b"\x00" * 64, b"<html>not found</html>"], ids=["empty", "zeros", "html"]
)
def test_garbage_is_in_no_format_kai_reads(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)

    with pytest.raises(CorruptModelFile, match="neither a PyTorch checkpoint nor") as caught:
        load_torch_state_dict(path, expected_sha256=None)

    assert caught.value.details["rule"] == ModelFileRule.UNKNOWN_FORMAT


def test_a_safetensors_file_loads_through_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"  # the name says nothing; the content does
    weights = {key: value.contiguous() for key, value in state_dict().items()}
    safetensors.torch.save_file(weights, path)

    loaded = load_torch_state_dict(path, expected_sha256=file_sha256(path))

    assert sniff_model_file(path) is ModelFileFormat.SAFETENSORS
    assert_same(loaded, weights)


def safetensors_bytes(header: object, data: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (struct.pack("<Q", 2**40) + b"{}", "declares a"),
        (struct.pack("<Q", 5) + b'{"w":', "not JSON"),
        (
            safetensors_bytes(
                {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}, b"\0" * 16
            ),
            "outside the file",
        ),
        (
            safetensors_bytes(
                {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 16
            ),
            "wrong size",
        ),
        (
            safetensors_bytes(
                {"w": {"dtype": "OBJ", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8
            ),
            "unknown dtype",
        ),
        (
            safetensors_bytes(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                b"\0" * 12,
            ),
            "share bytes",
        ),
    ],
    ids=["huge-header", "not-json", "outside", "wrong-size", "dtype", "overlap"],
)
def test_a_safetensors_header_that_lies_is_refused(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)

    with pytest.raises(CorruptModelFile, match=why) as caught:
        load_torch_state_dict(path, expected_sha256=None)

    assert caught.value.details["rule"] == ModelFileRule.BAD_HEADER
