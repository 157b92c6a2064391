"""Quality benchmark: Kai against cleanvision, and Kai's embedding search against imagededup.

The first comparison builds a dataset from real textures (scikit-image's
bundled brick, grass and gravel photographs and a stained-tissue micrograph,
cropped at several scales, turned and tinted) with known injected issues:
exact and near duplicates, blurred and darkened images, flipped labels and
copies leaked across splits. Kai imports it and analyses it; cleanvision
checks the same files in the same run. Speed is compared on the issues both
detect (dark, blurry, exact and near duplicates), with Kai's embedding
backbone off; Kai's full analysis (embeddings, label errors, outliers) is
timed apart, with a cold and then a warm embedding cache.

The second comparison plants near copies (crops, flips, rotations, aspect
changes, re-encoding) among distinct images and runs imagededup's CNN
finder beside Kai's cached-embedding search. imagededup's default CNN
downloads its weights, which this machine cannot do, so it is handed the
same bundled EfficientNet-Lite0 backbone through its ``CustomModel`` hook.

    .venv/bin/python benchmarks/quality.py             # 2,000 + 10,000 images
    .venv/bin/python benchmarks/quality.py --quick     # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from rich.console import Console
from rich.table import Table

SEED = 20261204
IMAGE_SIZE_PX = 128
CROP_SIZES_PX = (96, 128, 192, 256)
SPLIT_SHARES = (("train", 0.8), ("val", 0.1), ("test", 0.1))
INJECTED_SHARE = 0.02
FLIPPED_SHARE = 0.05
COPY_SHARE = 0.1
TARGET_SPEED_RATIO = 3.0
TARGET_JACCARD = 0.9
TARGET_LABEL_RECALL = 0.8
TARGET_LABEL_PRECISION = 0.7
TARGET_DEDUP_RATIO = 10.0
SHARED_TYPES = ("dark", "blurry", "exact_duplicates", "near_duplicates")
# cleanvision gives these a score per image; its duplicate checks only group equal hashes.
SCORED_TYPES = ("dark", "blurry")
KAI_TYPES = {
    "dark": ("too_dark",),
    "blurry": ("blurry",),
    "exact_duplicates": ("exact_duplicate",),
    "near_duplicates": ("near_duplicate",),
    "label_errors": ("label_error",),
    "leakage": ("exact_leakage", "near_leakage"),
}
QUICK_IMAGES = 120
QUICK_DEDUP_IMAGES = 80


@dataclass(frozen=True)
class Options:
    """What to run, from the command line."""

    images: int
    dedup_images: int
    quick: bool
    skip_dedup: bool
    out_dir: Path | None
    backbone: str
    embedding_size_px: int


@dataclass
class Planted:
    """The files of a benchmark dataset and which carry which injected issue."""

    files: dict[str, bytes] = field(default_factory=dict)
    truth: dict[str, set[str]] = field(default_factory=dict)

    def mark(self, issue: str, *names: str) -> None:
        self.truth.setdefault(issue, set()).update(names)


@dataclass(frozen=True)
class Scores:
    """Precision and recall of one flagged set against the truth."""

    flagged: int
    precision: float
    recall: float


# Real textures.


def load_textures() -> dict[str, NDArray[np.float32]]:
    """The bundled photographs, as float RGB in [0, 1], by class name."""
    from skimage import data

    tints = {"brick": (1.0, 0.72, 0.6), "grass": (0.7, 1.0, 0.6), "gravel": (0.9, 0.9, 0.95)}
    found = {}
    for name, tint in tints.items():
        grey = getattr(data, name)().astype(np.float32) / 255.0
        found[name] = np.stack([grey * t for t in tint], axis=2)
    found["tissue"] = data.immunohistochemistry().astype(np.float32) / 255.0
    return found


def load_photos() -> list[NDArray[np.float32]]:
    """Every bundled photograph that ships in the package, for diverse dedup images."""
    from skimage import data

    names = ["astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel"]
    names += ["hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket"]
    photos = []
    for name in names:
        pixels = np.asarray(getattr(data, name)(), dtype=np.float32) / 255.0
        photos.append(np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels)
    return photos


def crop(rng: np.random.Generator, source: NDArray[np.float32]) -> Image.Image:
    """A random crop at one of several scales, turned, flipped and lit at random."""
    side = int(rng.choice([s for s in CROP_SIZES_PX if s <= min(source.shape[:2])]))
    top = int(rng.integers(0, source.shape[0] - side + 1))
    left = int(rng.integers(0, source.shape[1] - side + 1))
    patch = np.rot90(source[top : top + side, left : left + side, :3], int(rng.integers(4)))
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    lit = np.clip(patch * rng.uniform(0.8, 1.2) * rng.uniform(0.9, 1.1, 3), 0, 1)
    image = Image.fromarray((lit * 255).astype(np.uint8))
    return image.resize((IMAGE_SIZE_PX, IMAGE_SIZE_PX), Image.Resampling.BILINEAR)


def distinct_image(rng: np.random.Generator, photos: Sequence[NDArray[np.float32]]) -> Image.Image:
    """Two crops of different photographs blended, with a few random shapes drawn on top.

    Crops of one photograph alone look alike to any embedding; the blend and
    the shapes make every image its own, so only planted copies are copies.
    """
    first, second = (int(i) for i in rng.choice(len(photos), size=2, replace=False))
    blend = Image.blend(crop(rng, photos[first]), crop(rng, photos[second]), 0.4)
    draw = ImageDraw.Draw(blend)
    for _ in range(int(rng.integers(3, 7))):
        x, y = (int(v) for v in rng.integers(0, IMAGE_SIZE_PX, 2))
        w, h = (int(v) for v in rng.integers(12, 60, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=colour)
    return blend


def encode(image: Image.Image, fmt: str = "PNG", **options: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def near_copy(data: bytes, rng: np.random.Generator) -> bytes:
    """The image slightly cropped, resized and re-encoded as JPEG."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    margin = int(rng.integers(2, 6))
    box = (margin, margin, IMAGE_SIZE_PX - margin, IMAGE_SIZE_PX - margin)
    resized = rgb.crop(box).resize((112, 112), Image.Resampling.BICUBIC)
    return encode(resized, "JPEG", quality=85)


# The first dataset: injected issues.


def build_planted(num_images: int, seed: int = SEED) -> Planted:
    """``num_images`` textures in class and split folders, then the injected issues on top."""
    rng = np.random.default_rng(seed)
    textures = load_textures()
    labels = sorted(textures)
    planted = Planted()
    base: list[tuple[str, str, str]] = []
    for index in range(num_images):
        label = labels[index % len(labels)]
        split = _split(rng)
        name = f"{split}/{label}/{label}_{index:05d}.png"
        planted.files[name] = encode(crop(rng, textures[label]))
        base.append((name, split, label))
    order = [int(i) for i in rng.permutation(len(base))]
    count = max(2, round(INJECTED_SHARE * num_images))
    flipped = max(2, round(FLIPPED_SHARE * num_images))
    picks = _take(order, [count, count, count, count, count, flipped])
    _inject_copies(planted, [base[i] for i in picks[0]], rng, exact=True)
    _inject_copies(planted, [base[i] for i in picks[1]], rng, exact=False)
    _inject_leaks(planted, [base[i] for i in picks[2] if base[i][1] == "train"])
    _inject_edits(planted, [base[i] for i in picks[3]], "blurry", _blur)
    _inject_edits(planted, [base[i] for i in picks[4]], "dark", _darken)
    _flip_labels(planted, [base[i] for i in picks[5]], labels, rng)
    return planted


def _split(rng: np.random.Generator) -> str:
    draw, total = rng.random(), 0.0
    for name, share in SPLIT_SHARES:
        total += share
        if draw < total:
            return name
    return "train"


def _take(order: list[int], sizes: Sequence[int]) -> list[list[int]]:
    picks, start = [], 0
    for size in sizes:
        picks.append(order[start : start + size])
        start += size
    return picks


def _inject_copies(
    planted: Planted,
    chosen: Iterable[tuple[str, str, str]],
    rng: np.random.Generator,
    *,
    exact: bool,
) -> None:
    issue = "exact_duplicates" if exact else "near_duplicates"
    for name, _, _ in chosen:
        data = planted.files[name]
        suffix = ".png" if exact else ".jpg"
        copy = name.replace(".png", f"_copy{suffix}")
        planted.files[copy] = data if exact else near_copy(data, rng)
        planted.mark(issue, name, copy)


def _inject_leaks(planted: Planted, chosen: Iterable[tuple[str, str, str]]) -> None:
    for index, (name, _, label) in enumerate(chosen):
        split = "val" if index % 2 else "test"
        leaked = f"{split}/{label}/leaked_{Path(name).stem}.png"
        planted.files[leaked] = planted.files[name]
        planted.mark("leakage", leaked)
        planted.mark("exact_duplicates", name, leaked)


def _inject_edits(
    planted: Planted,
    chosen: Iterable[tuple[str, str, str]],
    issue: str,
    edit: Callable[[Image.Image], Image.Image],
) -> None:
    for name, _, _ in chosen:
        with Image.open(io.BytesIO(planted.files[name])) as image:
            planted.files[name] = encode(edit(image.convert("RGB")))
        planted.mark(issue, name)


def _blur(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(3.0))


def _darken(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) * 0.08
    return Image.fromarray(pixels.astype(np.uint8))


def _flip_labels(
    planted: Planted,
    chosen: Iterable[tuple[str, str, str]],
    labels: list[str],
    rng: np.random.Generator,
) -> None:
    for name, split, label in chosen:
        others = [other for other in labels if other != label]
        wrong = others[int(rng.integers(len(others)))]
        moved = f"{split}/{wrong}/{Path(name).name}"
        planted.files[moved] = planted.files.pop(name)
        planted.mark("label_errors", moved)


# Kai on the first dataset.


@dataclass(frozen=True)
class KaiAnalysis:
    """One analysis of the imported dataset: its time and what it flagged."""

    seconds: float
    flagged: dict[str, set[str]]
    metrics: dict[str, Any]
    score: float


class KaiSide:
    """A fresh data dir with the planted dataset imported, ready to analyse."""

    def __init__(self, work: Path, planted: Planted, options: Options) -> None:
        from kai.config import Settings
        from kai.db.engine import Database
        from kai.db.migrate import migrate
        from kai.storage.blobs import LocalBlobStore

        self.options = options
        self.settings = Settings(data_dir=work / "kai-data", database_url=None, storage_url=None)
        self.settings.resolved_data_dir.mkdir(parents=True)
        self.db = Database(self.settings.resolved_database_url)
        migrate(self.db)
        self.blobs = LocalBlobStore(Path(self.settings.resolved_storage_url))
        self.dataset_id = self._import(work / "planted.zip", planted)

    def _import(self, archive: Path, planted: Planted) -> int:
        from kai.datasets import ImportSource, SourceKind, start_import
        from kai.datasets.handlers import run_import

        with zipfile.ZipFile(archive, "w") as bundle:
            for name, data in planted.files.items():
                bundle.writestr(name, data)
        source = ImportSource(kind=SourceKind.ZIP, archive_path=str(archive), original_name="p.zip")
        with self.db.session() as session:
            dataset, job = start_import(session, name="benchmark", description="", source=source)
            dataset_id, job_id = dataset.id, job.id
        run_import(self._context(job_id, self.settings))
        return dataset_id

    def _context(self, job_id: int, settings: Any) -> Any:
        from kai.db.tables import Job
        from kai.jobs.context import JobContext

        with self.db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job_type, config = job.type, dict(job.config)
        work_dir = settings.work_dir / str(job_id)
        work_dir.mkdir(parents=True, exist_ok=True)
        return JobContext(job_id, job_type, config, 1, settings, self.db, self.blobs, work_dir)

    def analyse(self, *, embeddings: bool) -> KaiAnalysis:
        """Run one quality job, timed from its start to its stored report."""
        from kai.quality import start_analysis
        from kai.quality.jobs import run_analysis

        backbone = self.options.backbone if embeddings else "none"
        settings = self.settings.model_copy(
            update={
                "embedding_backbone": backbone,
                "embedding_image_size_px": self.options.embedding_size_px,
            }
        )
        with self.db.session() as session:
            _, job = start_analysis(session, self.dataset_id)
            job_id = job.id
        started = time.perf_counter()
        result = run_analysis(self._context(job_id, settings))
        seconds = time.perf_counter() - started
        flagged, metrics = self._flagged(int(result["reportId"]))
        return KaiAnalysis(seconds, flagged, metrics, float(result["overallQualityScore"]))

    def _flagged(self, report_id: int) -> tuple[dict[str, set[str]], dict[str, Any]]:
        from sqlalchemy import select

        from kai.db.tables import QualityIssue, QualityReport, Sample

        with self.db.session() as session:
            report = session.get(QualityReport, report_id)
            assert report is not None
            names = dict(
                session.execute(
                    select(Sample.uid, Sample.original_name).where(
                        Sample.version_id == report.version_id
                    )
                ).all()
            )
            issues = session.scalars(
                select(QualityIssue).where(QualityIssue.report_id == report_id)
            )
            by_type: dict[str, set[str]] = {}
            for issue in issues:
                members = {issue.sample_uid}
                if issue.issue_type.value.endswith("_duplicate"):
                    members.add(str(issue.evidence["duplicateOf"]))
                by_type.setdefault(issue.issue_type.value, set()).update(names[m] for m in members)
            metrics = dict(report.metrics)
        flagged = {
            issue: set().union(*(by_type.get(t, set()) for t in types))
            for issue, types in KAI_TYPES.items()
        }
        return flagged, metrics

    def close(self) -> None:
        self.db.dispose()


# cleanvision on the first dataset.


@dataclass(frozen=True)
class CleanvisionRun:
    """cleanvision's time, what it flagged per issue type, and its scores (low is bad)."""

    seconds: float
    flagged: dict[str, set[str]]
    scores: dict[str, dict[str, float]]


def run_cleanvision(folder: Path, names: Sequence[str]) -> CleanvisionRun:
    """cleanvision's checks of the shared issue types on the same files."""
    from cleanvision import Imagelab

    paths = [str(folder / name) for name in names]
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        lab = Imagelab(filepaths=paths, verbose=False)
        lab.find_issues({issue: {} for issue in SHARED_TYPES}, verbose=False)
    seconds = time.perf_counter() - started
    frame = lab.issues
    by_path = dict(zip(paths, names, strict=True))
    flagged = {
        issue: {by_path[str(p)] for p in frame.index[frame[f"is_{issue}_issue"]]}
        for issue in SHARED_TYPES
    }
    scores = {
        issue: {by_path[str(p)]: float(v) for p, v in frame[f"{issue}_score"].items()}
        for issue in SCORED_TYPES
    }
    return CleanvisionRun(seconds, flagged, scores)


def best_threshold(scores: dict[str, float], truth: set[str]) -> dict[str, float]:
    """The threshold on a score (flag below it) that agrees best with the planted set.

    It tells whether a different threshold would have made cleanvision agree:
    the Jaccard index with the truth that no threshold can beat.
    """
    ranked = sorted(scores.items(), key=lambda item: item[1])
    best = {"threshold": 0.0, "jaccard": 0.0}
    flagged: set[str] = set()
    for index, (name, value) in enumerate(ranked):
        flagged.add(name)
        following = ranked[index + 1][1] if index + 1 < len(ranked) else value + 1e-6
        if following == value:
            continue
        agreement = jaccard(flagged, truth)
        if agreement > best["jaccard"]:
            best = {"threshold": round((value + following) / 2, 4), "jaccard": agreement}
    return best


# The second dataset: planted near copies.


def build_dedup_set(
    num_images: int, seed: int = SEED + 1
) -> tuple[dict[str, bytes], set[frozenset[str]]]:
    """Distinct images with one planted near copy for a tenth of them; (files, true pairs)."""
    rng = np.random.default_rng(seed)
    photos = load_photos()
    copies = max(2, round(COPY_SHARE * num_images))
    files: dict[str, bytes] = {}
    for index in range(num_images - copies):
        files[f"img_{index:05d}.png"] = encode(distinct_image(rng, photos))
    originals = [str(n) for n in rng.choice(sorted(files), size=copies, replace=False)]
    pairs = set()
    for index, name in enumerate(originals):
        with Image.open(io.BytesIO(files[name])) as image:
            changed, fmt = transform_copy(image.convert("RGB"), index, rng)
        copy = f"copy_{index:05d}.{fmt}"
        files[copy] = encode(changed, fmt.upper().replace("JPG", "JPEG"), **_quality(fmt))
        pairs.add(frozenset({name, copy}))
    return files, pairs


def _quality(fmt: str) -> dict[str, int]:
    return {"quality": 70} if fmt == "jpg" else {}


def transform_copy(
    image: Image.Image, index: int, rng: np.random.Generator
) -> tuple[Image.Image, str]:
    """One of crop, flip, rotation, aspect change or re-encoding, by turns."""
    side = image.width
    match index % 5:
        case 0:
            cut = int(side * rng.uniform(0.06, 0.12))
            return image.crop((cut, cut, side - cut, side - cut)), "png"
        case 1:
            return ImageOps.mirror(image), "png"
        case 2:
            return image.rotate(
                float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR
            ), "png"
        case 3:
            return image.resize((side, int(side * 0.75)), Image.Resampling.BICUBIC), "png"
        case _:
            return image, "jpg"


@dataclass(frozen=True)
class DedupRun:
    """One side's near-copy search: its time and the pairs it found."""

    seconds: float
    pairs: set[frozenset[str]]


def load_backbone(options: Options) -> Any:
    """The backbone both sides of the dedup comparison embed with."""
    from kai.embeddings import load_lite0_backbone, load_random_backbone

    kind, _, name = options.backbone.partition(":")
    if kind == "random":
        return load_random_backbone(name, image_size_px=options.embedding_size_px)
    return load_lite0_backbone(image_size_px=options.embedding_size_px)


def run_kai_dedup(
    work: Path, files: dict[str, bytes], options: Options
) -> tuple[DedupRun, DedupRun]:
    """Kai's embedding search, cold (embedding every image) then warm (from the cache)."""
    from kai.embeddings import EmbeddingCache
    from kai.storage.blobs import LocalBlobStore

    blobs = LocalBlobStore(work / "kai-dedup" / "blobs")
    hashes = {name: blobs.put_bytes(data) for name, data in files.items()}
    backbone = load_backbone(options)
    runs = []
    for _ in ("cold", "warm"):
        cache = EmbeddingCache(work / "kai-dedup", backbone.identity)
        started = time.perf_counter()
        pairs = kai_pairs(list(hashes), list(hashes.values()), blobs, backbone, cache)
        runs.append(DedupRun(time.perf_counter() - started, pairs))
    return runs[0], runs[1]


def kai_pairs(
    names: list[str], hashes: list[str], blobs: Any, backbone: Any, cache: Any
) -> set[frozenset[str]]:
    """Pairs the analysis's embedding near-copy rule accepts, from the cached embeddings."""
    from kai.embeddings import VectorIndex, compute_embeddings, normalise_rows
    from kai.quality.duplicates import find_embedding_pairs
    from kai.quality.findings import Thresholds

    raw = compute_embeddings(hashes, blobs=blobs, backbone=backbone, cache=cache)
    found = VectorIndex(normalise_rows(raw), names).search_all(10)
    pairs = find_embedding_pairs(found, Thresholds())
    return {frozenset({names[a], names[b]}) for a, b in pairs}


def run_imagededup(folder: Path, options: Options) -> DedupRun:
    """imagededup's CNN finder with Kai's offline Lite0 backbone through its custom-model hook."""
    import torch
    from imagededup.methods import CNN
    from imagededup.utils import CustomModel
    from torchvision import transforms

    backbone = load_backbone(options)
    size = options.embedding_size_px
    transform = transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(list(backbone.mean), list(backbone.std)),
        ]
    )
    model = CustomModel(name=backbone.identity, model=backbone.network, transform=transform)
    started = time.perf_counter()
    with torch.inference_mode(), contextlib.redirect_stdout(io.StringIO()):
        finder = CNN(verbose=False, model_config=model)
        found = finder.find_duplicates(image_dir=folder, num_sim_workers=1)
    seconds = time.perf_counter() - started
    pairs = {frozenset({a, b}) for a, others in found.items() for b in others}
    return DedupRun(seconds, pairs)


# Scoring and output.


def score(flagged: set[str], truth: set[str]) -> Scores:
    hits = len(flagged & truth)
    precision = hits / len(flagged) if flagged else (1.0 if not truth else 0.0)
    recall = hits / len(truth) if truth else 1.0
    return Scores(len(flagged), round(precision, 4), round(recall, 4))


def jaccard(first: set[str], second: set[str]) -> float:
    union = first | second
    return round(len(first & second) / len(union), 4) if union else 1.0


def f1(found: set[frozenset[str]], truth: set[frozenset[str]]) -> float:
    hits = len(found & truth)
    if not hits:
        return 0.0
    precision, recall = hits / len(found), hits / len(truth)
    return round(2 * precision * recall / (precision + recall), 4)


def write_folder(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def compare_quality(work: Path, options: Options, console: Console) -> dict[str, Any]:
    """The first comparison: Kai's analysis and cleanvision on the planted dataset."""
    planted = build_planted(options.images)
    names = sorted(planted.files)
    write_folder(work / "files", planted.files)
    console.print(f"Planted dataset: {len(names)} images, {options.images} distinct textures")
    cleanvision = run_cleanvision(work / "files", names)
    kai = KaiSide(work, planted, options)
    try:
        shared = kai.analyse(embeddings=False)
        cold = kai.analyse(embeddings=True)
        warm = kai.analyse(embeddings=True)
    finally:
        kai.close()
    return quality_summary(planted, len(names), cleanvision, shared, cold, warm)


def quality_summary(
    planted: Planted,
    count: int,
    cleanvision: CleanvisionRun,
    shared: KaiAnalysis,
    cold: KaiAnalysis,
    warm: KaiAnalysis,
) -> dict[str, Any]:
    issues: dict[str, Any] = {}
    for issue in (*SHARED_TYPES, "label_errors", "leakage"):
        truth = planted.truth.get(issue, set())
        row: dict[str, Any] = {"truth": len(truth), "kai": vars(score(cold.flagged[issue], truth))}
        if issue in SHARED_TYPES:
            row["kaiHashesOnly"] = vars(score(shared.flagged[issue], truth))
            row["cleanvision"] = vars(score(cleanvision.flagged[issue], truth))
            row["jaccard"] = jaccard(shared.flagged[issue], cleanvision.flagged[issue])
        if issue in SCORED_TYPES:
            row["cleanvisionBestThreshold"] = best_threshold(cleanvision.scores[issue], truth)
        issues[issue] = row
    clean_seconds = cleanvision.seconds
    return {
        "images": count,
        "cleanvision_images_per_s": round(count / clean_seconds, 1),
        "kai_shared_images_per_s": round(count / shared.seconds, 1),
        "speed_ratio": round(clean_seconds / shared.seconds, 2),
        "kai_full_cold_images_per_s": round(count / cold.seconds, 1),
        "kai_full_warm_images_per_s": round(count / warm.seconds, 1),
        "kai_score": cold.score,
        "embeddings": {k: v for k, v in cold.metrics["embeddings"].items() if k != "backbone"},
        "issues": issues,
    }


def compare_dedup(work: Path, options: Options, console: Console) -> dict[str, Any]:
    """The second comparison: imagededup's CNN finder and Kai's embedding search."""
    files, truth = build_dedup_set(options.dedup_images)
    write_folder(work / "dedup", files)
    console.print(f"Dedup set: {len(files)} images, {len(truth)} planted near copies")
    theirs = run_imagededup(work / "dedup", options)
    cold, warm = run_kai_dedup(work, files, options)
    return {
        "images": len(files),
        "planted_pairs": len(truth),
        "imagededup_seconds": _seconds(theirs.seconds),
        "kai_cold_seconds": _seconds(cold.seconds),
        "kai_warm_seconds": _seconds(warm.seconds),
        "warm_speed_ratio": round(theirs.seconds / warm.seconds, 1),
        "cold_speed_ratio": round(theirs.seconds / cold.seconds, 2),
        "imagededup_f1": f1(theirs.pairs, truth),
        "kai_f1": f1(warm.pairs, truth),
        "imagededup_model": "efficientnet_lite0 (bundled weights) through imagededup's CustomModel",
    }


def _seconds(value: float) -> float:
    """Three significant figures: a warm search can take well under a millisecond."""
    return float(f"{value:.3g}")


def print_quality(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title=f"Quality issues on {summary['images']} images (precision / recall)")
    for column in ("issue", "truth", "Kai", "Kai hashes only", "cleanvision", "Jaccard"):
        table.add_column(column)
    for issue, row in summary["issues"].items():
        cells = [issue, str(row["truth"]), _pr(row["kai"])]
        cells += [
            _pr(row.get("kaiHashesOnly")),
            _pr(row.get("cleanvision")),
            str(row.get("jaccard", "")),
        ]
        table.add_row(*cells)
    console.print(table)
    for issue in SCORED_TYPES:
        best = summary["issues"][issue]["cleanvisionBestThreshold"]
        console.print(
            f"cleanvision's {issue} score at its best threshold ({best['threshold']}): "
            f"Jaccard {best['jaccard']} with the planted set"
        )
    speed = Table(title="Images per second")
    for column in ("run", "images per second", "target"):
        speed.add_column(column)
    speed.add_row(
        "cleanvision (dark, blurry, exact and near duplicates)",
        str(summary["cleanvision_images_per_s"]),
        "",
    )
    speed.add_row("Kai, same issues (no embeddings)", str(summary["kai_shared_images_per_s"]), "")
    speed.add_row("Kai / cleanvision", str(summary["speed_ratio"]), f">= {TARGET_SPEED_RATIO}")
    speed.add_row(
        "Kai full analysis, cold embedding cache", str(summary["kai_full_cold_images_per_s"]), ""
    )
    speed.add_row(
        "Kai full analysis, warm embedding cache", str(summary["kai_full_warm_images_per_s"]), ""
    )
    console.print(speed)


def print_dedup(console: Console, summary: dict[str, Any]) -> None:
    table = Table(
        title=f"Near copies among {summary['images']} images ({summary['planted_pairs']} planted)"
    )
    for column in ("side", "seconds", "F1"):
        table.add_column(column)
    table.add_row(
        "imagededup CNN (Lite0 via CustomModel)",
        str(summary["imagededup_seconds"]),
        str(summary["imagededup_f1"]),
    )
    table.add_row("Kai, cold cache (embeds every image)", str(summary["kai_cold_seconds"]), "")
    table.add_row(
        "Kai, warm cache (cached embeddings)",
        str(summary["kai_warm_seconds"]),
        str(summary["kai_f1"]),
    )
    console.print(table)
    console.print(
        f"imagededup / Kai warm: {summary['warm_speed_ratio']}x (target >= {TARGET_DEDUP_RATIO}); "
        f"cold: {summary['cold_speed_ratio']}x. imagededup's own CNN downloads weights, "
        "impossible offline: it was given Kai's bundled Lite0 through its custom-model hook."
    )


def _pr(scores: dict[str, Any] | None) -> str:
    if scores is None:
        return ""
    return f"{scores['precision']:.2f} / {scores['recall']:.2f} ({scores['flagged']})"


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=2000, help="distinct textures planted")
    parser.add_argument("--dedup-images", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run at a tiny size")
    parser.add_argument("--skip-dedup", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="where temporary files go")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="Kai's embedding backbone")
    parser.add_argument("--embedding-size-px", type=int, default=224)
    args = parser.parse_args(argv)
    return Options(
        images=QUICK_IMAGES if args.quick and args.images == 2000 else args.images,
        dedup_images=QUICK_DEDUP_IMAGES
        if args.quick and args.dedup_images == 10_000
        else args.dedup_images,
        quick=args.quick,
        skip_dedup=args.skip_dedup,
        out_dir=args.out,
        backbone=args.backbone,
        embedding_size_px=args.embedding_size_px,
    )


@contextlib.contextmanager
def scratch(out_dir: Path | None) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="kai-quality-bench-", dir=out_dir))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    console = Console()
    os.environ.setdefault("TQDM_DISABLE", "1")
    with scratch(options.out_dir) as work:
        quality = compare_quality(work, options, console)
        print_quality(console, quality)
        dedup = None
        if not options.skip_dedup:
            dedup = compare_dedup(work, options, console)
            print_dedup(console, dedup)
    print(json.dumps({"quality": quality, "dedup": dedup}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
