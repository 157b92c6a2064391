"""The one place where the services' job kinds are registered.

Each entry point (``kai serve``, ``kai worker``, the CLI) builds a
:class:`~kai.jobs.registry.JobRegistry` and calls :func:`register_job_handlers`
once, so the jobs layer learns the kinds without importing any service.
"""

from __future__ import annotations

from kai import datasets, evaluation, models, quality, training
from kai.datasets.sources import premade
from kai.jobs.registry import JobRegistry


def register_job_handlers(registry: JobRegistry) -> None:
    """Add every service's job kinds to ``registry``.

    Args:
        registry: A registry without Kai's kinds in it yet.
    """
    datasets.register_job_handlers(registry)
    evaluation.register_job_handlers(registry)
    models.register_job_handlers(registry)
    premade.register_job_handlers(registry)
    quality.register_job_handlers(registry)
    training.register_job_handlers(registry)
