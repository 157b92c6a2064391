"""Keras models as PyTorch modules: which heads are replaced, and what the wrapper exposes.

Keras is imported the way Kai imports it (``import_keras``), leaving
``KERAS_BACKEND`` unset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from kai.models.formats.keras_models import import_keras
from kai.training.keras_networks import (
    KerasNetwork,
    find_backend_problem,
    find_head_problem,
    keras_layer_groups,
    parameter_groups,
    replace_head,
)

SIZE_PX = 16


@pytest.fixture(scope="module")
def keras() -> Any:
    return import_keras()


def classifier(keras: Any, *, after_head: Any = None) -> Any:
    """Convolution, batch norm, pooling and a Dense head of three classes."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE_PX, SIZE_PX, 3))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    if after_head is not None:
        outputs = after_head(outputs)
    return keras.Model(inputs, outputs)


def test_a_dense_head_followed_by_a_softmax_layer_is_replaced_by_logits(keras: Any) -> None:
    model = classifier(keras, after_head=keras.layers.Softmax(name="probabilities"))
    assert find_head_problem(model, None) is None

    replaced = replace_head(model, None, ["a", "b"], keep=False)

    assert [layer.name for layer in replaced.layers][-2:] == ["pool", "head"]
    assert replaced.output_shape == (None, 2)
    batch = np.random.default_rng(0).standard_normal((4, SIZE_PX, SIZE_PX, 3)).astype(np.float32)
    sums = keras.ops.convert_to_numpy(replaced(batch)).sum(axis=1)
    assert not np.allclose(sums, 1.0)  # Logits, not probabilities.


def test_the_same_classes_keep_the_old_head_weights(keras: Any) -> None:
    model = classifier(keras)
    replaced = replace_head(model, "head", ["a", "b", "c"], keep=True)
    for old, new in zip(
        model.get_layer("head").get_weights(), replaced.get_layer("head").get_weights(), strict=True
    ):
        np.testing.assert_array_equal(old, new)


def test_heads_that_cannot_be_replaced_say_why(keras: Any) -> None:
    inputs = keras.Input((SIZE_PX, SIZE_PX, 3))
    scores = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 1, name="scores")(inputs))
    convolutional = keras.Model(inputs, scores)
    assert "Conv2D, not a Dense" in str(find_head_problem(convolutional, None))

    two_outputs = keras.Model(inputs, [scores, scores])
    assert "one input and one output" in str(find_head_problem(two_outputs, None))

    pixels = keras.layers.Dense(3, name="per_pixel")(inputs)
    assert "rank-4 tensor" in str(find_head_problem(keras.Model(inputs, pixels), None))


def test_the_wrapper_takes_nchw_batches_and_names_variables_by_position(keras: Any) -> None:
    model = replace_head(classifier(keras), None, ["a", "b"], keep=False)
    network = KerasNetwork(model, channels_last=True)

    assert find_backend_problem(network, (SIZE_PX, SIZE_PX)) is None
    assert network(torch.zeros(2, 3, SIZE_PX, SIZE_PX)).shape == (2, 2)
    assert network.num_outputs == 2
    assert set(network.state_dict()) == {f"variables.{n}" for n in range(len(model.variables))}

    groups = parameter_groups(network, keras_layer_groups(model, network.head_name))
    assert [group.name for group in groups] == ["stem", "stage1", "head"]
    # Batch-norm statistics belong to no group: freezing never asks for their gradients.
    grouped = {name for group in groups for name in group.modules}
    named = dict(network.named_parameters())
    assert all(named[name].requires_grad for name in grouped)
    assert len(grouped) == sum(p.requires_grad for p in named.values())


def test_a_frozen_batch_norm_layer_keeps_its_statistics_in_training(keras: Any) -> None:
    model = replace_head(classifier(keras), None, ["a", "b"], keep=False)
    network = KerasNetwork(model, channels_last=True, freeze_batch_norm=True)
    before = model.get_layer("bn").moving_mean.numpy().copy()

    network.train()
    network(torch.randn(4, 3, SIZE_PX, SIZE_PX) + 3.0)

    np.testing.assert_array_equal(model.get_layer("bn").moving_mean.numpy(), before)
    network.restore_trainable()
    assert model.get_layer("bn").trainable


def test_a_base_nested_as_one_layer_is_cut_into_groups_of_its_own_layers(keras: Any) -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE_PX, SIZE_PX, 3))
    x = inputs
    for index in range(1, 5):
        x = keras.layers.Conv2D(2, 3, padding="same", name=f"conv{index}")(x)
    base = keras.Model(inputs, x, name="base")
    outer_inputs = keras.Input((SIZE_PX, SIZE_PX, 3))
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(base(outer_inputs))
    model = keras.Model(outer_inputs, keras.layers.Dense(3, name="head")(pooled))
    network = KerasNetwork(replace_head(model, None, ["a", "b"], keep=False), channels_last=True)

    named = keras_layer_groups(network.model, network.head_name)
    groups = parameter_groups(network, named)

    assert [group.modules for group in named] == [
        ["base/conv1"],
        ["base/conv2"],
        ["base/conv3"],
        ["base/conv4"],
        ["head"],
    ]
    # Each group holds its own layer's kernel and bias, and together they hold every weight.
    assert [len(group.modules) for group in groups] == [2, 2, 2, 2, 2]
    grouped = {name for group in groups for name in group.modules}
    assert grouped == {name for name, p in network.named_parameters() if p.requires_grad}
