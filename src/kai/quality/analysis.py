"""The analysis of one dataset version: read every image once, embed it, judge the whole set.

Nothing here touches the database: the caller hands in the sample rows, a
blob store and an :class:`~kai.quality.features.Embedder`, and stores the
:class:`Analysis` it gets back. Reduced copies are decoded on a small
thread pool (Pillow and numpy release the GIL), each distinct copy once,
however many samples share it; the embeddings come from the cache where
it has them. Without an embedder (or when embedding fails) the checks that
need embeddings are left out of the score and the report says why.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kai.config import usable_cores
from kai.db.tables import IssueType
from kai.errors import NotFound
from kai.quality.balance import compute_class_balance
from kai.quality.duplicates import find_duplicate_issues
from kai.quality.features import Embedder, Features, compute_features
from kai.quality.findings import Finding, Thresholds
from kai.quality.image_checks import find_image_issues
from kai.quality.images import ImageStats, UnreadableImage, compute_image_stats, read_orientation
from kai.quality.label_errors import find_label_errors
from kai.quality.outliers import find_outliers
from kai.quality.recommendations import compute_recommendations
from kai.quality.samples import Inspected, SampleRecord
from kai.quality.score import compute_score
from kai.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

MAX_WORKERS = 4
_CHUNK = 256
# Fewer images than this are inspected in this process: starting workers would cost more.
_MIN_FOR_PROCESSES = 200
# Images a worker takes at a time.
_PROCESS_BATCH = 16
NO_EMBEDDER = "no backbone was given to the analysis"
_EMBEDDING_FAMILIES = ("labelErrors", "outliers")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Analysis:
    """A finished analysis, ready to be stored as a report."""

    score: float
    needs_improvement: bool
    metrics: dict[str, Any]
    score_breakdown: dict[str, Any]
    recommendations: list[dict[str, Any]]
    findings: list[Finding]
    issue_counts: dict[str, int] = field(default_factory=dict)


def analyse_samples(
    records: Sequence[SampleRecord],
    blobs: BlobStore,
    *,
    thresholds: Thresholds | None = None,
    embedder: Embedder | str | None = None,
    progress: Progress | None = None,
    embedding_progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> Analysis:
    """Inspect every sample's image, embed it, and run every check.

    Args:
        records: The version's samples.
        blobs: Where the reduced copies and originals are.
        thresholds: The checks' thresholds; the defaults when None.
        embedder: How to embed the images; a string says why there is no embedder.
        progress: Called with (done, total) while images are read.
        embedding_progress: Called with (done, total) while images are embedded.
        check_cancelled: Called between chunks; raises to stop.
    """
    thresholds = thresholds or Thresholds()
    inspected = inspect_samples(records, blobs, progress=progress, check_cancelled=check_cancelled)
    if not isinstance(embedder, Embedder):
        return judge(inspected, thresholds, embedder or NO_EMBEDDER)
    features = compute_features(
        inspected,
        blobs,
        embedder,
        progress=embedding_progress,
        check_cancelled=check_cancelled,
    )
    return judge(inspected, thresholds, features)


def inspect_samples(
    records: Sequence[SampleRecord],
    blobs: BlobStore,
    *,
    progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> list[Inspected]:
    """Read each distinct reduced copy once and each rotated original's header.

    Decoding and the statistics run in a pool of processes, one per core, once
    there are enough images to pay for starting it; the files are read here,
    a chunk at a time, so memory stays bounded whatever the dataset's size.
    """
    cache: dict[str, tuple[ImageStats | None, str | None, int]] = {}
    report = progress or (lambda done, total: None)
    with _statistics_pool(len(records)) as compute:
        for start in range(0, len(records), _CHUNK):
            if check_cancelled is not None:
                check_cancelled()
            chunk = [r for r in records[start : start + _CHUNK] if _cache_key(r) not in cache]
            unique = list({_cache_key(r): r for r in chunk}.values())
            contents = [_read(record, blobs) for record in unique]
            for record, outcome in zip(unique, compute(contents), strict=True):
                stats, error = outcome
                if error is not None:
                    logger.warning("Quality check cannot read sample %s: %s", record.uid, error)
                    cache[_cache_key(record)] = (None, error, 1)
                else:
                    cache[_cache_key(record)] = (stats, None, _orientation(record, blobs))
            report(min(start + _CHUNK, len(records)), len(records))
    return [Inspected(record, *cache[_cache_key(record)]) for record in records]


StatsOutcome = tuple[ImageStats | None, str | None]


@contextmanager
def _statistics_pool(count: int) -> Iterator[Callable[[list[bytes | str]], list[StatsOutcome]]]:
    """A function computing the statistics of a chunk of files, on every core when it pays."""
    cores = usable_cores()
    if cores < 2 or count < _MIN_FOR_PROCESSES:
        yield lambda contents: [_statistics(content) for content in contents]
        return
    # Forked, so the workers start at once with the modules already imported.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(cores, MAX_WORKERS), mp_context=context) as pool:
        yield lambda contents: list(pool.map(_statistics, contents, chunksize=_PROCESS_BATCH))


def _read(record: SampleRecord, blobs: BlobStore) -> bytes | str:
    """The reduced copy's bytes, or why it cannot be read."""
    try:
        return blobs.read_bytes(record.reduced_sha256)
    except (NotFound, OSError) as exc:
        return str(exc)


def _statistics(content: bytes | str) -> StatsOutcome:
    if isinstance(content, str):
        return None, content
    try:
        return compute_image_stats(content), None
    except UnreadableImage as exc:
        return None, str(exc)


def judge(
    inspected: Sequence[Inspected], thresholds: Thresholds, features: Features | str
) -> Analysis:
    """Run the checks on inspected samples and score the result.

    Args:
        inspected: The samples with what their images showed.
        thresholds: The checks' thresholds.
        features: The samples' embeddings, or why there are none.
    """
    records = [sample.record for sample in inspected]
    balance = compute_class_balance(records, thresholds)
    embedded = features if isinstance(features, Features) else None
    duplicates = find_duplicate_issues(inspected, thresholds, embedded)
    findings = [*find_image_issues(inspected, thresholds), *duplicates.findings]
    embedding_findings, skipped, embedding_metrics = _embedding_checks(
        inspected, features, thresholds
    )
    findings.extend(embedding_findings)
    affected: dict[IssueType, set[str]] = {}
    for finding in findings:
        affected.setdefault(finding.issue_type, set()).add(finding.sample_uid)
    balance_share = max(min(1.0, (balance.imbalance_ratio - 1.0) / 9.0), balance.too_few_share)
    score = compute_score(
        sample_count=len(records),
        affected=affected,
        balance_share=balance_share,
        skipped=skipped,
    )
    counts = {issue_type.value: len(uids) for issue_type, uids in sorted(affected.items())}
    metrics = {
        "sampleCount": len(records),
        "samplesWithIssues": len(set().union(*affected.values())) if affected else 0,
        "images": _image_metrics(inspected),
        "classes": balance.metrics(),
        "duplicates": {
            "exactClusters": duplicates.exact_clusters,
            "copyClusters": duplicates.near_clusters,
            "leakingComponents": duplicates.leaking_components,
        },
        "embeddings": embedding_metrics,
        "thresholds": _thresholds(thresholds),
    }
    return Analysis(
        score=score.value,
        needs_improvement=score.needs_improvement,
        metrics=metrics,
        score_breakdown=score.breakdown,
        recommendations=compute_recommendations(findings, balance, thresholds),
        findings=findings,
        issue_counts=counts,
    )


def _embedding_checks(
    inspected: Sequence[Inspected], features: Features | str, thresholds: Thresholds
) -> tuple[list[Finding], dict[str, str], dict[str, Any]]:
    """Label errors and outliers: their findings, the families skipped, and the metrics."""
    if isinstance(features, str):
        skipped = {
            family: f"the embedding checks did not run: {features}"
            for family in _EMBEDDING_FAMILIES
        }
        return [], skipped, {"ran": False, "reason": features}
    metrics: dict[str, Any] = {
        "ran": True,
        "backbone": features.identity,
        "embedded": len(features.positions),
        "dimension": int(features.vectors.shape[1]),
    }
    findings: list[Finding] = []
    skipped = {}
    checks = (
        ("labelErrors", find_label_errors(inspected, features, thresholds)),
        ("outliers", find_outliers(inspected, features, thresholds)),
    )
    for family, outcome in checks:
        if isinstance(outcome, str):
            skipped[family] = outcome
            metrics[family] = {"ran": False, "reason": outcome}
        else:
            findings.extend(outcome.findings)
            metrics[family] = outcome.metrics
    return findings, skipped, metrics


def _cache_key(record: SampleRecord) -> str:
    return f"{record.reduced_sha256}:{record.blob_sha256}"


def _orientation(record: SampleRecord, blobs: BlobStore) -> int:
    # Ingest keeps the original as its own reduced copy only when it is small and upright.
    if record.reduced_sha256 == record.blob_sha256:
        return 1
    try:
        with blobs.open(record.blob_sha256) as handle:
            return read_orientation(handle)
    except (NotFound, OSError):
        return 1


def _image_metrics(inspected: Sequence[Inspected]) -> dict[str, Any]:
    stats = [sample.stats for sample in inspected if sample.stats is not None]
    if not stats:
        return {"readable": 0, "unreadable": len(inspected)}
    return {
        "readable": len(stats),
        "unreadable": len(inspected) - len(stats),
        "meanBrightness": round(sum(s.brightness for s in stats) / len(stats), 4),
        "meanContrast": round(sum(s.contrast for s in stats) / len(stats), 4),
        "meanEntropyBits": round(sum(s.entropy_bits for s in stats) / len(stats), 3),
        "medianLaplacianVariance": _median([s.laplacian_var for s in stats]),
        "grayscaleShare": round(sum(s.is_grayscale for s in stats) / len(stats), 4),
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return float(f"{ordered[len(ordered) // 2]:.4g}")


def _thresholds(thresholds: Thresholds) -> dict[str, float]:
    return {
        "minSidePx": thresholds.min_side_px,
        "maxAspectRatio": thresholds.max_aspect_ratio,
        "blurLaplacianVariance": thresholds.blur_laplacian_var,
        "blurReblurMin": thresholds.blur_reblur_min,
        "darkBrightness": thresholds.dark_brightness,
        "brightBrightness": thresholds.bright_brightness,
        "lowContrastStd": thresholds.low_contrast_std,
        "lowInformationBits": thresholds.low_information_bits,
        "nearDuplicateBits": thresholds.near_duplicate_bits,
        "minImagesPerClass": thresholds.min_images_per_class,
        "imbalanceRatio": thresholds.imbalance_ratio,
        "embeddingDuplicateSimilarity": thresholds.embedding_duplicate_similarity,
        "embeddingDuplicateShare": thresholds.embedding_duplicate_share,
        "embeddingDuplicateGapShare": thresholds.embedding_duplicate_gap_share,
        "embeddingDuplicateGap": thresholds.embedding_duplicate_gap,
        "outlierSpreads": thresholds.outlier_spreads,
    }
