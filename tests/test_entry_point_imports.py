"""Entry points start without the machine-learning libraries, which only jobs that need them load.

Every job process is forked from a server that has imported the job registry,
and the API and the CLI import the services; importing PyTorch or TensorFlow
there would add seconds to each start and hundreds of megabytes to each process.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "timm", "tensorflow", "keras", "sklearn", "optuna", "cleanlab", "onnxruntime")


@pytest.mark.parametrize("module", ["kai.registrations", "kai.api.app", "kai.cli.main"])
def test_entry_point_imports_no_machine_learning_library(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert completed.stdout.strip() == ""


@pytest.mark.parametrize("package", ["kai.quality", "kai.datasets", "kai.models", "kai.training"])
def test_each_service_package_imports_first(package: str) -> None:
    """A script may import any one service first; none depends on another being loaded."""
    completed = subprocess.run(
        [sys.executable, "-c", f"import {package}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
