"""Class balance (a weighted loss or balanced sampling) and the metric early stopping follows."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from torch import nn

from kai.models.formats import ModelSpec
from kai.training import ClassBalance, MonitoredMetric, TrainingConfig
from kai.training.data import balanced_sampler
from kai.training.devices import CPU_PLAN
from kai.training.features import rows_loader
from kai.training.loop import EarlyStopper
from kai.training.runs import Plan, RunState, create_loss, track_best
from kai.training.samples import SplitSamples, TrainingSample

SPEC = ModelSpec(format="pytorch_state_dict", architecture="test_efficientnet", num_classes=2)


def samples(counts: dict[int, int]) -> list[TrainingSample]:
    return [
        TrainingSample(f"{target}-{i}", "0" * 64, target)
        for target, count in counts.items()
        for i in range(count)
    ]


def plan(train: list[TrainingSample]) -> Plan:
    split = SplitSamples(["rare", "common"], train, [], [], val_made=False)
    return Plan(1, 1, SPEC, "0" * 64, [], split)


def test_a_balanced_loss_weighs_classes_by_inverse_frequency() -> None:
    config = TrainingConfig(class_balance=ClassBalance.LOSS)
    loss = create_loss(plan(samples({0: 2, 1: 8})), config, CPU_PLAN)
    assert isinstance(loss, nn.CrossEntropyLoss) and loss.weight is not None
    assert loss.weight.tolist() == pytest.approx([2.5, 0.625])
    plain = create_loss(plan(samples({0: 2, 1: 8})), TrainingConfig(), CPU_PLAN)
    assert isinstance(plain, nn.CrossEntropyLoss) and plain.weight is None


def test_balanced_sampling_draws_each_class_about_equally() -> None:
    train = samples({0: 10, 1: 90})
    sampler = balanced_sampler(train, torch.Generator().manual_seed(0))
    drawn = Counter(train[index].target for _ in range(20) for index in sampler)
    assert len(list(sampler)) == 100
    assert 0.4 < drawn[0] / (drawn[0] + drawn[1]) < 0.6


def state_with(history: list[dict[str, Any]]) -> RunState:
    network = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    return RunState(
        network=network,
        groups=[],
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        stopper=EarlyStopper(patience=1),
        loaders={},
        loss_fn=nn.CrossEntropyLoss(),
        device=CPU_PLAN,
        history=history,
    )


@pytest.mark.parametrize(
    ("metric", "best"), [(MonitoredMetric.VAL_LOSS, 1), (MonitoredMetric.VAL_ACCURACY, 2)]
)
def test_the_kept_epoch_follows_the_monitored_metric(metric: MonitoredMetric, best: int) -> None:
    config = TrainingConfig(early_stopping_metric=metric)
    epochs = [{"valLoss": 0.5, "valAccuracy": 0.6}, {"valLoss": 0.7, "valAccuracy": 0.8}]
    state = state_with([])
    for epoch, metrics in enumerate(epochs, start=1):
        state.history.append({"epoch": epoch, "metrics": metrics})
        track_best(state, epoch, config)
    assert state.best_epoch == best
    assert state.stopper.should_stop is (best == 1)


def test_feature_extraction_draws_the_cached_rows_class_balanced_on_request() -> None:
    targets = torch.tensor([0] * 10 + [1] * 90)
    rows = (torch.randn(100, 4), targets)

    def rare_share(config: TrainingConfig) -> float:
        loader = rows_loader(rows, config, train=True)
        drawn = torch.cat([batch_targets for _ in range(10) for _, batch_targets in loader])
        assert len(drawn) == 1000
        return float((drawn == 0).float().mean())

    assert 0.4 < rare_share(TrainingConfig(class_balance=ClassBalance.SAMPLING)) < 0.6
    assert rare_share(TrainingConfig()) == pytest.approx(0.1)
    # Validation rows are never resampled.
    val = rows_loader(rows, TrainingConfig(class_balance=ClassBalance.SAMPLING), train=False)
    assert torch.equal(torch.cat([t for _, t in val]), targets)
