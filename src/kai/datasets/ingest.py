"""Ingest: read a planned set of image files into the blob store as sample rows.

Files are read one after another from their file set (a ZIP stream or a
folder) and handed to a small thread pool that checks each image, stores its
original and its reduced copy as blobs and returns the sample's row. Pillow,
hashing and file writes release the GIL, so the threads overlap on several
cores while the number of images in flight stays bounded.

Nothing touches the database here: the rows are collected and the caller
writes them with the version in one transaction. An image that fails its
checks is skipped with its reason, within the configured bound
(``max_bad_files`` and ``max_bad_fraction``); past it the import fails.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kai.config import Settings, usable_cores
from kai.datasets.filesets import FileSet
from kai.datasets.layouts import MIN_CLASSES, Layout, PlannedFile, SkippedFile, require_classes
from kai.datasets.splits import SplitItem, assign_splits
from kai.db.tables import Split
from kai.errors import InvalidImage
from kai.security.images import ImageLimits, process_image
from kai.storage.blobs import BlobBatch, BlobStore

logger = logging.getLogger(__name__)

MAX_WORKERS = 4
MAX_IN_FLIGHT_BYTES = 256 * 1024 * 1024

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class IngestedSample:
    """A stored image with everything its sample row needs."""

    uid: str
    original_name: str
    label: str
    split: Split | None
    group: str | None
    blob_sha256: str
    blob_bytes: int
    reduced_sha256: str
    reduced_bytes: int
    width: int
    height: int
    format: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def row(self, version_id: int, split: Split) -> dict[str, object]:
        """The sample's row for a bulk insert into ``samples``."""
        return {
            "version_id": version_id,
            "uid": self.uid,
            "blob_sha256": self.blob_sha256,
            "reduced_sha256": self.reduced_sha256,
            "label": self.label,
            "split": split,
            "original_name": self.original_name,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "group": self.group,
            "metadata_": dict(self.metadata),
        }


@dataclass
class IngestResult:
    """What an ingest stored and what it left out.

    Attributes:
        samples: The stored images, in the order of the plan.
        skipped: Files left out, by name or because they failed their checks.
        bad_count: How many files failed their image checks.
        splits: The split of every sample by original name.
        split_source: ``folders`` or ``csv`` when the source gave the splits,
            ``stratified`` when Kai made them.
    """

    samples: list[IngestedSample]
    skipped: list[SkippedFile]
    bad_count: int
    splits: dict[str, Split] = field(default_factory=dict)
    split_source: str = "stratified"

    @property
    def blob_sizes(self) -> dict[str, int]:
        """Every blob the samples refer to, with its size in bytes."""
        sizes: dict[str, int] = {}
        for sample in self.samples:
            sizes[sample.blob_sha256] = sample.blob_bytes
            sizes[sample.reduced_sha256] = sample.reduced_bytes
        return sizes


class BadFileBudget:
    """Counts files that fail their checks and fails the import past the bound."""

    def __init__(self, settings: Settings, total: int) -> None:
        fraction_bound = int(settings.max_bad_fraction * total)
        self.allowed = min(settings.max_bad_files, fraction_bound)
        self.total = total
        self.bad: list[SkippedFile] = []

    def add(self, skipped: SkippedFile) -> None:
        """Record one bad file; raises InvalidImage once more than allowed are bad."""
        logger.warning("Skipping unreadable image %s: %s", skipped.name, skipped.reason)
        self.bad.append(skipped)
        if len(self.bad) <= self.allowed:
            return
        first = self.bad[0]
        raise InvalidImage(
            f"{len(self.bad)} of {self.total} images could not be read, more than the "
            f"{self.allowed} allowed (KAI_MAX_BAD_FILES, KAI_MAX_BAD_FRACTION); "
            f"first: {first.name!r}: {first.reason}",
            details={"bad": [{"name": b.name, "reason": b.reason} for b in self.bad[:20]]},
        )


class Ingester:
    """Stores the images of one import.

    Args:
        blobs: Where originals and reduced copies go.
        settings: Supplies the image limits, the bad-file bound and the split settings.
        progress: Called with (done, total) after each file.
        check_cancelled: Called before each file; raises to stop the import.
    """

    def __init__(
        self,
        blobs: BlobStore,
        settings: Settings,
        *,
        progress: ProgressCallback | None = None,
        check_cancelled: Callable[[], None] | None = None,
    ) -> None:
        self._blobs = blobs
        self._settings = settings
        self._limits = ImageLimits.from_settings(settings)
        self._progress = progress or (lambda done, total: None)
        self._check_cancelled = check_cancelled or (lambda: None)

    def ingest(
        self, files: FileSet, layout: Layout, *, min_classes: int = MIN_CLASSES
    ) -> IngestResult:
        """Store every planned image, then give each sample its split.

        Raises:
            InvalidImage: More images failed their checks than the bound allows.
            InvalidDatasetLayout: Fewer than two classes are left.
            UnsafeArchive: An archive entry broke a safety rule while streaming.
        """
        budget = BadFileBudget(self._settings, len(layout.files))
        self._batch: BlobBatch = self._blobs.batch()
        try:
            samples = self._store_all(files, layout.files, budget)
        except BaseException:
            self._batch.abort()
            raise
        # Durable before the caller's transaction makes a version refer to them.
        self._batch.flush()
        planned = (PlannedFile(s.original_name, s.label) for s in samples)
        require_classes(planned, min_classes=min_classes)
        result = IngestResult(samples, [*layout.skipped, *budget.bad], len(budget.bad))
        self._assign_splits(result, layout)
        return result

    def _store_all(
        self, files: FileSet, planned: list[PlannedFile], budget: BadFileBudget
    ) -> list[IngestedSample]:
        # One thread per core: blob writes no longer wait on the disk (the batch syncs once),
        # and more threads than cores only fight over the interpreter lock.
        workers = min(MAX_WORKERS, usable_cores())
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        pending: deque[tuple[Future[IngestedSample | SkippedFile], int]] = deque()
        samples: list[IngestedSample] = []
        in_flight_bytes = 0
        try:
            for item in planned:
                self._check_cancelled()
                data = files.read(item.name)
                pending.append((pool.submit(self._store_one, item, data), len(data)))
                in_flight_bytes += len(data)
                while pending and (
                    len(pending) > 2 * workers or in_flight_bytes > MAX_IN_FLIGHT_BYTES
                ):
                    in_flight_bytes -= self._collect(pending.popleft(), samples, budget)
                    self._progress(len(samples) + len(budget.bad), len(planned))
            while pending:
                self._collect(pending.popleft(), samples, budget)
                self._progress(len(samples) + len(budget.bad), len(planned))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return samples

    @staticmethod
    def _collect(
        entry: tuple[Future[IngestedSample | SkippedFile], int],
        samples: list[IngestedSample],
        budget: BadFileBudget,
    ) -> int:
        future, size = entry
        outcome = future.result()
        if isinstance(outcome, SkippedFile):
            budget.add(outcome)
        else:
            samples.append(outcome)
        return size

    def _store_one(self, item: PlannedFile, data: bytes) -> IngestedSample | SkippedFile:
        try:
            image = process_image(data, self._limits, name=item.name)
        except InvalidImage as exc:
            return SkippedFile(item.name, exc.message)
        blob_sha256 = self._put(data)
        reduced_sha256, reduced_bytes = blob_sha256, len(data)
        if image.reduced is not None:
            reduced_sha256, reduced_bytes = self._put(image.reduced), len(image.reduced)
        return IngestedSample(
            uid=new_uid(),
            original_name=item.name,
            label=item.label,
            split=item.split,
            group=item.group,
            blob_sha256=blob_sha256,
            blob_bytes=len(data),
            reduced_sha256=reduced_sha256,
            reduced_bytes=reduced_bytes,
            width=image.width,
            height=image.height,
            format=image.format.value,
            metadata=item.metadata,
        )

    def _put(self, data: bytes) -> str:
        return self._batch.put_bytes(data)

    def _assign_splits(self, result: IngestResult, layout: Layout) -> None:
        if layout.has_splits and all(sample.split for sample in result.samples):
            result.split_source = "csv" if layout.shape == "csv" else "folders"
            result.splits = {s.original_name: s.split for s in result.samples if s.split}
            return
        items = [SplitItem(s.original_name, s.label, s.group) for s in result.samples]
        result.splits = assign_splits(
            items, seed=self._settings.split_seed, fractions=self._settings.split_fractions
        )
        result.split_source = "stratified"


def new_uid() -> str:
    """A new sample uid: 32 hex digits, unique across datasets."""
    return uuid.uuid4().hex
