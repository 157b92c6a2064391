"""Loading PyTorch weights from files Kai did not make.

:func:`load_torch_state_dict` is the one way Kai turns a weights file into
tensors. In order, it:

1. checks the file's SHA-256 against the one recorded for its blob, so a
   swapped or damaged file is refused before any byte of it is parsed;
2. tells the format by content, never by name: a PyTorch zip checkpoint, a
   legacy PyTorch file, or safetensors;
3. for PyTorch files, walks every pickle with :mod:`kai.security.pickles`
   and refuses imports a state dict does not need (a whole pickled
   ``nn.Module`` is refused with the way to save a state dict instead);
4. loads with ``torch.load(..., weights_only=True, map_location="cpu")``,
   memory-mapped when the format allows, and never with
   ``weights_only=False``; safetensors files go through ``safetensors``
   after their header has been checked by hand;
5. returns a flat ``{name: tensor}`` mapping, unwrapping the common training
   checkpoint layouts (``{"state_dict": ...}``, ``{"model": ...}``).

Run it inside :func:`kai.security.sandbox.run_isolated` when the file is
large or its source unknown, so that a file that needs too much memory or
hits a parser bug ends a child process and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeGuard

from kai.errors import CorruptModelFile, UnsafeModelFile
from kai.security.pickles import ZIP_MAGIC, scan_torch_file

if TYPE_CHECKING:
    import torch

__all__ = [
    "STATE_DICT_KEYS",
    "ModelFileFormat",
    "ModelFileRule",
    "file_sha256",
    "load_torch_state_dict",
    "sniff_model_file",
]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
# The safetensors library refuses headers over 100 MB; Kai refuses them before it is asked.
MAX_SAFETENSORS_HEADER_BYTES = 100_000_000
# Keys under which training scripts keep the weights inside a larger checkpoint, most likely first.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "module")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SAFETENSORS_ITEM_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "U16": 2,
    "I16": 2,
    "F16": 2,
    "BF16": 2,
    "U32": 4,
    "I32": 4,
    "F32": 4,
    "U64": 8,
    "I64": 8,
    "F64": 8,
    "C64": 8,
}


class ModelFileFormat(StrEnum):
    """Weights file formats, told apart by their first bytes."""

    TORCH_ZIP = "torch_zip"
    TORCH_LEGACY = "torch_legacy"
    SAFETENSORS = "safetensors"


class ModelFileRule(StrEnum):
    """Why a weights file was refused; carried in ``details["rule"]``."""

    CHECKSUM_MISMATCH = "checksum_mismatch"
    UNKNOWN_FORMAT = "unknown_format"
    BAD_HEADER = "bad_safetensors_header"
    NOT_A_STATE_DICT = "not_a_state_dict"
    LOAD_FAILED = "load_failed"
    REFUSED_BY_TORCH = "refused_by_torch"


def load_torch_state_dict(path: Path, *, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    """Load a weights file's tensors on the CPU without running anything it holds.

    Args:
        path: A PyTorch checkpoint (``.pt``, ``.pth``, ``.bin``; zip or legacy)
            or a ``.safetensors`` file; the format is told by content.
        expected_sha256: The hex SHA-256 recorded for the file's blob; checked
            before anything else. Pass None only for a file Kai has not
            recorded yet, such as one being inspected right after upload.

    Returns:
        Parameter and buffer names mapped to CPU tensors.

    Raises:
        UnsafeModelFile: The checksum differs, a pickle imports something a
            state dict does not need (a pickled ``nn.Module`` included), or
            PyTorch's safe loader refused the file.
        CorruptModelFile: The file is damaged, in no format Kai reads, or holds
            something other than a mapping of names to tensors.
    """
    path = Path(path)
    if expected_sha256 is not None:
        _check_sha256(path, expected_sha256)
    file_format = sniff_model_file(path)
    if file_format is ModelFileFormat.SAFETENSORS:
        tensors = _load_safetensors(path)
    else:
        scan_torch_file(path)
        loaded = _torch_load(path, mmap=file_format is ModelFileFormat.TORCH_ZIP)
        tensors = _as_state_dict(loaded, path.name)
    logger.info("Loaded %d tensors from %s", len(tensors), path.name, extra={"format": file_format})
    return tensors


def sniff_model_file(path: Path) -> ModelFileFormat:
    """Tell a weights file's format from its first bytes, as the loaders do.

    Raises:
        CorruptModelFile: The file is in none of the formats Kai reads.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(ZIP_MAGIC):
        return ModelFileFormat.TORCH_ZIP
    if head[:1] == b"\x80":
        return ModelFileFormat.TORCH_LEGACY
    if len(head) == 9 and head[8:9] == b"{":
        return ModelFileFormat.SAFETENSORS
    _corrupt(
        f"{path.name} is neither a PyTorch checkpoint nor a safetensors file",
        ModelFileRule.UNKNOWN_FORMAT,
    )


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(path: Path, expected_sha256: str) -> None:
    expected = expected_sha256.lower()
    if not _SHA256.fullmatch(expected):
        raise ValueError(f"expected_sha256 must be 64 hex digits, not {expected_sha256!r}")
    actual = file_sha256(path)
    if not hmac.compare_digest(actual, expected):
        raise UnsafeModelFile(
            f"{path.name} has SHA-256 {actual}, not the recorded {expected}; the file was "
            "changed or damaged since it was stored, so Kai will not load it",
            details={"rule": ModelFileRule.CHECKSUM_MISMATCH, "file": path.name},
        )


# PyTorch files.


def _torch_load(path: Path, *, mmap: bool) -> object:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise UnsafeModelFile(
            f"PyTorch's safe loader refused {path.name}: {_first_line(exc)}",
            details={"rule": ModelFileRule.REFUSED_BY_TORCH, "file": path.name},
        ) from exc
    except (RuntimeError, EOFError, ValueError, TypeError, OSError, zipfile.BadZipFile) as exc:
        _corrupt(
            f"{path.name} could not be read as a PyTorch checkpoint: {_first_line(exc)}",
            ModelFileRule.LOAD_FAILED,
            exc,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _as_state_dict(loaded: object, name: str) -> dict[str, torch.Tensor]:
    """The flat tensor mapping in what ``torch.load`` returned."""
    if _is_tensor_mapping(loaded):
        return dict(loaded)
    if isinstance(loaded, Mapping):
        for key in STATE_DICT_KEYS:
            inner = loaded.get(key)
            if _is_tensor_mapping(inner):
                logger.debug("Using the %r entry of %s as its state dict", key, name)
                return dict(inner)
    what = (
        f"a mapping with keys {sorted(map(str, loaded))[:8]}"
        if isinstance(loaded, Mapping)
        else type(loaded).__name__
    )
    _corrupt(
        f"{name} holds {what}, not a state dict (parameter names mapped to tensors)",
        ModelFileRule.NOT_A_STATE_DICT,
    )


def _is_tensor_mapping(value: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
    import torch

    if not isinstance(value, Mapping) or not value:
        return False
    return all(
        isinstance(key, str) and isinstance(item, torch.Tensor) for key, item in value.items()
    )


# Safetensors files.


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    _check_safetensors_header(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        _corrupt(
            f"{path.name} could not be read as safetensors: {_first_line(exc)}",
            ModelFileRule.LOAD_FAILED,
            exc,
        )
    if not tensors:
        _corrupt(f"{path.name} holds no tensors", ModelFileRule.NOT_A_STATE_DICT)
    return tensors


def _check_safetensors_header(path: Path) -> None:
    """Refuse a header that is too big, not JSON, or points outside the file."""
    size_bytes = path.stat().st_size
    with open(path, "rb") as handle:
        (header_bytes,) = struct.unpack("<Q", handle.read(8))
        if header_bytes > MAX_SAFETENSORS_HEADER_BYTES or 8 + header_bytes > size_bytes:
            _bad_header(path, f"it declares a {header_bytes}-byte header")
        raw = handle.read(header_bytes)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _bad_header(path, f"its header is not JSON ({exc})")
    if not isinstance(header, dict):
        _bad_header(path, "its header is not a JSON object")
    data_bytes = size_bytes - 8 - header_bytes
    spans = [
        _tensor_span(path, name, entry, data_bytes)
        for name, entry in header.items()
        if name != "__metadata__"
    ]
    for (_, previous_end), (start, _) in zip(sorted(spans), sorted(spans)[1:], strict=False):
        if start < previous_end:
            _bad_header(path, "two tensors share bytes")


def _tensor_span(path: Path, name: str, entry: object, data_bytes: int) -> tuple[int, int]:
    if not isinstance(entry, dict):
        _bad_header(path, f"tensor {name!r} is not described by an object")
    item_bytes = _SAFETENSORS_ITEM_BYTES.get(str(entry.get("dtype")))
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if item_bytes is None:
        _bad_header(path, f"tensor {name!r} has unknown dtype {entry.get('dtype')!r}")
    if not _is_int_list(shape) or not _is_int_list(offsets) or len(offsets) != 2:
        _bad_header(path, f"tensor {name!r} has a malformed shape or data_offsets")
    start, end = offsets
    if not 0 <= start <= end <= data_bytes or end - start != math.prod(shape) * item_bytes:
        _bad_header(path, f"tensor {name!r} points outside the file or has the wrong size")
    return start, end


def _is_int_list(value: object) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
    )


def _bad_header(path: Path, why: str) -> NoReturn:
    _corrupt(f"{path.name} is not a valid safetensors file: {why}", ModelFileRule.BAD_HEADER)


def _corrupt(message: str, rule: ModelFileRule, cause: BaseException | None = None) -> NoReturn:
    raise CorruptModelFile(message, details={"rule": rule}) from cause
