"""Running risky work in a child process with a memory cap, a time limit and no secrets.

Parsing a model file from a stranger can need unbounded memory, hang, or
hit a bug in a native parser. :func:`run_isolated` runs such work in a fresh
Python interpreter so that whatever happens ends that child and nothing else:

- the child is started with ``exec``, not forked, and its environment holds
  only allowlisted variables, minus anything that looks secret (``KAI_*``,
  ``AWS_*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*KEY*``...), so not
  even ``/proc/self/environ`` shows the server's secrets;
- before the function runs, its data segment is capped with
  ``RLIMIT_DATA`` at what the interpreter holds by then (modules of the
  function and of ``preload_modules`` included) plus ``memory_bytes``, and
  core dumps are off;
- a wall-clock timeout kills the child's whole process group;
- the result comes back pickled but is read by an unpickler that imports
  nothing, so a child taken over by a hostile file cannot run code in the
  parent through it. Results are therefore plain data: None, booleans,
  numbers, strings, bytes, and lists, tuples, dicts and sets of them.

A :class:`~kai.errors.KaiError` raised in the child is raised again in the
parent with its message and details; other failures become
:class:`~kai.errors.IsolatedTaskFailed`, :class:`~kai.errors.MemoryLimitExceeded`
or :class:`~kai.errors.TimeLimitExceeded`, each naming the limit. Starting a
child costs an interpreter start plus the imports the function needs.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import re
import resource
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

from kai import errors
from kai.errors import IsolatedTaskFailed, KaiError, MemoryLimitExceeded, TimeLimitExceeded

__all__ = [
    "DEFAULT_ENV_ALLOWLIST",
    "MAX_RESULT_BYTES",
    "child_environment",
    "run_isolated",
]

logger = logging.getLogger(__name__)

R = TypeVar("R")

MIB = 1024 * 1024
MAX_RESULT_BYTES = 64 * MIB
STDERR_TAIL_LINES = 20
DEFAULT_ENV_ALLOWLIST = (
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
)
# Dropped even when allowlisted: names that carry credentials by convention.
_SECRET_NAME = re.compile(
    r"^KAI_|^AWS_|^AZURE_|^GOOGLE_|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|(^|_)KEY($|_)",
    re.IGNORECASE,
)
_ALLOCATION_FAILURE = re.compile(r"can't allocate memory|out of memory|bad_alloc", re.IGNORECASE)
_BOOTSTRAP = (
    "import sys; sys.path[:0] = sys.argv[4:]; "
    "from kai.security.sandbox import _child_main; "
    "_child_main(int(sys.argv[1]), sys.argv[2], sys.argv[3])"
)


def run_isolated(
    func: Callable[..., R],
    *args: object,
    memory_bytes: int,
    timeout_seconds: float,
    env_allowlist: Collection[str] = DEFAULT_ENV_ALLOWLIST,
    preload_modules: Sequence[str] = (),
    subject: str = "the isolated task",
) -> R:
    """Call ``func(*args)`` in a fresh child process and return its result.

    Args:
        func: A module-level function, picklable by reference.
        *args: Its arguments; picklable, and trusted (they come from Kai).
        memory_bytes: Memory the call may allocate beyond what the child holds
            once ``func``'s module and ``preload_modules`` are imported.
        timeout_seconds: Wall-clock limit for the whole child, start-up included.
        env_allowlist: Environment variables the child may see; secret-looking
            names are dropped even when listed.
        preload_modules: Modules to import before the memory cap is set, such
            as ``"torch"`` when ``func`` imports it lazily.
        subject: What the work is, for messages: "the model file".

    Returns:
        What ``func`` returned: plain data only (see the module docstring).

    Raises:
        KaiError: Whatever Kai error ``func`` raised, rebuilt from its code and details.
        MemoryLimitExceeded: The call needed more than ``memory_bytes``.
        TimeLimitExceeded: The child ran longer than ``timeout_seconds``.
        IsolatedTaskFailed: The child crashed, was killed, raised a non-Kai
            error or returned something other than plain data.
    """
    limits = _Limits(memory_bytes, timeout_seconds, subject)
    with tempfile.TemporaryDirectory(prefix="kai-isolated-") as work:
        work_dir = Path(work)
        payload_path, result_path = work_dir / "payload.pickle", work_dir / "result.pickle"
        payload_path.write_bytes(pickle.dumps((func, args, tuple(preload_modules))))
        stderr_path = work_dir / "stderr.txt"
        command = [
            sys.executable,
            "-I",
            "-c",
            _BOOTSTRAP,
            str(memory_bytes),
            str(payload_path),
            str(result_path),
            *[entry for entry in sys.path if entry],
        ]
        returncode = _run_child(command, child_environment(env_allowlist), stderr_path, limits)
        return cast(R, _outcome(result_path, stderr_path, returncode, limits))


def child_environment(
    env_allowlist: Collection[str] = DEFAULT_ENV_ALLOWLIST,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a child gets: allowlisted names, never secret-looking ones."""
    source = os.environ if environ is None else environ
    allowed = set(env_allowlist)
    return {
        name: value
        for name, value in source.items()
        if name in allowed and not _SECRET_NAME.search(name)
    }


class _Limits:
    def __init__(self, memory_bytes: int, timeout_seconds: float, subject: str) -> None:
        if memory_bytes <= 0 or timeout_seconds <= 0:
            raise ValueError("memory_bytes and timeout_seconds must be positive")
        self.memory_bytes = memory_bytes
        self.timeout_seconds = timeout_seconds
        self.subject = subject

    @property
    def memory_text(self) -> str:
        return f"{self.memory_bytes / MIB:.0f} MB"


# The parent's side.


def _run_child(command: list[str], env: dict[str, str], stderr_path: Path, limits: _Limits) -> int:
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            return process.wait(timeout=limits.timeout_seconds)
        except subprocess.TimeoutExpired:
            logger.warning("Killing %s after %.1f s", limits.subject, limits.timeout_seconds)
            raise TimeLimitExceeded(
                f"{limits.subject} timed out after {limits.timeout_seconds:g} s",
                details={"timeout_seconds": limits.timeout_seconds},
            ) from None
        finally:
            _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the child and anything it started; it leads its own process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _outcome(result_path: Path, stderr_path: Path, returncode: int, limits: _Limits) -> object:
    tail = _stderr_tail(stderr_path)
    if returncode < 0:
        _raise_for_signal(-returncode, limits, tail)
    if not result_path.exists():
        raise IsolatedTaskFailed(
            f"{limits.subject} exited with status {returncode} without a result",
            details={"returncode": returncode, "stderr": tail},
        )
    if result_path.stat().st_size > MAX_RESULT_BYTES:
        raise IsolatedTaskFailed(
            f"{limits.subject} returned more than {MAX_RESULT_BYTES} bytes",
            details={"stderr": tail},
        )
    report = _plain_loads(result_path.read_bytes(), limits)
    return _unpack_report(report, limits, tail)


def _raise_for_signal(number: int, limits: _Limits, tail: list[str]) -> NoReturn:
    name = _signal_name(number)
    details = {"signal": name, "stderr": tail}
    if number == signal.SIGKILL:
        raise MemoryLimitExceeded(
            f"{limits.subject} was killed ({name}), most likely for needing more memory "
            f"than the machine could give (its limit was {limits.memory_text})",
            details=details,
        )
    raise IsolatedTaskFailed(f"{limits.subject} crashed ({name})", details=details)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stderr_tail(path: Path) -> list[str]:
    try:
        lines = path.read_bytes()[-16_384:].decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    return lines[-STDERR_TAIL_LINES:]


class _PlainDataUnpickler(pickle.Unpickler):
    """Builds only what pickle makes without imports: containers, numbers, strings, bytes."""

    def find_class(self, module: str, name: str) -> NoReturn:
        raise pickle.UnpicklingError(f"results must be plain data, not {module}.{name}")

    def persistent_load(self, pid: object) -> NoReturn:
        raise pickle.UnpicklingError("results must not carry persistent ids")


def _plain_loads(data: bytes, limits: _Limits) -> object:
    try:
        return _PlainDataUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, ValueError, EOFError, TypeError, RecursionError) as exc:
        raise IsolatedTaskFailed(
            f"{limits.subject} returned something other than plain data: {exc}"
        ) from exc


def _unpack_report(report: object, limits: _Limits, tail: list[str]) -> object:
    if not isinstance(report, tuple) or not report:
        raise IsolatedTaskFailed(f"{limits.subject} sent a malformed report")
    kind = report[0]
    if kind == "ok" and len(report) == 2:
        return report[1]
    if kind == "memory":
        raise MemoryLimitExceeded(
            f"{limits.subject} needed more than {limits.memory_text} of memory",
            details={"memory_bytes": limits.memory_bytes},
        )
    if kind == "kai_error" and len(report) == 4:
        raise _rebuilt_kai_error(*report[1:])
    if kind == "error" and len(report) == 3:
        raise IsolatedTaskFailed(
            f"{limits.subject} failed: {report[1]}: {report[2]}",
            details={"error": str(report[1]), "stderr": tail},
        )
    raise IsolatedTaskFailed(f"{limits.subject} sent a malformed report")


def _rebuilt_kai_error(class_name: object, message: object, details: object) -> KaiError:
    """The child's Kai error, rebuilt only as a class of :mod:`kai.errors`."""
    cls = getattr(errors, str(class_name), None)
    if not (isinstance(cls, type) and issubclass(cls, KaiError)):
        cls = IsolatedTaskFailed
    return cls(str(message), details=dict(details) if isinstance(details, dict) else {})


# The child's side.


def _child_main(memory_bytes: int, payload_path: str, result_path: str) -> None:
    """Entry point of the child: load the call, cap memory, run, report."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # The payload was written by the parent process, never by a user.
    payload = Path(payload_path).read_bytes()
    func, args, preload_modules = pickle.loads(payload)  # noqa: S301
    for module in preload_modules:
        __import__(module)
    _cap_memory(memory_bytes)
    report = _call(func, args)
    data = pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        _PlainDataUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        data = pickle.dumps(("error", "TypeError", str(exc)))
    Path(result_path).write_bytes(data)


def _cap_memory(memory_bytes: int) -> None:
    limit = _data_segment_bytes() + memory_bytes
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _data_segment_bytes() -> int:
    """What the process's data segment holds now (VmData), or 0 where /proc has no answer."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmData:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def _call(func: Callable[..., object], args: tuple[Any, ...]) -> tuple[object, ...]:
    try:
        return ("ok", func(*args))
    except MemoryError:
        return ("memory",)
    except KaiError as exc:
        details = json.loads(json.dumps(exc.details, default=str))
        return ("kai_error", type(exc).__name__, exc.message, details)
    except Exception as exc:  # reported to the parent, which raises it as a Kai error
        if _ALLOCATION_FAILURE.search(str(exc)):
            return ("memory",)
        traceback.print_exc()
        return ("error", type(exc).__name__, str(exc))
