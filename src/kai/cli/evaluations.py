"""``kai model evaluate``, ``evaluations`` and ``evaluation``: score a model and read its scores.

``evaluate`` queues the same ``model.evaluate`` job as the API and, with
``--wait`` (the default), follows it and prints the headline metrics;
``evaluations`` lists every version's evaluations side by side;
``evaluation`` shows one in full (each class, calibration) and, with
``--plots DIR``, writes its confusion matrix and reliability diagram as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kai.cli._context import open_runtime
from kai.cli.datasets import _follow
from kai.db.tables import JobState
from kai.errors import KaiError
from kai.evaluation import (
    EvaluationSplit,
    EvaluationStart,
    EvaluationView,
    PlotKind,
    get_evaluation,
    headline,
    list_model_evaluations,
    read_plot,
    start_evaluation,
)
from kai.jobs.records import get_job
from kai.runtime import Runtime

_HEADLINE_COLUMNS = ("accuracy", "balancedAccuracy", "top3Accuracy", "macroF1", "logLoss", "ece")


def evaluate_command(
    ctx: typer.Context,
    model_id: Annotated[int, typer.Argument(help="The model's id")],
    dataset: Annotated[int, typer.Option(help="The dataset whose samples are scored")],
    dataset_version: Annotated[
        int | None, typer.Option(help="The dataset version; the latest if omitted")
    ] = None,
    version: Annotated[
        int | None, typer.Option(help="The model version; the latest if omitted")
    ] = None,
    split: Annotated[
        EvaluationSplit | None,
        typer.Option(help="test, val, train or all; test, else val, else all"),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the evaluation and print its metrics")] = True,
    plots: Annotated[
        Path | None, typer.Option(help="Write the evaluation's plots as PNG into this folder")
    ] = None,
) -> None:
    """Evaluate a model version on a dataset version's samples."""
    with open_runtime(ctx) as runtime:
        with runtime.db.session() as session:
            start = start_evaluation(
                session,
                model_id,
                dataset_id=dataset,
                dataset_version=dataset_version,
                model_version=version,
                split=split,
            )
            job_id, plan = start.job.id, _plan(start)
        runtime.dispatcher.dispatch(job_id)
        _err().print(plan)
        if not wait:
            _out().print(str(job_id))
            return
        state, error = _follow(runtime, job_id)
        if state is not JobState.SUCCEEDED:
            raise KaiError(f"The evaluation ended {state.value}: {error}")
        with runtime.db.session() as session:
            result = get_job(session, job_id).result or {}
            view = get_evaluation(session, int(result["evaluationId"]))
            _out().print(_table([view], title=f"Evaluation {view.evaluation.id}"))
        if plots is not None:
            _write_plots(runtime, view.evaluation.id, plots)


def evaluation_command(
    ctx: typer.Context,
    evaluation_id: Annotated[int, typer.Argument(help="The evaluation's id")],
    plots: Annotated[
        Path | None, typer.Option(help="Write its plots as PNG into this folder")
    ] = None,
) -> None:
    """Show one evaluation: its headline, each class, its calibration; write its plots."""
    with open_runtime(ctx) as runtime:
        with runtime.db.session() as session:
            view = get_evaluation(session, evaluation_id)
        metrics = view.evaluation.metrics
        _out().print(_table([view], title=f"Evaluation {evaluation_id}"))
        _out().print(_class_table(metrics.get("perClass", [])))
        _out().print(_calibration_text(metrics.get("calibration", {})))
        if plots is not None:
            _write_plots(runtime, evaluation_id, plots)


def _class_table(classes: list[dict[str, Any]]) -> Table:
    table = Table("class", "precision", "recall", "f1", "support", title="Per class")
    for row in classes:
        numbers = [_number(row.get(name)) for name in ("precision", "recall", "f1")]
        table.add_row(str(row.get("className")), *numbers, str(row.get("support", "-")))
    return table


def _calibration_text(calibration: dict[str, Any]) -> str:
    if not calibration:
        return "No calibration recorded"
    fitted_on = calibration.get("temperatureFittedOn", "evaluated")
    source = "the validation split" if fitted_on == "validation" else "this evaluation"
    return (
        f"Calibration: ECE {_number(calibration.get('ece'))}, "
        f"{_number(calibration.get('eceAfterTemperature'))} at temperature "
        f"{_number(calibration.get('temperature'))} (fitted on {source})"
    )


def _write_plots(runtime: Runtime, evaluation_id: int, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with runtime.db.session() as session:
        for kind in PlotKind:
            path = folder / f"evaluation-{evaluation_id}-{kind.value}.png"
            path.write_bytes(read_plot(session, runtime.blobs, evaluation_id, kind))
            _err().print(f"Wrote {path}")


def evaluations_command(
    ctx: typer.Context,
    model_id: Annotated[int, typer.Argument(help="The model's id")],
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """List the evaluations of every version of a model, newest first."""
    with open_runtime(ctx) as runtime, runtime.db.session() as session:
        views, total = list_model_evaluations(session, model_id, page=page, page_size=page_size)
        table = _table(views, title=f"Evaluations of model {model_id}")
    _out().print(table)
    _err().print(f"Page {page}: {len(views)} of {total} evaluations")


def _plan(start: EvaluationStart) -> str:
    mapping = start.mapping.to_json()
    data = start.dataset_version
    text = (
        f"Evaluating model version {start.version.number} on dataset {data.dataset_id} "
        f"version {data.number}, {start.split.value} split "
        f"({start.num_samples} samples): job {start.job.id}"
    )
    if mapping["unmappedDatasetClasses"]:
        text += f"; classes the model lacks are left out: {mapping['unmappedDatasetClasses']}"
    return text


def _table(views: list[EvaluationView], *, title: str) -> Table:
    table = Table("id", "version", "dataset", "split", "samples", *_HEADLINE_COLUMNS, "date")
    table.title = title
    for view in views:
        metrics = view.evaluation.metrics
        numbers = headline(metrics)
        dataset = (
            f"{view.dataset.name} v{view.dataset_version.number}"
            if view.dataset and view.dataset_version
            else "-"
        )
        table.add_row(
            str(view.evaluation.id),
            str(view.version.number),
            dataset,
            str(metrics.get("split", "-")),
            str(metrics.get("numSamples", "-")),
            *(_cell(numbers[name]) for name in _HEADLINE_COLUMNS),
            view.evaluation.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _number(value: Any) -> str:
    return _cell(float(value)) if isinstance(value, int | float) else "-"


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)
