"""``kai model``: upload, repository import, list, show, versions, compare and card commands.

The commands call the model service on the configured data dir, so they work
with or without a running server. An upload queues the same job the API
queues, after the same format checks; with ``--wait`` (the default) the
command follows it, and runs it itself when no worker claims it.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from kai.cli._context import open_runtime
from kai.cli.datasets import _follow
from kai.cli.evaluations import evaluate_command, evaluation_command, evaluations_command
from kai.db.tables import JobState, Model, ModelVersion
from kai.errors import InvalidInput, KaiError
from kai.models import (
    COMPARED_FACTS,
    ModelSource,
    SourceKind,
    VersionComparison,
    check_source_url,
    compare_versions,
    list_models,
    list_versions,
    parse_version_numbers,
    read_card,
    read_model,
    resolve_format,
    start_model_import,
    update_card,
)
from kai.models.formats import ImportOptions, create_format_registry
from kai.models.repositories import Repository, check_repository_request, parse_repository
from kai.runtime import Runtime

app = typer.Typer(help="Upload and inspect models.", no_args_is_help=True)
app.command("evaluate")(evaluate_command)
app.command("evaluations")(evaluations_command)
app.command("evaluation")(evaluation_command)


@app.command("upload")
def upload_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A state dict, TorchScript, ONNX file or bundle")],
    name: Annotated[str, typer.Option(help="The model's name")] = "",
    description: Annotated[str, typer.Option(help="What the model does")] = "",
    framework: Annotated[
        str | None, typer.Option(help="Format or framework; overrides detection")
    ] = None,
    architecture: Annotated[
        str | None, typer.Option(help="timm or torchvision architecture of a state dict")
    ] = None,
    model_id: Annotated[int | None, typer.Option(help="Add a version to this model")] = None,
    input_size: Annotated[int | None, typer.Option(help="Input height and width in pixels")] = None,
    mean: Annotated[str | None, typer.Option(help="Per-channel mean, as 0.5,0.5,0.5")] = None,
    std: Annotated[str | None, typer.Option(help="Per-channel std, as 0.5,0.5,0.5")] = None,
    classes: Annotated[str | None, typer.Option(help="Class names, comma-separated")] = None,
    class_names: Annotated[
        Path | None, typer.Option(help="A file with one class name per line, or a JSON list")
    ] = None,
    head_layer: Annotated[str | None, typer.Option(help="The classification layer")] = None,
    graph_input: Annotated[str | None, typer.Option(help="Graph input to feed")] = None,
    graph_output: Annotated[str | None, typer.Option(help="Graph output to read")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the import until it ends")] = True,
) -> None:
    """Import a model file as a new model, or as a new version of --model-id."""
    if not file.is_file():
        raise InvalidInput(f"No file at {str(file)!r}")
    options = _import_options(
        framework=framework,
        architecture=architecture,
        input_size=input_size,
        mean=mean,
        std=std,
        classes=classes,
        class_names=class_names,
        head_layer=head_layer,
        graph_input=graph_input,
        graph_output=graph_output,
    )
    resolve_format(create_format_registry(), file.resolve(), options)
    with open_runtime(ctx) as runtime:
        upload_dir, copy = _copy_to_uploads(file, runtime.settings.uploads_dir)
        source = ModelSource(kind=SourceKind.UPLOAD, path=str(copy), original_name=file.name)
        with runtime.db.session() as session:
            model, job = start_model_import(
                session,
                name=name or file.stem,
                description=description,
                source=source,
                options=options,
                model_id=model_id,
                upload_dir=upload_dir,
            )
            found_id, job_id = model.id, job.id
        runtime.dispatcher.dispatch(job_id)
        _err().print(f"Model {found_id}: import job {job_id} queued")
        if wait:
            state, error = _follow(runtime, job_id)
            if state is not JobState.SUCCEEDED:
                raise KaiError(f"The import into model {found_id} ended {state.value}: {error}")
    _out().print(str(found_id))


@app.command("import")
def import_command(
    ctx: typer.Context,
    repository: Annotated[
        str,
        typer.Argument(
            help="huggingface, pytorch-hub, onnx-model-zoo, kaggle, tensorflow-hub, url, "
            "bundled, or architecture (an untrained network by name, to train from scratch)"
        ),
    ],
    model_id: Annotated[str, typer.Argument(help="The model's id in the repository")],
    name: Annotated[str, typer.Option(help="The model's name")] = "",
    description: Annotated[str, typer.Option(help="What the model does")] = "",
    revision: Annotated[
        str | None, typer.Option(help="Branch, tag, commit or weights name")
    ] = None,
    architecture: Annotated[
        str | None, typer.Option(help="Architecture, when the repository does not say")
    ] = None,
    framework: Annotated[
        str | None, typer.Option(help="Format or framework; overrides detection")
    ] = None,
    input_size: Annotated[int | None, typer.Option(help="Input height and width in pixels")] = None,
    mean: Annotated[str | None, typer.Option(help="Per-channel mean, as 0.5,0.5,0.5")] = None,
    std: Annotated[str | None, typer.Option(help="Per-channel std, as 0.5,0.5,0.5")] = None,
    classes: Annotated[str | None, typer.Option(help="Class names, comma-separated")] = None,
    class_names: Annotated[
        Path | None, typer.Option(help="A file with one class name per line, or a JSON list")
    ] = None,
    head_layer: Annotated[str | None, typer.Option(help="The classification layer")] = None,
    graph_input: Annotated[str | None, typer.Option(help="Graph input to feed")] = None,
    graph_output: Annotated[str | None, typer.Option(help="Graph output to read")] = None,
    trust_repository_code: Annotated[
        bool, typer.Option(help="Allow a hub repository's own code to build the model")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Follow the import until it ends")] = True,
) -> None:
    """Import a pretrained model from a repository, read from its client's cache offline."""
    chosen = parse_repository(repository)
    check_repository_request(
        chosen, model_id.strip(), trust_repository_code=trust_repository_code, is_admin=True
    )
    if chosen is Repository.URL:
        source = ModelSource(kind=SourceKind.URL, url=model_id, original_name=Path(model_id).name)
    else:
        source = ModelSource(
            kind=SourceKind.REPOSITORY,
            repository=chosen.value,
            reference=model_id.strip(),
            revision=revision,
            original_name=model_id.strip(),
            trust_repository_code=trust_repository_code,
        )
    options = _import_options(
        framework=framework,
        architecture=architecture,
        input_size=input_size,
        mean=mean,
        std=std,
        classes=classes,
        class_names=class_names,
        head_layer=head_layer,
        graph_input=graph_input,
        graph_output=graph_output,
    )
    with open_runtime(ctx) as runtime:
        if chosen is Repository.URL:
            check_source_url(model_id, runtime.settings)
        with runtime.db.session() as session:
            model, job = start_model_import(
                session,
                name=name or model_id.rstrip("/").rsplit("/", 1)[-1],
                description=description,
                source=source,
                options=options,
            )
            found_id, job_id = model.id, job.id
        _queue_and_follow(runtime, found_id, job_id, wait=wait)
    _out().print(str(found_id))


def _queue_and_follow(runtime: Runtime, model_id: int, job_id: int, *, wait: bool) -> None:
    runtime.dispatcher.dispatch(job_id)
    _err().print(f"Model {model_id}: import job {job_id} queued")
    if not wait:
        return
    state, error = _follow(runtime, job_id)
    if state is not JobState.SUCCEEDED:
        raise KaiError(f"The import into model {model_id} ended {state.value}: {error}")


@app.command("list")
def list_command(
    ctx: typer.Context,
    search: Annotated[str | None, typer.Option(help="Match name or description")] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """List models, newest first."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        rows, total = list_models(session, page=page, page_size=page_size, search=search)
        table = Table("id", "name", "status", "version", "format", "architecture", "classes")
        for model, version in rows:
            table.add_row(*_model_cells(model, version))
    _out().print(table)
    _err().print(f"Page {page}: {len(rows)} of {total} models")


@app.command("show")
def show_command(
    ctx: typer.Context, model_id: Annotated[int, typer.Argument(help="The model's id")]
) -> None:
    """Show a model and its latest version."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        model, version = read_model(session, model_id)
        console = _out()
        console.print(f"[bold]{model.name}[/] (id {model.id}): {model.status.value}")
        if model.description:
            console.print(model.description, markup=False)
        if model.error:
            console.print(f"[red]Error:[/] {model.error}", markup=True)
        if version is not None:
            _show_version(console, version)


@app.command("versions")
def versions_command(
    ctx: typer.Context, model_id: Annotated[int, typer.Argument(help="The model's id")]
) -> None:
    """List a model's versions, oldest first."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        table = Table(
            "version", "format", "architecture", "classes", "parameters", "origin", "created"
        )
        for version in list_versions(session, model_id):
            table.add_row(
                str(version.number),
                version.format,
                version.architecture or "-",
                str(version.num_classes),
                f"{version.parameter_count:,}" if version.parameter_count else "-",
                str(version.provenance.get("kind", "-")),
                version.created_at.strftime("%Y-%m-%d %H:%M"),
            )
    _out().print(table)


@app.command("compare")
def compare_command(
    ctx: typer.Context,
    model_id: Annotated[int, typer.Argument(help="The model's id")],
    versions: Annotated[str, typer.Argument(help="Version numbers, as 1,2")],
) -> None:
    """Show versions side by side: facts, class changes and metrics per dataset version."""
    numbers = parse_version_numbers(versions)
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        comparison = compare_versions(session, model_id, numbers)
    console = _out()
    console.print(_comparison_table(comparison))
    for change in comparison.class_changes:
        if change.added or change.removed:
            console.print(
                f"version {change.number}: classes added {change.added or '-'}, "
                f"removed {change.removed or '-'}",
                markup=False,
            )


def _comparison_table(comparison: VersionComparison) -> Table:
    table = Table("", *(f"v{v.number}" for v in comparison.versions), title="Versions compared")
    for name in COMPARED_FACTS:
        marker = " *" if name in comparison.differing else ""
        table.add_row(name + marker, *(_cell(v.facts[name]) for v in comparison.versions))
    for row in comparison.metrics:
        dataset = f"dataset v{row.dataset_version_id}" if row.dataset_version_id else "no dataset"
        cells = ("-" if value is None else f"{value:.4g}" for value in row.values)
        table.add_row(f"{row.metric} ({dataset})", *cells)
    return table


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):
        return "x".join(str(v) for v in value) if len(value) == 2 else ", ".join(map(str, value))
    return str(value)


@app.command("card")
def card_command(
    ctx: typer.Context,
    model_id: Annotated[int, typer.Argument(help="The model's id")],
    version: Annotated[int | None, typer.Option(help="The version; the latest by default")] = None,
    set_from: Annotated[
        Path | None, typer.Option("--set", help="Replace the card with this Markdown file")
    ] = None,
    raw: Annotated[bool, typer.Option(help="Print the Markdown source")] = False,
) -> None:
    """Show a version's model card, or replace it with --set FILE."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        if set_from is not None:
            text = set_from.read_text(encoding="utf-8")
            update_card(session, model_id, version, text)
        _, markdown = read_card(session, model_id, version)
    if raw:
        _out().print(markdown, markup=False)
    else:
        _out().print(Markdown(markdown))


def _copy_to_uploads(file: Path, uploads_dir: Path) -> tuple[Path, Path]:
    """Copy the file where the job can read it and delete it afterwards; the user's stays."""
    folder = uploads_dir / secrets.token_hex(16)
    folder.mkdir(parents=True)
    copy = folder / ("file" + file.suffix.lower()[:16])
    shutil.copyfile(file, copy)
    return folder, copy


def _import_options(
    *,
    framework: str | None,
    architecture: str | None,
    input_size: int | None,
    mean: str | None,
    std: str | None,
    classes: str | None,
    class_names: Path | None,
    head_layer: str | None,
    graph_input: str | None,
    graph_output: str | None,
) -> ImportOptions:
    names = _read_class_names(class_names) if class_names else None
    if classes:
        names = [name.strip() for name in classes.split(",") if name.strip()]
    return ImportOptions(
        framework=framework,
        architecture=architecture,
        input_size_px=(input_size, input_size) if input_size else None,
        mean=_triple(mean, "--mean"),
        std=_triple(std, "--std"),
        class_names=names,
        head_layer=head_layer,
        graph_input=graph_input,
        graph_output=graph_output,
    )


def _triple(text: str | None, option: str) -> tuple[float, float, float] | None:
    if not text:
        return None
    try:
        values = [float(part) for part in text.strip("[]() ").split(",")]
    except ValueError as exc:
        raise InvalidInput(f"{option} must be three numbers such as 0.5,0.5,0.5") from exc
    if len(values) != 3:
        raise InvalidInput(f"{option} must be three numbers, not {text!r}")
    return (values[0], values[1], values[2])


def _read_class_names(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("["):
        names = json.loads(text)
        if not isinstance(names, list):
            raise InvalidInput(f"{path} must hold a JSON list or one class name per line")
        return [str(name) for name in names]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _show_version(console: Console, version: ModelVersion) -> None:
    size = version.input_spec.get("size_px", ["?", "?"])
    fields = {
        "version": version.number,
        "format": f"{version.format} ({version.framework})",
        "architecture": version.architecture or "-",
        "classes": version.num_classes,
        "parameters": f"{version.parameter_count:,}" if version.parameter_count else "-",
        "input": f"{size[0]}x{size[1]} px",
        "sha256": version.sha256,
        "safety": version.safety.get("verdict", "-"),
    }
    for name, value in fields.items():
        console.print(f"{name:>13}: {value}", markup=False)
    for note in version.inspection.get("notes", []):
        console.print(f"  - {note}", markup=False)


def _model_cells(model: Model, version: ModelVersion | None) -> list[str]:
    return [
        str(model.id),
        model.name,
        model.status.value,
        str(version.number) if version else "-",
        version.format if version else "-",
        (version.architecture or "-") if version else "-",
        str(version.num_classes) if version else "-",
    ]


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)
