"""Runs a Kai Celery worker with the sample job kinds; the Celery tests start it."""

from __future__ import annotations

import sample_job_handlers

from kai.config import load_settings
from kai.jobs.celery_app import run_celery_worker
from kai.logs import configure_logging


def main() -> None:
    configure_logging(level="INFO", json_lines=True)
    run_celery_worker(load_settings(), sample_job_handlers.create_registry(), concurrency=2)


if __name__ == "__main__":
    main()
