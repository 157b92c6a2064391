"""The registry of job kinds.

The jobs layer knows job kinds only through this registry. Each entry point
fills it by an explicit call at start-up; the registry is then handed to the
runners, and pickled into each job's child process by reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kai.errors import InvalidInput

if TYPE_CHECKING:
    from kai.jobs.context import JobContext

JobHandler = Callable[["JobContext"], dict[str, Any]]
FailureHook = Callable[["JobContext", str], None]


@dataclass(frozen=True)
class JobKind:
    """How to run one type of job.

    Attributes:
        name: The job type stored on the record, such as ``dataset.import``.
        handler: Runs the job in its child process; returns the job's result.
        on_failure: Called once when the job ends failed or cancelled, with the
            reason, so the service can mark what the job was making as failed.
    """

    name: str
    handler: JobHandler
    on_failure: FailureHook | None = None


@dataclass
class JobRegistry:
    """Job kinds by name."""

    kinds: dict[str, JobKind] = field(default_factory=dict)

    def register(
        self,
        name: str,
        handler: JobHandler,
        *,
        on_failure: FailureHook | None = None,
    ) -> None:
        """Add a job kind; registering a name twice is a programming error."""
        if name in self.kinds:
            raise ValueError(f"Job type {name!r} is registered twice")
        self.kinds[name] = JobKind(name, handler, on_failure)

    def resolve(self, name: str) -> JobKind:
        """The kind registered under ``name``."""
        try:
            return self.kinds[name]
        except KeyError as exc:
            raise InvalidInput(
                f"Unknown job type {name!r}; known types: {sorted(self.kinds)}"
            ) from exc
