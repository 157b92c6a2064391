"""Ingest benchmark: a ZIP of JPEGs made into a dataset version, against unzip and verify.

The baseline is the least any importer does: extract the archive with
:mod:`zipfile` and have Pillow verify each file. Kai runs the path an upload
takes after its bytes have arrived: the upload's plan check, the dataset and
job records, then the import job claimed and run by a worker in its own
process (every image checked, decoded and stored as a blob, the version
written in one transaction). Both read the same archive in the same run,
alternating, and the best of ``--repeats`` runs of each is kept; the ratio
of their rates is the figure of merit. CPU milliseconds per image (the job's
process included) are printed beside it, since they move far less than wall
time on a shared machine.

A second measurement builds a large archive (1 GB by default) and reports
the peak resident memory of Kai's import job, and of the baseline for
reference, each in a fresh child process.

    .venv/bin/python benchmarks/ingest.py                # 5,000 images, 1 GB archive
    .venv/bin/python benchmarks/ingest.py --quick        # a smoke run
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

if TYPE_CHECKING:
    from kai.config import Settings
    from kai.db.engine import Database

TARGET_RATIO = 0.5
TARGET_PEAK_RSS_MB = 400.0
SEED = 20240611
NUM_CLASSES = 5
IMAGE_SIZE_PX = 256
LARGE_WIDTH_PX, LARGE_HEIGHT_PX = 2048, 1536
LARGE_DISTINCT = 200
JPEG_QUALITY = 90
# Crops of a texture start anywhere within this margin, so no two images are alike.
TEXTURE_MARGIN_PX = 256

QUICK_IMAGES = 200
QUICK_ARCHIVE_GB = 0.05
QUICK_LARGE_DISTINCT = 12


@dataclass(frozen=True)
class Options:
    """What to run, from the command line."""

    num_images: int
    archive_gb: float
    repeats: int
    skip_memory: bool
    quick: bool
    out_dir: Path | None
    child_role: str | None = None
    child_archive: Path | None = None


@dataclass(frozen=True)
class Rate:
    """How fast one side read the archive, in wall-clock and CPU seconds."""

    images: int
    seconds: float
    cpu_seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_image(self) -> float:
        return 1000 * self.cpu_seconds / self.images if self.images else 0.0


def cpu_seconds() -> float:
    """CPU time used so far by this process and all its descendants, user and system.

    Finished children count through ``RUSAGE_CHILDREN``. Kai's job processes are
    forked from a fork server that lives on, so they are children of that
    server: a live descendant counts its own time and that of the children it
    has reaped (``utime``, ``stime``, ``cutime``, ``cstime`` in ``/proc``).
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    finished = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return finished + sum(_tree_cpu_seconds(pid) for pid in _descendants(os.getpid()))


def _tree_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14 to 17 of proc(5), counted from the state field at index 0 here as 3.
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class KaiPhases:
    """Where Kai's end-to-end time went, in seconds (from the job's events)."""

    plan_and_submit: float
    job_start: float
    ingest: float
    write_version: float
    job_finish: float


@dataclass(frozen=True)
class KaiRun:
    """Kai's end-to-end import of one archive."""

    rate: Rate
    phases: KaiPhases


@dataclass(frozen=True)
class Throughput:
    """Every run of both sides; the fastest of each is the one reported."""

    baselines: list[Rate]
    kais: list[KaiRun]

    @property
    def baseline(self) -> Rate:
        return min(self.baselines, key=lambda rate: rate.seconds)

    @property
    def kai(self) -> KaiRun:
        return min(self.kais, key=lambda run: run.rate.seconds)

    @property
    def ratio(self) -> float:
        """Kai's rate over the baseline's."""
        return self.kai.rate.images_per_second / self.baseline.images_per_second


@dataclass(frozen=True)
class MemoryReport:
    """Peak resident memory of each side on the large archive."""

    archive_bytes: int
    archive_images: int
    kai_largest_process_peak_mb: float
    kai_tree_pss_peak_mb: float
    kai_tree_hwm_sum_mb: float
    kai_seconds: float
    kai_worker_peak_mb: float
    baseline_peak_mb: float


# Synthetic images.


class TextureMaker:
    """Makes textured RGB JPEGs of several classes, deterministic for a seed.

    Each class has its own grating, colour and grain; an image is a random
    crop of its class's texture blended with a smooth random colour field,
    so sizes after JPEG compression are close to those of real photographs.
    """

    def __init__(self, width_px: int, height_px: int, num_classes: int, seed: int) -> None:
        self.width_px, self.height_px = width_px, height_px
        self._rng = np.random.default_rng(seed)
        self._textures = [self._texture() for _ in range(num_classes)]

    def _texture(self) -> Image.Image:
        rng = self._rng
        height, width = self.height_px + TEXTURE_MARGIN_PX, self.width_px + TEXTURE_MARGIN_PX
        y = np.arange(height, dtype=np.float32)[:, None]
        x = np.arange(width, dtype=np.float32)[None, :]
        angle, frequency = rng.random() * np.pi, 0.03 + 0.25 * rng.random()
        grating = 40 * np.sin(frequency * (x * np.cos(angle) + y * np.sin(angle)))
        colour = (60 + 140 * rng.random(3)).astype(np.float32)
        grain = rng.standard_normal((height, width, 3), dtype=np.float32) * 10
        pixels = colour + grating[..., None] * rng.random(3).astype(np.float32) + grain
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    def make(self, class_index: int) -> bytes:
        """One JPEG of the class."""
        rng = self._rng
        left, top = (int(v) for v in rng.integers(0, TEXTURE_MARGIN_PX, 2))
        box = (left, top, left + self.width_px, top + self.height_px)
        texture = self._textures[class_index].crop(box)
        field = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        smooth = Image.fromarray(field).resize(texture.size, Image.Resampling.BILINEAR)
        output = io.BytesIO()
        Image.blend(texture, smooth, 0.35).save(output, format="JPEG", quality=JPEG_QUALITY)
        return output.getvalue()


def class_names(num_classes: int) -> list[str]:
    """Material-like class names, one per class."""
    names = ["ceramic", "porcelain", "stone", "wood", "textile", "metal", "glass", "brick"]
    return [names[i % len(names)] + ("" if i < len(names) else f"-{i}") for i in range(num_classes)]


def with_comment(jpeg: bytes, counter: int) -> bytes:
    """The JPEG with a COM segment after its SOI marker, so its hash is unique."""
    text = f"kai-benchmark copy {counter}".encode()
    segment = b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text
    return jpeg[:2] + segment + jpeg[2:]


def write_image_zip(path: Path, num_images: int, progress: Progress) -> int:
    """A deflated ZIP of ``num_images`` 256 px JPEGs in class folders; returns its size."""
    maker = TextureMaker(IMAGE_SIZE_PX, IMAGE_SIZE_PX, NUM_CLASSES, SEED)
    names = class_names(NUM_CLASSES)
    task = progress.add_task("Making JPEGs", total=num_images)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index in range(num_images):
            label = names[index % NUM_CLASSES]
            data = maker.make(index % NUM_CLASSES)
            archive.writestr(f"materials/{label}/{label}_{index:06d}.jpg", data)
            progress.advance(task)
    progress.remove_task(task)
    return path.stat().st_size


def write_large_zip(path: Path, target_bytes: int, distinct: int, progress: Progress) -> int:
    """A stored ZIP of about ``target_bytes`` of large JPEGs, each copy unique; returns count."""
    maker = TextureMaker(LARGE_WIDTH_PX, LARGE_HEIGHT_PX, NUM_CLASSES, SEED + 1)
    names = class_names(NUM_CLASSES)
    task = progress.add_task("Making large JPEGs", total=distinct)
    originals = []
    for index in range(distinct):
        originals.append(maker.make(index % NUM_CLASSES))
        progress.advance(task)
    progress.remove_task(task)

    written, count = 0, 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        while written < target_bytes:
            label = names[count % NUM_CLASSES]
            data = with_comment(originals[count % distinct], count)
            archive.writestr(f"photos/{label}/{label}_{count:06d}.jpg", data)
            written, count = written + len(data), count + 1
    return count


# The two sides.


def run_baseline(archive_path: Path, work_dir: Path) -> Rate:
    """Extract the archive and have Pillow verify every file."""
    target = work_dir / "extracted"
    started, cpu_started = time.perf_counter(), cpu_seconds()
    with zipfile.ZipFile(archive_path) as archive:
        archive.extractall(target)
    verified = 0
    for path in sorted(target.rglob("*.jpg")):
        with Image.open(path) as image:
            image.verify()
        verified += 1
    rate = Rate(verified, time.perf_counter() - started, cpu_seconds() - cpu_started)
    shutil.rmtree(target)
    return rate


def run_kai(archive_path: Path, data_dir: Path) -> KaiRun:
    """Import the archive into a fresh data dir as an upload's import job would run."""
    # Kai is imported where it runs, so the baseline's memory figure carries none of it.
    from kai.config import Settings
    from kai.db.engine import Database
    from kai.db.migrate import migrate

    settings = Settings(data_dir=data_dir, database_url=None, storage_url=None, broker_url=None)
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    try:
        migrate(db)
        return _import_archive(settings, db, archive_path)
    finally:
        db.dispose()


def _import_archive(settings: Settings, db: Database, archive_path: Path) -> KaiRun:
    """Check the upload, record the dataset and job, then claim and run the job."""
    from kai.datasets import ImportSource, SourceKind, check_source, start_import
    from kai.jobs.environment import create_job_environment
    from kai.jobs.leases import claim_job, new_lease_owner
    from kai.jobs.registry import JobRegistry
    from kai.jobs.runner import run_claimed_job, start_job_process_server
    from kai.registrations import register_job_handlers

    registry = JobRegistry()
    register_job_handlers(registry)
    env = create_job_environment(settings, registry)
    # A worker starts its fork server when it starts, before it claims any job.
    start_job_process_server()
    source = ImportSource(
        kind=SourceKind.ZIP, archive_path=str(archive_path), original_name=archive_path.name
    )
    try:
        started, cpu_started = time.perf_counter(), cpu_seconds()
        check_source(source, settings)
        with db.session() as session:
            dataset, job = start_import(session, name="benchmark", description="", source=source)
            dataset_id, job_id = dataset.id, job.id
        submitted = time.perf_counter()
        claim = claim_job(db, owner=new_lease_owner(), lease_seconds=settings.lease_seconds)
        if claim is None or claim.id != job_id:
            raise SystemExit(f"The worker could not claim the import job {job_id}")
        run_claimed_job(env, claim)
        ended, cpu_used = time.perf_counter(), cpu_seconds() - cpu_started
    finally:
        env.close()
    images = _require_version(db, dataset_id, job_id)
    phases = _phases(db, job_id, submitted - started, ended - submitted)
    return KaiRun(Rate(images, ended - started, cpu_used), phases)


def _require_version(db: Database, dataset_id: int, job_id: int) -> int:
    """The imported version's sample count; exits when the import did not succeed."""
    from kai.datasets import latest_version
    from kai.db.tables import Job, JobState

    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.state is not JobState.SUCCEEDED:
            error = job.error if job is not None else "missing"
            raise SystemExit(f"Kai's import job {job_id} did not succeed: {error}")
        version = latest_version(session, dataset_id)
        if version is None:
            raise SystemExit(f"Kai's import job {job_id} succeeded without writing a version")
        return version.sample_count


def _phases(db: Database, job_id: int, submit_seconds: float, job_seconds: float) -> KaiPhases:
    """Split the job's time at its progress events: started, ingest, write, done."""
    from sqlalchemy import select

    from kai.db.tables import Job, JobEvent

    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        events = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        ).all()
        stages = {e.payload.get("stage"): e.created_at for e in events if e.type == "progress"}
        created = job.created_at
    plan, write, done = stages["plan"], stages["write"], stages["done"]
    job_start = (plan - created).total_seconds()
    ingest = (write - plan).total_seconds()
    write_version = (done - write).total_seconds()
    finish = job_seconds - (done - created).total_seconds()
    return KaiPhases(submit_seconds, job_start, ingest, write_version, finish)


# Peak memory, one fresh child process per side.


def own_peak_rss_mb() -> float:
    """This process's own peak resident memory in MB.

    Linux carries a parent's ``ru_maxrss`` over fork and exec, so a child's own
    figure comes from ``VmHWM``, which belongs to its address space alone.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def children_peak_rss_mb() -> float:
    """The largest ``ru_maxrss`` among this process's finished children, in MB.

    For a child that was started while this process used R MB, the figure is at
    least R; it is the child's own peak whenever it exceeds this process's peak.
    """
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


class TreeMemory:
    """Samples the resident memory of this process's descendants while Kai runs.

    The job process, and any process it starts (the ingest's worker pool and
    its fork server), are all descendants. Two figures come out: the largest
    sum of their proportional set sizes (PSS: a page shared by n processes
    counts 1/n in each) seen at one sample, which is what they used of the
    machine's memory together; and the sum of each process's own peak
    resident size (``VmHWM``), which counts shared pages once per process and
    bounds the true peak from above even between samples.
    """

    def __init__(self, interval_seconds: float = 0.02) -> None:
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_sum_mb = 0.0
        self._hwm_mb: dict[int, float] = {}

    @property
    def hwm_sum_mb(self) -> float:
        return sum(self._hwm_mb.values())

    @property
    def largest_hwm_mb(self) -> float:
        """The highest peak resident size of any one descendant."""
        return max(self._hwm_mb.values(), default=0.0)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            total = 0.0
            for pid in _descendants(os.getpid()):
                hwm = _hwm_mb(pid)
                total += _pss_mb(pid)
                self._hwm_mb[pid] = max(self._hwm_mb.get(pid, 0.0), hwm)
            self.peak_sum_mb = max(self.peak_sum_mb, total)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _hwm_mb(pid: int) -> float:
    return _proc_field_mb(f"/proc/{pid}/status", "VmHWM:")


def _pss_mb(pid: int) -> float:
    return _proc_field_mb(f"/proc/{pid}/smaps_rollup", "Pss:")


def _proc_field_mb(path: str, field_name: str) -> float:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field_name):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def run_child_role(role: str, archive_path: Path, work_dir: Path) -> dict[str, Any]:
    """Run one side on the archive in this process and report its peak memory."""
    tree = TreeMemory()
    if role == "baseline":
        rate = run_baseline(archive_path, work_dir)
    else:
        with tree:
            rate = run_kai(archive_path, work_dir / "kai-data").rate
    return {
        "images": rate.images,
        "seconds": rate.seconds,
        "self_peak_mb": own_peak_rss_mb(),
        "children_peak_mb": children_peak_rss_mb(),
        "tree_largest_peak_mb": tree.largest_hwm_mb,
        "tree_pss_peak_mb": tree.peak_sum_mb,
        "tree_hwm_sum_mb": tree.hwm_sum_mb,
    }


def measure_in_child(role: str, archive_path: Path, work_dir: Path) -> dict[str, Any]:
    """Start this script in a child process for ``role`` and read its report."""
    work_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--child-role", role]
    command += ["--child-archive", str(archive_path), "--out", str(work_dir)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"The {role} child failed:\n{completed.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def measure_memory(
    work_dir: Path, archive_gb: float, distinct: int, progress: Progress
) -> MemoryReport:
    """Build the large archive and measure both sides on it."""
    archive_path = work_dir / "large.zip"
    count = write_large_zip(archive_path, int(archive_gb * 1024**3), distinct, progress)
    task = progress.add_task("Peak memory: baseline, then Kai", total=None)
    baseline = measure_in_child("baseline", archive_path, work_dir / "memory-baseline")
    kai = measure_in_child("kai", archive_path, work_dir / "memory-kai")
    progress.remove_task(task)
    if kai["images"] != count:
        raise SystemExit(f"Kai imported {kai['images']} of the {count} large images")
    report = MemoryReport(
        archive_bytes=archive_path.stat().st_size,
        archive_images=count,
        kai_largest_process_peak_mb=kai["tree_largest_peak_mb"],
        kai_tree_pss_peak_mb=kai["tree_pss_peak_mb"],
        kai_tree_hwm_sum_mb=kai["tree_hwm_sum_mb"],
        kai_seconds=kai["seconds"],
        kai_worker_peak_mb=kai["self_peak_mb"],
        baseline_peak_mb=baseline["self_peak_mb"],
    )
    archive_path.unlink()
    return report


# Command line and report.


def parse_options(argv: Sequence[str] | None) -> Options:
    """Read the flags; ``--quick`` changes the defaults of the sizes only."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, help="JPEGs in the archive (default 5000)")
    parser.add_argument("--archive-gb", type=float, help="large archive's size (default 1.0)")
    parser.add_argument("--repeats", type=int, help="runs of each side, best kept (default 3)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak memory run")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, help="folder for the temporary files")
    parser.add_argument("--child-role", choices=["baseline", "kai"], help=argparse.SUPPRESS)
    parser.add_argument("--child-archive", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    options = Options(
        num_images=args.images or (QUICK_IMAGES if args.quick else 5000),
        archive_gb=args.archive_gb or (QUICK_ARCHIVE_GB if args.quick else 1.0),
        repeats=args.repeats or (1 if args.quick else 3),
        skip_memory=args.skip_memory,
        quick=args.quick,
        out_dir=args.out,
        child_role=args.child_role,
        child_archive=args.child_archive,
    )
    if options.num_images < 2 * NUM_CLASSES:
        parser.error(f"--images must be at least {2 * NUM_CLASSES}")
    if options.repeats < 1 or options.archive_gb <= 0:
        parser.error("--repeats and --archive-gb must be positive")
    return options


@contextmanager
def scratch_dir(parent: Path | None) -> Iterator[Path]:
    """A temporary folder, removed afterwards whatever happens."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="kai-ingest-bench-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_throughput(options: Options, work_dir: Path, progress: Progress) -> Throughput:
    """Build the archive, then run the baseline and Kai on it, alternating, best of N."""
    archive_path = work_dir / "images.zip"
    write_image_zip(archive_path, options.num_images, progress)
    baselines: list[Rate] = []
    kais: list[KaiRun] = []
    for attempt in range(options.repeats):
        task = progress.add_task(f"Run {attempt + 1}/{options.repeats}: baseline", total=None)
        # Each side starts with no dirty pages left to write back from the steps before.
        os.sync()
        baselines.append(run_baseline(archive_path, work_dir))
        progress.update(task, description=f"Run {attempt + 1}/{options.repeats}: Kai")
        data_dir = work_dir / "kai-data"
        os.sync()
        kais.append(run_kai(archive_path, data_dir))
        shutil.rmtree(data_dir)
        progress.remove_task(task)
    for rate in [*baselines, *(run.rate for run in kais)]:
        if rate.images != options.num_images:
            raise SystemExit(f"Expected {options.num_images} images, one side read {rate.images}")
    archive_path.unlink()
    return Throughput(baselines, kais)


def show_report(console: Console, throughput: Throughput, memory: MemoryReport | None) -> None:
    """Print the results as a table, with Kai's phases below it."""
    baseline, kai = throughput.baseline, throughput.kai
    table = Table(title=f"Ingest of {kai.rate.images} JPEGs ({IMAGE_SIZE_PX} px), best of runs")
    for column in ("measure", "Kai", "baseline", "Kai / baseline", "target"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row(
        "images per second",
        f"{kai.rate.images_per_second:.0f}",
        f"{baseline.images_per_second:.0f}",
        f"{throughput.ratio:.2f}",
        f">= {TARGET_RATIO}",
    )
    table.add_row("seconds", f"{kai.rate.seconds:.2f}", f"{baseline.seconds:.2f}", "", "")
    table.add_row(
        "CPU ms per image",
        f"{kai.rate.cpu_ms_per_image:.2f}",
        f"{baseline.cpu_ms_per_image:.2f}",
        f"{kai.rate.cpu_ms_per_image / baseline.cpu_ms_per_image:.2f}",
        "",
    )
    if memory is not None:
        table.add_row(
            f"peak RSS (MB), {memory.archive_bytes / 1024**3:.2f} GB ZIP",
            f"{memory.kai_tree_pss_peak_mb:.0f}",
            f"{memory.baseline_peak_mb:.0f}",
            "",
            f"< {TARGET_PEAK_RSS_MB:.0f}",
        )
    console.print(table)
    phases = ", ".join(f"{name} {value:.2f}" for name, value in asdict(kai.phases).items())
    console.print(f"Kai's phases (s): {phases}")
    runs = ", ".join(f"{r.seconds:.1f}" for r in throughput.baselines)
    kai_runs = ", ".join(f"{r.rate.seconds:.1f}" for r in throughput.kais)
    console.print(f"All runs (s): baseline {runs}; Kai {kai_runs}")
    if memory is not None:
        console.print(
            f"Large archive: {memory.archive_images} JPEGs in {memory.kai_seconds:.1f} s; "
            f"Kai's job process and the processes it started used at most "
            f"{memory.kai_tree_pss_peak_mb:.0f} MB together (PSS, sampled; the figure in the "
            f"table), {memory.kai_tree_hwm_sum_mb:.0f} MB as the sum of each one's peak RSS; "
            f"the largest of them alone peaked at {memory.kai_largest_process_peak_mb:.0f} MB "
            f"RSS, the worker at {memory.kai_worker_peak_mb:.0f} MB"
        )


def summarize(
    options: Options, throughput: Throughput, memory: MemoryReport | None
) -> dict[str, Any]:
    """The machine-readable result."""
    baseline, kai = throughput.baseline, throughput.kai
    return {
        "benchmark": "ingest",
        "images": kai.rate.images,
        "repeats": options.repeats,
        "kai_images_per_s": round(kai.rate.images_per_second, 1),
        "baseline_images_per_s": round(baseline.images_per_second, 1),
        "kai_cpu_ms_per_image": round(kai.rate.cpu_ms_per_image, 3),
        "baseline_cpu_ms_per_image": round(baseline.cpu_ms_per_image, 3),
        "ratio": round(throughput.ratio, 3),
        "target_ratio": TARGET_RATIO,
        "kai_seconds": [round(run.rate.seconds, 2) for run in throughput.kais],
        "baseline_seconds": [round(rate.seconds, 2) for rate in throughput.baselines],
        "kai_phases_s": {name: round(value, 2) for name, value in asdict(kai.phases).items()},
        "memory": None
        if memory is None
        else {
            **{name: round(value, 1) for name, value in asdict(memory).items()},
            "target_peak_mb": TARGET_PEAK_RSS_MB,
        },
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints a table, then the summary as one JSON line."""
    options = parse_options(argv)
    if options.child_role is not None:
        return _child_main(options)
    load = os.getloadavg()[0]
    with scratch_dir(options.out_dir) as work_dir, _progress() as progress:
        throughput = run_throughput(options, work_dir, progress)
        memory = None
        if not options.skip_memory:
            distinct = QUICK_LARGE_DISTINCT if options.quick else LARGE_DISTINCT
            memory = measure_memory(work_dir, options.archive_gb, distinct, progress)
    console = Console(highlight=False)
    show_report(console, throughput, memory)
    if load > (os.cpu_count() or 1):
        console.print(f"Note: the machine was busy (load average {load:.1f} at the start)")
    print(json.dumps(summarize(options, throughput, memory)), flush=True)
    return 0


def _child_main(options: Options) -> int:
    assert options.child_role is not None and options.child_archive is not None
    assert options.out_dir is not None
    report = run_child_role(options.child_role, options.child_archive, options.out_dir)
    print(json.dumps(report), flush=True)
    return 0


def _progress() -> Progress:
    return Progress(console=Console(stderr=True), transient=True)


if __name__ == "__main__":
    sys.exit(main())
