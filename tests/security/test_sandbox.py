"""Isolated work returns its result, or ends in a clear Kai error; the parent lives on.

Each test starts real child processes; the functions they run are defined at
module level so the child can import them by name.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from kai.errors import (
    IsolatedTaskFailed,
    MemoryLimitExceeded,
    TimeLimitExceeded,
    UnsafeModelFile,
)
from kai.security.model_files import load_torch_state_dict
from kai.security.sandbox import DEFAULT_ENV_ALLOWLIST, child_environment, run_isolated

MIB = 1024 * 1024
SECRETS = {
    "KAI_SECRET_KEY": "kai-secret-value",
    "KAI_DATABASE_URL": "postgresql://user:dbpass-value@db/kai",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
    "GITHUB_TOKEN": "token-value",
    "DB_PASSWORD": "password-value",
    "OPENAI_API_KEY": "api-key-value",
}


def describe(numbers: list[int], label: str) -> dict[str, object]:
    return {"label": label, "total": sum(numbers), "pid": os.getpid(), "pair": (1, 2.5, None)}


def read_environment() -> tuple[dict[str, str], bytes]:
    return dict(os.environ), Path("/proc/self/environ").read_bytes()


def allocate(num_bytes: int) -> int:
    block = bytearray(num_bytes)
    return len(block)


def sleep_recording_pid(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)


def kill_self(number: int) -> None:
    os.kill(os.getpid(), number)


def raise_kai_error() -> None:
    raise UnsafeModelFile("model.pt imports os.system", details={"import": "os.system"})


def raise_other_error() -> None:
    raise RuntimeError("parser exploded")


def return_a_path() -> Path:
    return Path("/etc")


def tensor_shapes(path: str) -> dict[str, list[int]]:
    weights = load_torch_state_dict(Path(path), expected_sha256=None)
    return {name: list(tensor.shape) for name, tensor in weights.items()}


def test_a_normal_result_comes_back_from_another_process() -> None:
    result = run_isolated(describe, [1, 2, 3], "tiles", memory_bytes=256 * MIB, timeout_seconds=60)

    assert result["label"] == "tiles"
    assert result["total"] == 6
    assert result["pair"] == (1, 2.5, None)
    assert result["pid"] != os.getpid()


def test_the_child_sees_no_secrets_even_in_its_initial_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LANG", "C.UTF-8")
    allowlist = (*DEFAULT_ENV_ALLOWLIST, "GITHUB_TOKEN", "KAI_DATABASE_URL")

    environ, initial = run_isolated(
        read_environment, memory_bytes=256 * MIB, timeout_seconds=60, env_allowlist=allowlist
    )

    assert environ["LANG"] == "C.UTF-8"
    assert not [name for name in environ if name.startswith("KAI_") or name in SECRETS]
    assert not [value for value in SECRETS.values() if value.encode() in initial]


def test_child_environment_keeps_only_allowlisted_harmless_names() -> None:
    environ = {"PATH": "/bin", "HOME": "/root", "KAI_DATA_DIR": "/d", "MY_TOKEN": "t", "X": "1"}

    kept = child_environment(("PATH", "KAI_DATA_DIR", "MY_TOKEN"), environ)

    assert kept == {"PATH": "/bin"}


def test_allocating_past_the_limit_ends_the_child_with_a_clear_error() -> None:
    with pytest.raises(MemoryLimitExceeded, match="the model file needed more than 64 MB"):
        run_isolated(
            allocate,
            1024 * MIB,
            memory_bytes=64 * MIB,
            timeout_seconds=60,
            subject="the model file",
        )


def test_a_sleeper_times_out_and_its_process_is_gone(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    with pytest.raises(TimeLimitExceeded, match="timed out after 5 s"):
        run_isolated(sleep_recording_pid, str(pid_file), memory_bytes=256 * MIB, timeout_seconds=5)

    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


@pytest.mark.parametrize(
    ("number", "error", "words"),
    [
        (signal.SIGKILL, MemoryLimitExceeded, "was killed (SIGKILL)"),
        (signal.SIGSEGV, IsolatedTaskFailed, "crashed (SIGSEGV)"),
    ],
    ids=["killed", "crashed"],
)
def test_a_child_ended_by_a_signal_becomes_a_kai_error(
    number: int, error: type[IsolatedTaskFailed], words: str
) -> None:
    with pytest.raises(error) as caught:
        run_isolated(kill_self, number, memory_bytes=256 * MIB, timeout_seconds=60)

    assert words in caught.value.message


def test_a_kai_error_in_the_child_is_raised_again_in_the_parent() -> None:
    with pytest.raises(UnsafeModelFile, match=r"imports os\.system") as caught:
        run_isolated(raise_kai_error, memory_bytes=256 * MIB, timeout_seconds=60)

    assert caught.value.details == {"import": "os.system"}


def test_other_errors_and_non_plain_results_become_isolated_task_failures() -> None:
    with pytest.raises(IsolatedTaskFailed, match="RuntimeError: parser exploded"):
        run_isolated(raise_other_error, memory_bytes=256 * MIB, timeout_seconds=60)
    with pytest.raises(IsolatedTaskFailed, match="plain data"):
        run_isolated(return_a_path, memory_bytes=256 * MIB, timeout_seconds=60)


def test_a_state_dict_can_be_inspected_in_isolation(tmp_path: Path) -> None:
    import torch  # here only: the children import this module, and torch is slow to import

    path = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(4, 3).state_dict(), path)

    shapes = run_isolated(
        tensor_shapes,
        str(path),
        memory_bytes=512 * MIB,
        timeout_seconds=120,
        preload_modules=("torch",),
        subject="the model file",
    )

    assert shapes == {"weight": [3, 4], "bias": [3]}
