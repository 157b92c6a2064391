"""``kai model evaluate`` and ``kai model evaluations``: score a model and compare its scores.

``evaluate`` queues the same ``model.evaluate`` job as the API and, with
``--wait`` (the default), follows it and prints the headline metrics;
``evaluations`` lists every version's evaluations side by side.
"""

from __future__ import annotations

from typing import Annotated

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
    get_evaluation,
    headline,
    list_model_evaluations,
    start_evaluation,
)
from kai.jobs.records import get_job

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


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)
