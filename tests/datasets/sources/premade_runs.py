"""The type of the fixture that runs a premade import, importable by the tests that use it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Runs a premade import job and gives (dataset id, result, error).
RunPremade = Callable[..., tuple[int, dict[str, Any] | None, str | None]]
