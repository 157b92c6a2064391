"""Building the network to train: a new head for new classes, and freezing by layer groups."""

from __future__ import annotations

import pytest
from torch import nn

from kai.models.formats import ModelSpec
from kai.training.transfer import create_network, freeze_base, resolve_layer_groups, set_train_mode

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
