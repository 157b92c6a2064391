"""Building the network to train: a new head, freezing by layer groups, rates per group."""

from __future__ import annotations

import pytest
from torch import nn

from kai.models.formats import ModelSpec
from kai.training import ScheduleName, TrainingConfig
from kai.training.schedules import PlateauScale, create_schedule
from kai.training.transfer import (
    create_network,
    create_optimizer,
    freeze_base,
    resolve_layer_groups,
    set_train_mode,
    trainable_count_at,
    unfreeze_epoch,
)

SPEC = ModelSpec(
    format="pytorch_state_dict",
    architecture="test_efficientnet",
    num_classes=4,
    class_names=["a", "b", "c", "d"],
)


def trainable(network: nn.Module) -> set[str]:
    return {name for name, p in network.named_parameters() if p.requires_grad}


def test_new_classes_get_a_new_head_and_the_same_classes_keep_it() -> None:
    network, replaced = create_network(SPEC, None, class_names=["stone", "wood"])
    assert replaced
    assert network.get_classifier().out_features == 2  # type: ignore[operator]
    _, kept = create_network(SPEC, None, class_names=["a", "b", "c", "d"])
    assert not kept


@pytest.mark.parametrize("count", [1, 2])
def test_a_frozen_base_trains_only_the_last_groups(count: int) -> None:
    network, _ = create_network(SPEC, None, class_names=["stone", "wood"])
    groups = resolve_layer_groups(network, [])
    assert groups[-1].name == "head"

    trained = freeze_base(network, groups, count)

    expected = {
        name
        for name, _ in network.named_parameters()
        if any(name.startswith(prefix + ".") for g in groups[-count:] for prefix in g.modules)
    }
    assert trainable(network) == expected
    assert trained == sum(p.numel() for p in network.parameters() if p.requires_grad)
    assert 0 < len(expected) < len(list(network.parameters()))
    if count == 1:
        assert all(name.startswith("classifier.") for name in expected)


def test_frozen_batch_norm_keeps_its_statistics_in_train_mode() -> None:
    network, _ = create_network(SPEC, None, class_names=["stone", "wood"])
    freeze_base(network, resolve_layer_groups(network, []), 1)
    set_train_mode(network)
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(norm.training for norm in norms)
    assert network.training


def test_layer_decay_lowers_the_rate_toward_the_input_and_the_head_has_its_own() -> None:
    network, _ = create_network(SPEC, None, class_names=["stone", "wood"])
    groups = resolve_layer_groups(network, [])
    config = TrainingConfig(learning_rate=0.1, layer_decay=0.5, head_learning_rate_multiplier=3)

    optimizer = create_optimizer(network, config, groups)

    rates = [group["lr"] for group in optimizer.param_groups]
    assert rates[-1] == pytest.approx(0.3)  # the head
    body = rates[:-1]
    assert body[-1] == pytest.approx(0.1)
    assert body == sorted(body), "rates grow from the input toward the head"
    assert body[0] == pytest.approx(0.1 * 0.5 ** (len(body) - 1))
    every = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert every == {id(p) for p in network.parameters()}


def test_progressive_unfreezing_adds_a_group_every_k_epochs_with_a_fresh_warm_up() -> None:
    config = TrainingConfig(
        freeze_base_model=True,
        trainable_layers_count=1,
        unfreeze_every_epochs=2,
        schedule=ScheduleName.NONE,
        epochs=10,
    )
    assert [trainable_count_at(config, epoch, 4) for epoch in range(1, 9)] == [
        1, 1, 2, 2, 3, 3, 4, 4,
    ]  # fmt: skip
    assert [unfreeze_epoch(config, position) for position in (1, 2, 3)] == [1, 3, 5]

    network, _ = create_network(SPEC, None, class_names=["stone", "wood"])
    optimizer = create_optimizer(network, config, resolve_layer_groups(network, []))
    steps_per_epoch = 4
    scheduler = create_schedule(optimizer, config, steps_per_epoch)
    second = optimizer.param_groups[-2]  # the group just below the head
    assert second["unfreeze_epoch"] == 3
    rates = []
    for _ in range(4 * steps_per_epoch):
        rates.append(scheduler.get_last_lr()[-2])
        optimizer.step()
        scheduler.step()
    warm = rates[2 * steps_per_epoch : 3 * steps_per_epoch]
    assert warm == sorted(warm) and warm[0] < warm[-1] == pytest.approx(config.learning_rate)
    assert rates[-1] == pytest.approx(config.learning_rate)
    assert scheduler.get_last_lr()[-1] == pytest.approx(config.learning_rate)


def test_the_plateau_schedule_halves_the_rate_after_two_stalled_epochs() -> None:
    plateau = PlateauScale()
    for loss in (1.0, 0.8, 0.9, 0.85):
        plateau.update(loss)
    assert plateau.scale == 0.5
    network, _ = create_network(SPEC, None, class_names=["stone", "wood"])
    config = TrainingConfig(schedule=ScheduleName.PLATEAU, learning_rate=0.2)
    optimizer = create_optimizer(network, config, resolve_layer_groups(network, []))
    scheduler = create_schedule(optimizer, config, 2, plateau)
    optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr()[-1] == pytest.approx(0.1)


def test_freeze_batch_norm_keeps_statistics_in_groups_that_train() -> None:
    network, _ = create_network(SPEC, None, class_names=["stone", "wood"])
    set_train_mode(network, freeze_batch_norm=True)
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(norm.training for norm in norms)
    assert all(p.requires_grad for p in network.parameters())
