"""The evaluation's plots are real PNG images."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from kai.evaluation import PlotKind, evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_evaluate_renders_both_plots_as_png() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4), size=40)
    targets = rng.integers(0, 4, 40)
    evaluation = evaluate(
        probabilities,
        targets,
        class_names=["ceramic", "porcelain", "stone", "wood"],
        sample_ids=[f"s{i}" for i in range(40)],
    )

    plots = evaluation.render_plots()

    assert set(plots) == set(PlotKind)
    for png in plots.values():
        assert png.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(png)) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 200


def test_evaluation_document_is_camel_case_json() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    evaluation = evaluate(
        probabilities, np.array([0, 1, 1]), class_names=["a", "b"], sample_ids=["x", "y", "z"]
    )
    document = evaluation.to_json()
    assert document["accuracy"] == 2 / 3
    assert {"balancedAccuracy", "macroF1", "weightedF1", "logLoss", "ece", "top1Accuracy"} <= set(
        document
    )
    assert "top3Accuracy" not in document
    assert document["calibration"]["numBins"] == 15
