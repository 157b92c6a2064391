"""Opening a premade request's source with its repository's client, then planning it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from kai.config import Settings
from kai.datasets.layouts import Layout
from kai.datasets.sources.huggingface import open_huggingface
from kai.datasets.sources.imagenet import open_imagenet
from kai.datasets.sources.kaggle import open_kaggle
from kai.datasets.sources.opened import OpenedSource, StageReport, plan_layout, silent_report
from kai.datasets.sources.references import Repository, SourceRef
from kai.datasets.sources.request import PremadeRequest
from kai.datasets.sources.textures import open_textures
from kai.datasets.sources.tfds import open_tfds


@contextmanager
def open_premade(
    request: PremadeRequest,
    settings: Settings,
    *,
    work_dir: Path | None = None,
    report: StageReport = silent_report,
) -> Iterator[tuple[OpenedSource, Layout]]:
    """Open the request's source and plan which of its images to ingest.

    Args:
        request: A checked request.
        settings: Supplies the import roots and the per-file and file-count limits.
        work_dir: Scratch space for the clients; a temporary folder when None.
        report: Told when each stage (``download``, ``extract``) starts and ends.

    Raises:
        NotFound, InvalidInput, InvalidDatasetLayout, PermissionDenied: As the
            repository's module raises them; every message names the dataset.
    """
    with ExitStack() as stack:
        if work_dir is None:
            settings.work_dir.mkdir(parents=True, exist_ok=True)
            scratch = stack.enter_context(tempfile.TemporaryDirectory(dir=settings.work_dir))
            work_dir = Path(scratch)
        opener = _opener(request.source, settings, work_dir, report)
        opened = stack.enter_context(opener)
        layout = plan_layout(opened, request.options, subject=describe_source(request.source))
        yield opened, layout


def describe_source(source: SourceRef) -> str:
    """How messages name a source: its repository and id."""
    return f"{source.repository.value} dataset {source.source_id.split(':', 1)[1]!r}"


def _opener(
    source: SourceRef, settings: Settings, work_dir: Path, report: StageReport
) -> AbstractContextManager[OpenedSource]:
    if source.repository is Repository.HUGGINGFACE:
        return open_huggingface(source, settings, work_dir=work_dir, report=report)
    if source.repository is Repository.KAGGLE:
        return open_kaggle(source, settings, report=report)
    if source.repository is Repository.TFDS:
        return open_tfds(source, settings, report=report)
    if source.repository is Repository.IMAGENET:
        return open_imagenet(source, settings, report=report)
    return open_textures(source.reference, settings, report=report)
