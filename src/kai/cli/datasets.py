"""``kai dataset``: upload, import, list, show, version, diff and edit datasets.

The commands call the dataset service on the configured data dir, so they
work with or without a running server. An upload or folder import queues
the same job the API queues; with ``--wait`` (the default) the command
follows it with a progress bar. When no worker claims the job within a few
seconds (no server is running), the command claims it and runs it itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from kai.cli._context import open_runtime
from kai.cli._watching import run_job_here
from kai.cli.quality import quality_command
from kai.datasets import (
    EditOperation,
    ImportSource,
    MergeClasses,
    Move,
    Relabel,
    Remove,
    RenameClass,
    SourceKind,
    apply_edits,
    check_source,
    compute_diff,
    list_datasets,
    list_versions,
    read_dataset,
    start_import,
)
from kai.datasets.catalog import search_catalog
from kai.datasets.filesets import resolve_import_path
from kai.datasets.sources import PremadeOptions, resolve_request
from kai.datasets.sources.premade import start_premade_import
from kai.db.tables import FINISHED_STATES, Dataset, DatasetVersion, Job, JobState, Split
from kai.errors import InvalidInput, KaiError
from kai.jobs.events import list_events
from kai.runtime import Runtime

app = typer.Typer(help="Upload, inspect and edit datasets.", no_args_is_help=True)
app.command("quality")(quality_command)

# A running server's workers poll every poll_seconds; give them a few polls to claim.
CLAIM_WAIT_POLLS = 4
POLL_SECONDS = 0.2


@app.command("upload")
def upload_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A ZIP of class folders, or a CSV mapping")],
    name: Annotated[str, typer.Option(help="The dataset's name")] = "",
    description: Annotated[str, typer.Option(help="What the dataset holds")] = "",
    images: Annotated[Path | None, typer.Option(help="The images ZIP of a CSV mapping")] = None,
    folder: Annotated[str | None, typer.Option(help="The images folder of a CSV mapping")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the import until it ends")] = True,
) -> None:
    """Import a ZIP archive or a CSV mapping as a new dataset."""
    source = _file_source(file, images, folder)
    _import(ctx, source, name or file.stem, description, wait=wait)


@app.command("import-folder")
def import_folder_command(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A folder under one of KAI_IMPORT_ROOTS")],
    name: Annotated[str, typer.Option(help="The dataset's name")] = "",
    description: Annotated[str, typer.Option(help="What the dataset holds")] = "",
    csv: Annotated[str | None, typer.Option(help="A CSV mapping for the folder's images")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the import until it ends")] = True,
) -> None:
    """Import a server-side folder as a new dataset."""
    with open_runtime(ctx) as runtime:
        folder = resolve_import_path(path, runtime.settings)
        csv_path = str(resolve_import_path(csv, runtime.settings)) if csv else None
    source = ImportSource(
        kind=SourceKind.CSV if csv_path else SourceKind.FOLDER,
        folder_path=str(folder),
        csv_path=csv_path,
        original_name=folder.name,
    )
    _import(ctx, source, name or folder.name, description, wait=wait)


@app.command("list")
def list_command(
    ctx: typer.Context,
    search: Annotated[str | None, typer.Option(help="Match name or description")] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """List datasets, newest first."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        rows, total = list_datasets(session, page=page, page_size=page_size, search=search)
        table = Table("id", "name", "status", "version", "samples", "classes")
        for dataset, version in rows:
            table.add_row(*_dataset_cells(dataset, version))
    _out().print(table)
    _err().print(f"Page {page}: {len(rows)} of {total} datasets")


@app.command("show")
def show_command(
    ctx: typer.Context, dataset_id: Annotated[int, typer.Argument(help="The dataset's id")]
) -> None:
    """Show a dataset with its classes and their counts per split."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        dataset, version = read_dataset(session, dataset_id)
    console = _out()
    console.print(f"[bold]{dataset.name}[/] (id {dataset.id}): {dataset.status.value}")
    if dataset.description:
        console.print(dataset.description, markup=False)
    if dataset.error:
        console.print(f"[red]Error:[/] {dataset.error}")
    if version is None:
        return
    console.print(f"Version {version.number}: {version.sample_count} samples")
    console.print(_class_table(version.metadata_.get("classCounts", {})))
    report = version.metadata_.get("importReport", {})
    if report.get("skippedCount"):
        console.print(f"{report['skippedCount']} files skipped: {report.get('skippedByReason')}")


@app.command("versions")
def versions_command(
    ctx: typer.Context, dataset_id: Annotated[int, typer.Argument(help="The dataset's id")]
) -> None:
    """List a dataset's versions, oldest first."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        read_dataset(session, dataset_id)
        versions = list_versions(session, dataset_id)
    numbers = {version.id: version.number for version in versions}
    table = Table("version", "parent", "samples", "classes", "created", "message")
    for version in versions:
        parent = numbers.get(version.parent_id) if version.parent_id else None
        table.add_row(
            str(version.number),
            str(parent or "-"),
            str(version.sample_count),
            str(len(version.classes)),
            version.created_at.strftime("%Y-%m-%d %H:%M"),
            version.message,
        )
    _out().print(table)


@app.command("diff")
def diff_command(
    ctx: typer.Context,
    dataset_id: Annotated[int, typer.Argument(help="The dataset's id")],
    from_version: Annotated[int, typer.Argument(help="The older version")],
    to_version: Annotated[int, typer.Argument(help="The newer version")],
) -> None:
    """Show what changed between two versions."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        diff = compute_diff(session, dataset_id, from_version, to_version, limit=0)
    table = Table("change", "samples", "per class")
    for kind in ("added", "removed", "relabelled", "moved"):
        part = getattr(diff, kind)
        per_class = ", ".join(f"{label}: {n}" for label, n in part.by_class.items())
        table.add_row(kind, str(part.count), per_class or "-")
    _out().print(f"Version {diff.from_version} -> {diff.to_version}")
    _out().print(table)


@app.command("edit")
def edit_command(
    ctx: typer.Context,
    dataset_id: Annotated[int, typer.Argument(help="The dataset's id")],
    relabel: Annotated[
        list[str] | None, typer.Option(help="SAMPLE_ID=LABEL; repeat for more")
    ] = None,
    remove: Annotated[list[str] | None, typer.Option(help="SAMPLE_ID; repeat for more")] = None,
    move: Annotated[list[str] | None, typer.Option(help="SAMPLE_ID=SPLIT; repeat")] = None,
    rename_class: Annotated[list[str] | None, typer.Option(help="OLD=NEW; repeat")] = None,
    merge_classes: Annotated[
        list[str] | None, typer.Option(help="A,B=INTO: merge classes A and B into INTO")
    ] = None,
    message: Annotated[str, typer.Option(help="The new version's message")] = "",
) -> None:
    """Apply edits to the latest version, making a new version."""
    operations = _operations(relabel or [], remove or [], move or [], rename_class or [])
    operations += [_merge(spec) for spec in merge_classes or []]
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        version = apply_edits(session, dataset_id, operations, message=message)
        number, count, note = version.number, version.sample_count, version.message
    _out().print(f"Version {number}: {count} samples ({note})", markup=False)


@app.command("import")
def import_premade_command(
    ctx: typer.Context,
    source_id: Annotated[
        str, typer.Argument(help="A catalog id (dtd) or a source id (huggingface:ORG/NAME)")
    ],
    classes: Annotated[str | None, typer.Option(help="Only these classes: a,b,c")] = None,
    max_per_class: Annotated[
        int | None, typer.Option(help="At most N images per class in each split")
    ] = None,
    name: Annotated[str, typer.Option(help="The dataset's name; default the original's")] = "",
    description: Annotated[str, typer.Option(help="What the dataset holds")] = "",
    include_metadata: Annotated[
        bool, typer.Option(help="Keep the source's extra columns in each sample's metadata")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Follow the import until it ends")] = True,
) -> None:
    """Import a premade dataset from the catalog or a public repository."""
    selected = [c.strip() for c in classes.split(",")] if classes is not None else None
    options = PremadeOptions(
        selected_classes=selected,
        max_samples_per_class=max_per_class,
        include_metadata=include_metadata,
    )
    request = resolve_request(source_id, options)
    with open_runtime(ctx) as runtime:
        with runtime.db.session() as session:
            dataset, job = start_premade_import(
                session, request=request, name=name or None, description=description
            )
            dataset_id, job_id = dataset.id, job.id
        runtime.dispatcher.dispatch(job_id)
        _err().print(f"Dataset {dataset_id} created; import job {job_id} queued")
        state, error = _follow(runtime, job_id) if wait else (JobState.SUCCEEDED, None)
    if state is not JobState.SUCCEEDED:
        raise KaiError(f"The import of dataset {dataset_id} ended {state.value}: {error}")
    _out().print(str(dataset_id))


@app.command("catalog")
def catalog_command(
    search: Annotated[str | None, typer.Option(help="Words to match")] = None,
    category: Annotated[str | None, typer.Option(help="materials, textures or general")] = None,
    repository: Annotated[str | None, typer.Option(help="huggingface, kaggle, tfds")] = None,
) -> None:
    """List the premade catalog."""
    entries = search_catalog(search=search, category=category, repository=repository)
    table = Table("id", "name", "category", "classes", "images", "license", "sources")
    for entry in entries:
        images = str(entry.num_images) if entry.num_images else "-"
        sources = "\n".join(entry.sources) or "(none: see its homepage)"
        cells = [entry.name, entry.category.value, str(entry.class_count), images]
        table.add_row(entry.id, *cells, entry.license, sources)
    _out().print(table)
    _err().print(f"{len(entries)} datasets; import one with 'kai dataset import ID'")


def _file_source(file: Path, images: Path | None, folder: str | None) -> ImportSource:
    if not file.is_file():
        raise InvalidInput(f"No file at {str(file)!r}")
    if file.suffix.lower() == ".csv":
        if images is None and folder is None:
            raise InvalidInput("A CSV mapping needs --images ZIP or --folder PATH")
        return ImportSource(
            kind=SourceKind.CSV,
            csv_path=str(file.resolve()),
            archive_path=str(images.resolve()) if images else None,
            folder_path=folder,
            original_name=file.name,
            images_name=images.name if images else folder or "",
        )
    return ImportSource(
        kind=SourceKind.ZIP, archive_path=str(file.resolve()), original_name=file.name
    )


def _import(
    ctx: typer.Context, source: ImportSource, name: str, description: str, *, wait: bool
) -> None:
    with open_runtime(ctx) as runtime:
        check_source(source, runtime.settings)
        with runtime.db.session() as session:
            dataset, job = start_import(session, name=name, description=description, source=source)
            dataset_id, job_id = dataset.id, job.id
        runtime.dispatcher.dispatch(job_id)
        _err().print(f"Dataset {dataset_id} created; import job {job_id} queued")
        if not wait:
            _out().print(str(dataset_id))
            return
        state, error = _follow(runtime, job_id)
    if state is not JobState.SUCCEEDED:
        raise KaiError(f"The import of dataset {dataset_id} ended {state.value}: {error}")
    _out().print(str(dataset_id))


def _follow(runtime: Runtime, job_id: int) -> tuple[JobState, str | None]:
    """Show the job's progress until it ends, running it here when no worker takes it."""
    runner: threading.Thread | None = None
    started = time.monotonic()
    seen = 0
    with _progress() as progress:
        task = progress.add_task("queued", total=1.0)
        while True:
            job, events = _read(runtime, job_id, seen)
            for event in events:
                seen = event.seq
                _show_event(progress, task, event.type, event.payload)
            if job.state in FINISHED_STATES and (runner is None or not runner.is_alive()):
                progress.update(task, completed=1.0 if job.state is JobState.SUCCEEDED else None)
                return job.state, job.error
            waited = time.monotonic() - started
            patience = max(1.0, CLAIM_WAIT_POLLS * runtime.settings.poll_seconds)
            if runner is None and job.state is JobState.QUEUED and waited > patience:
                runner = run_job_here(runtime, job_id)
            time.sleep(POLL_SECONDS)


def _read(runtime: Runtime, job_id: int, after: int) -> tuple[Job, list[Any]]:
    with runtime.db.session() as session:
        job = session.get(Job, job_id, populate_existing=True)
        assert job is not None
        return job, list_events(session, job_id, after_seq=after)


def _show_event(progress: Progress, task: Any, event_type: str, payload: dict[str, Any]) -> None:
    if event_type == "progress":
        stage = str(payload.get("stage", ""))
        done, total = payload.get("done"), payload.get("total")
        label = f"{stage} {done}/{total}" if done is not None else stage
        progress.update(task, completed=float(payload.get("progress", 0.0)), description=label)
    elif event_type == "log":
        progress.console.print(str(payload.get("message", "")), markup=False)
    elif event_type == "error":
        progress.console.print(f"[red]{payload.get('error', '')}[/]")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=_err(),
    )


def _operations(
    relabel: Sequence[str], remove: Sequence[str], move: Sequence[str], rename: Sequence[str]
) -> list[EditOperation]:
    operations: list[EditOperation] = []
    for spec in relabel:
        uid, label = _pair(spec, "--relabel")
        operations.append(Relabel((uid,), label))
    if remove:
        operations.append(Remove(tuple(remove)))
    for spec in move:
        uid, split = _pair(spec, "--move")
        operations.append(Move((uid,), _split(split)))
    for spec in rename:
        old, new = _pair(spec, "--rename-class")
        operations.append(RenameClass(old, new))
    return operations


def _merge(spec: str) -> EditOperation:
    sources, target = _pair(spec, "--merge-classes")
    return MergeClasses(tuple(s.strip() for s in sources.split(",") if s.strip()), target)


def _pair(spec: str, option: str) -> tuple[str, str]:
    left, sep, right = spec.partition("=")
    if not sep or not left.strip() or not right.strip():
        raise InvalidInput(f"{option} takes LEFT=RIGHT, not {spec!r}")
    return left.strip(), right.strip()


def _split(value: str) -> Split:
    try:
        return Split(value.lower())
    except ValueError as exc:
        raise InvalidInput(f"Split {value!r} is not train, val or test") from exc


def _dataset_cells(dataset: Dataset, version: DatasetVersion | None) -> list[str]:
    return [
        str(dataset.id),
        dataset.name,
        dataset.status.value,
        str(version.number) if version else "-",
        str(version.sample_count) if version else "-",
        ", ".join(str(c) for c in version.classes) if version else "-",
    ]


def _class_table(counts: dict[str, dict[str, int]]) -> Table:
    table = Table("class", "train", "val", "test", "total")
    for label, per_split in counts.items():
        cells = [str(per_split.get(key, 0)) for key in ("train", "val", "test", "total")]
        table.add_row(label, *cells)
    return table


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)
