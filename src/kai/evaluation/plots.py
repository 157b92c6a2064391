"""PNG plots of an evaluation: the normalised confusion matrix and the reliability diagram.

Matplotlib is imported inside each function, with its non-interactive Agg
backend, so importing the evaluation package stays cheap and never needs a
display. Each plot is returned as PNG bytes; the caller stores them as blobs.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from kai.evaluation.calibration import ReliabilityBin

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

# Past this many classes the cell values and tick labels would be unreadable.
MAX_ANNOTATED_CLASSES = 20
MAX_LABELLED_CLASSES = 60
DPI = 100


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str]) -> bytes:
    """The confusion matrix with each row normalised to the true class's samples, as PNG.

    Args:
        confusion: Counts, shape ``(C, C)``: rows the true class, columns the predicted one.
        class_names: The ``C`` class names.
    """
    from matplotlib.figure import Figure

    num_classes = len(class_names)
    totals = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    side_in = min(4.0 + 0.35 * num_classes, 24.0)
    figure = Figure(figsize=(side_in + 1.5, side_in), dpi=DPI)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of true class")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("Confusion matrix (normalised by true class)")
    if num_classes <= MAX_LABELLED_CLASSES:
        ticks = np.arange(num_classes)
        axes.set_xticks(ticks, [str(name) for name in class_names], rotation=45, ha="right")
        axes.set_yticks(ticks, [str(name) for name in class_names])
    if num_classes <= MAX_ANNOTATED_CLASSES:
        for (row, column), share in np.ndenumerate(shares):
            colour = "white" if share > 0.5 else "black"
            axes.text(column, row, f"{share:.2f}", ha="center", va="center", color=colour)
    return _png(figure)


def plot_reliability_diagram(bins: Sequence[ReliabilityBin], *, ece: float) -> bytes:
    """Accuracy against confidence per bin, beside the diagonal of perfect calibration, as PNG.

    Args:
        bins: The reliability bins.
        ece: The expected calibration error, shown in the title.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 6.0), dpi=DPI)
    axes = figure.add_subplot()
    filled = [item for item in bins if item.count > 0]
    width = bins[0].upper - bins[0].lower if bins else 0.1
    axes.bar(
        [item.lower for item in filled],
        [item.accuracy for item in filled],
        width=width,
        align="edge",
        edgecolor="black",
        color="#4c72b0",
        label="accuracy",
    )
    axes.plot(
        [item.confidence for item in filled],
        [item.confidence for item in filled],
        "o",
        color="#dd8452",
        label="mean confidence",
    )
    axes.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"Reliability diagram (ECE {ece:.3f})")
    axes.legend(loc="upper left")
    return _png(figure)


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
