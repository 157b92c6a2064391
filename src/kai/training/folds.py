"""k-fold cross-validation for small datasets: metrics as a mean and a spread over folds.

The version's training and validation images form one pool, dealt into
``k`` folds stratified by class and grouped by sample group (a group never
straddles two folds), with the run's seed. Each fold trains on the other
folds and validates on its own. Folds 1 to k-1 report their epochs as
``fold`` events and their results are kept beside the checkpoint, so a
retried attempt skips them; the last fold runs as a plain training run
(its ``metrics`` events, checkpoints and resume) and its network becomes
the new model version, with the summary over all folds in its metrics.
Each fold's run is built by the job's :class:`~kai.training.runs.NetworkKind`,
so a Keras model cross-validates as a PyTorch network does.
"""

from __future__ import annotations

import json
import logging
import random
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import select

from kai.db.tables import Sample
from kai.jobs.context import JobContext
from kai.training import runs
from kai.training.config import TrainingConfig
from kai.training.runs import EPOCHS_END, Plan, RunState
from kai.training.samples import TrainingSample

logger = logging.getLogger(__name__)

FOLDS_NAME = "folds.json"
SUMMARISED = ("trainLoss", "trainAccuracy", "valLoss", "valAccuracy", "top5Accuracy")


def run_cross_validation(
    ctx: JobContext, kind: runs.NetworkKind = runs.TORCH_NETWORKS
) -> dict[str, Any]:
    """Train every fold, then write the last fold's network with the summary over folds."""
    job_config, config, folder = runs.prepare(ctx)
    config = kind.adapt(config)
    folds = config.cross_validation_folds
    assert folds is not None, "run_cross_validation needs a fold count"
    plan = runs.resolve_plan(ctx, job_config, folder)
    pool = plan.samples.train + plan.samples.val
    assignment = assign_folds(pool, _groups(ctx, plan), folds, config.seed)
    done = _read_done(folder)
    ctx.log(f"Cross-validation over {folds} folds of {len(pool)} images")

    for fold in range(1, folds):
        if str(fold) not in done:
            done[str(fold)] = _train_fold(
                ctx, fold_plan(plan, pool, assignment, fold), config, fold, kind
            )
            _write_done(folder, done)
    last = fold_plan(plan, pool, assignment, folds)
    state = _create_state(ctx, last, config, (folds, folds), kind)
    runs.resume(ctx, state, folder)
    runs.train_epochs(ctx, config, state, runs.checkpoint_sink(ctx, folder, config), last)
    runs.restore_best(ctx, state, config)
    results = [done[str(fold)] for fold in range(1, folds)] + [_fold_result(state, last, folds)]
    summary = {"folds": results, **summarise(results)}
    return kind.finish(ctx, last, config, state, folder, {"crossValidation": summary})


def assign_folds(
    samples: list[TrainingSample], groups: dict[str, str | None], folds: int, seed: int
) -> dict[str, int]:
    """Each sample's fold, from 1 to ``folds``: stratified by class, grouped by group."""
    by_class: dict[int, dict[str, list[str]]] = {}
    for sample in samples:
        group = groups.get(sample.uid) or sample.uid
        by_class.setdefault(sample.target, {}).setdefault(group, []).append(sample.uid)
    assignment: dict[str, int] = {}
    offset = 0
    for target in sorted(by_class):
        members = sorted(by_class[target].items())
        random.Random(f"{seed}:{target}").shuffle(members)  # noqa: S311 - reproducible
        for position, (_, uids) in enumerate(members):
            for uid in uids:
                # The offset rotates which fold a class starts in, so folds stay level.
                assignment[uid] = (position + offset) % folds + 1
        offset += len(members)
    return assignment


def fold_plan(
    plan: Plan, pool: list[TrainingSample], assignment: dict[str, int], fold: int
) -> Plan:
    """The plan that validates on ``fold`` and trains on the others."""
    train = [sample for sample in pool if assignment[sample.uid] != fold]
    val = [sample for sample in pool if assignment[sample.uid] == fold]
    return replace(plan, samples=replace(plan.samples, train=train, val=val, val_made=True))


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean and spread (sample standard deviation, lowest, highest) of each metric."""
    mean: dict[str, float] = {}
    spread: dict[str, dict[str, float]] = {}
    for name in SUMMARISED:
        values = [float(r["metrics"][name]) for r in results if name in r["metrics"]]
        if not values:
            continue
        mean[name] = round(statistics.fmean(values), 6)
        deviation = statistics.stdev(values) if len(values) > 1 else 0.0
        spread[name] = {"std": round(deviation, 6), "min": min(values), "max": max(values)}
    return {"mean": mean, "spread": spread}


def _groups(ctx: JobContext, plan: Plan) -> dict[str, str | None]:
    with ctx.db.session() as session:
        rows = session.execute(
            select(Sample.uid, Sample.group).where(Sample.version_id == plan.dataset_version_id)
        ).all()
    return {row.uid: row.group for row in rows}


def _train_fold(
    ctx: JobContext, plan: Plan, config: TrainingConfig, fold: int, kind: runs.NetworkKind
) -> dict[str, Any]:
    folds = config.cross_validation_folds or 1
    state = _create_state(ctx, plan, config, (fold, folds), kind)

    def report(_: RunState, entry: dict[str, Any]) -> None:
        ctx.emit("fold", {"fold": fold, "epoch": entry["epoch"], "metrics": entry["metrics"]})

    runs.train_epochs(ctx, config, state, report, plan)
    result = _fold_result(state, plan, fold)
    ctx.emit("fold", {"fold": fold, "status": "complete", **result})
    return result


def _create_state(
    ctx: JobContext,
    plan: Plan,
    config: TrainingConfig,
    position: tuple[int, int],
    kind: runs.NetworkKind,
) -> RunState:
    """The run of fold ``position[0]`` of ``position[1]``, filling its share of the progress."""
    fold, folds = position
    torch.manual_seed(config.seed + fold)
    state = kind.create_state(ctx, plan, config)
    share = EPOCHS_END / folds
    state.progress_span = ((fold - 1) * share, fold * share)
    return state


def _fold_result(state: RunState, plan: Plan, fold: int) -> dict[str, Any]:
    best = next(e for e in state.history if e["epoch"] == state.best_epoch)
    images = {"train": len(plan.samples.train), "val": len(plan.samples.val)}
    return {
        "fold": fold,
        "bestEpoch": state.best_epoch,
        "images": images,
        "metrics": best["metrics"],
    }


def _read_done(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / FOLDS_NAME
    return dict(json.loads(path.read_text())) if path.exists() else {}


def _write_done(folder: Path, done: dict[str, dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (FOLDS_NAME + ".partial")
    partial.write_text(json.dumps(done))
    partial.replace(folder / FOLDS_NAME)
