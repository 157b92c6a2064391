"""Classification metrics against small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kai.errors import InvalidInput
from kai.evaluation import compute_metrics
from kai.evaluation.metrics import MAX_CELL_SAMPLE_IDS, top_k_accuracy

NAMES = ["ceramic", "stone", "wood"]


def one_hot_rows(predicted: list[int], num_classes: int = 3, confidence: float = 0.8) -> np.ndarray:
    """Rows whose most probable class is ``predicted``; the rest share what is left."""
    rest = (1.0 - confidence) / (num_classes - 1)
    rows = np.full((len(predicted), num_classes), rest)
    rows[np.arange(len(predicted)), predicted] = confidence
    return rows


def test_hand_computed_case_with_a_class_never_predicted() -> None:
    # True:      0 0 0 1 1 2
    # Predicted: 0 0 1 1 0 0   -> wood (2) is never predicted.
    targets = np.array([0, 0, 0, 1, 1, 2])
    probabilities = one_hot_rows([0, 0, 1, 1, 0, 0])
    ids = [f"s{i}" for i in range(6)]

    metrics = compute_metrics(probabilities, targets, class_names=NAMES, sample_ids=ids)

    assert metrics.accuracy == pytest.approx(3 / 6)
    ceramic, stone, wood = metrics.per_class
    assert (ceramic.precision, ceramic.recall) == (pytest.approx(2 / 4), pytest.approx(2 / 3))
    assert ceramic.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert (stone.precision, stone.recall, stone.f1) == (0.5, 0.5, 0.5)
    assert (wood.precision, wood.recall, wood.f1, wood.predicted) == (0.0, 0.0, 0.0, 0)
    assert [c.support for c in metrics.per_class] == [3, 2, 1]
    assert metrics.balanced_accuracy == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert metrics.macro_f1 == pytest.approx((ceramic.f1 + 0.5 + 0) / 3)
    assert metrics.weighted_f1 == pytest.approx((3 * ceramic.f1 + 2 * 0.5) / 6)
    assert metrics.log_loss == pytest.approx(-(3 * np.log(0.8) + 3 * np.log(0.1)) / 6)
    assert metrics.confusion.tolist() == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    document = metrics.to_json()
    assert not any(np.isnan(v) for v in document["perClass"][2].values() if isinstance(v, float))


def test_confusion_cells_carry_the_ids_of_their_samples() -> None:
    targets = np.array([0, 0, 1, 2, 2])
    probabilities = one_hot_rows([0, 2, 1, 0, 2])
    ids = ["a", "b", "c", "d", "e"]

    cells = compute_metrics(probabilities, targets, class_names=NAMES, sample_ids=ids).cells

    by_cell = {(c.actual, c.predicted): c.sample_ids for c in cells}
    assert by_cell == {(0, 0): ["a"], (0, 2): ["b"], (1, 1): ["c"], (2, 0): ["d"], (2, 2): ["e"]}


def test_cells_cap_their_ids_and_keep_the_exact_count() -> None:
    count = MAX_CELL_SAMPLE_IDS + 7
    targets = np.zeros(count, dtype=int)
    probabilities = one_hot_rows([1] * count)
    ids = [str(i) for i in range(count)]

    metrics = compute_metrics(probabilities, targets, class_names=NAMES, sample_ids=ids)

    (cell,) = metrics.to_json()["confusionMatrix"]["cells"]
    assert cell["count"] == count and cell["truncated"] is True
    assert cell["sampleIds"] == ids[:MAX_CELL_SAMPLE_IDS]


def test_top_k_counts_the_true_class_among_the_k_most_probable() -> None:
    probabilities = np.array(
        [
            [0.05, 0.4, 0.3, 0.15, 0.1],  # true 2: rank 2
            [0.5, 0.2, 0.1, 0.1, 0.1],  # true 0: rank 1
            [0.3, 0.25, 0.2, 0.15, 0.1],  # true 4: rank 5
            [0.1, 0.1, 0.1, 0.6, 0.1],  # true 1: tied with 0, 2, 4; 0 comes first -> rank 3
        ]
    )
    targets = np.array([2, 0, 4, 1])

    assert top_k_accuracy(probabilities, targets) == {1: 0.25, 3: 0.75, 5: 1.0}


def test_top_k_only_where_the_classes_allow() -> None:
    probabilities = np.array([[0.7, 0.3], [0.4, 0.6]])
    assert top_k_accuracy(probabilities, np.array([1, 1])) == {1: 0.5}


def test_bad_shapes_are_refused_with_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="3 class names"):
        compute_metrics(np.ones((2, 2)) / 2, np.array([0, 1]), class_names=NAMES, sample_ids="ab")
    with pytest.raises(InvalidInput, match="class indices"):
        compute_metrics(one_hot_rows([0]), np.array([3]), class_names=NAMES, sample_ids=["a"])
