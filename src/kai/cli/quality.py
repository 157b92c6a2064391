"""``kai dataset quality``: analyse a dataset version and show its quality report.

The command queues the same ``dataset.quality`` job as the API and, with
``--wait`` (the default), follows it and prints the report: the score and
how each family of issues shaped it, the issue counts and the
recommendations with the fix for each.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kai.cli._context import open_runtime
from kai.datasets.records import resolve_version
from kai.db.tables import JobState
from kai.errors import KaiError
from kai.quality import ReportView, read_report, start_analysis


def quality_command(
    ctx: typer.Context,
    dataset_id: Annotated[int, typer.Argument(help="The dataset's id")],
    version: Annotated[int | None, typer.Option(help="The version; the latest if omitted")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the analysis and print its report")] = True,
) -> None:
    """Analyse a dataset version's quality and print its report."""
    # Imported here: the dataset commands mount this one, so they import this module first.
    from kai.cli.datasets import _follow

    with open_runtime(ctx) as runtime:
        with runtime.db.session() as session:
            chosen, job = start_analysis(session, dataset_id, version=version)
            number, job_id = chosen.number, job.id
        runtime.dispatcher.dispatch(job_id)
        _err().print(f"Quality analysis of dataset {dataset_id} version {number}: job {job_id}")
        if not wait:
            _out().print(str(job_id))
            return
        state, error = _follow(runtime, job_id)
        if state is not JobState.SUCCEEDED:
            raise KaiError(f"The quality analysis ended {state.value}: {error}")
        with runtime.db.session() as session:
            show_report(read_report(session, resolve_version(session, dataset_id, number)))


def show_report(view: ReportView) -> None:
    """Print a report: score, breakdown, issue counts and recommendations."""
    report, console = view.report, _out()
    verdict = "[red]needs improvement[/]" if report.needs_improvement else "[green]good[/]"
    change = (
        ""
        if view.score_change is None
        else f" ({view.score_change:+.1f} since v{view.parent_number})"
    )
    console.print(
        f"Dataset {view.version.dataset_id} version {view.version.number}: "
        f"quality score [bold]{report.score:.1f}[/]/100{change}, {verdict}"
    )
    console.print(_breakdown_table(report.score_breakdown))
    console.print(_counts_table(report.issue_counts))
    console.print(_recommendations_table(report.recommendations))


def _breakdown_table(breakdown: dict[str, Any]) -> Table:
    table = Table(
        "family", "weight", "share", "penalty", "points", title=str(breakdown.get("formula", ""))
    )
    for row in breakdown.get("families", []):
        if not row.get("ran"):
            table.add_row(str(row["family"]), "-", "-", "-", f"not run: {row.get('reason', '')}")
            continue
        cells = [f"{row['weight']:.1f}", f"{100 * row['share']:.1f}%", f"{row['penalty']:.1f}"]
        table.add_row(str(row["family"]), *cells, f"{row['points']:.1f}")
    return table


def _counts_table(counts: dict[str, int]) -> Table:
    table = Table("issue", "samples", title="Issues")
    for issue_type, count in sorted(counts.items(), key=lambda item: -item[1]):
        table.add_row(issue_type, str(count))
    return table


def _recommendations_table(recommendations: list[dict[str, Any]]) -> Table:
    table = Table("severity", "what", "affected", "fix", title="Recommendations")
    for item in recommendations:
        action = item.get("action", {})
        unit = item.get("affectedUnit", "samples")
        fix = str(action.get("fix") or action.get("how", ""))
        table.add_row(
            str(item["severity"]), str(item["title"]), f"{item['affectedCount']} {unit}", fix
        )
    return table


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)
