"""Evaluation: metrics, calibration and plots of a classifier's predictions, and the job.

:func:`evaluate` scores predicted probabilities against true classes;
:func:`record_model_evaluation` stores the result with its plots on a model
version. Training calls both at the end of a run; the ``model.evaluate``
job (:func:`start_evaluation`) does the same on demand for any model
version and dataset version.
"""

from kai.evaluation.calibration import (
    Calibration,
    ReliabilityBin,
    compute_calibration,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from kai.evaluation.jobs import (
    EVALUATE_JOB,
    EvaluationJobConfig,
    EvaluationSplit,
    EvaluationStart,
    register_job_handlers,
    run_evaluation,
    start_evaluation,
)
from kai.evaluation.mapping import ClassMapping, map_classes
from kai.evaluation.metrics import (
    ClassMetrics,
    ConfusionCell,
    EvaluationMetrics,
    compute_metrics,
)
from kai.evaluation.plots import plot_confusion_matrix, plot_reliability_diagram
from kai.evaluation.records import (
    EvaluationView,
    StoredPlot,
    get_evaluation,
    headline,
    list_model_evaluations,
    read_plot,
    record_model_evaluation,
    save_evaluation,
    store_plots,
)
from kai.evaluation.reports import Evaluation, PlotKind, evaluate

__all__ = [
    "EVALUATE_JOB",
    "Calibration",
    "ClassMapping",
    "ClassMetrics",
    "ConfusionCell",
    "Evaluation",
    "EvaluationJobConfig",
    "EvaluationMetrics",
    "EvaluationSplit",
    "EvaluationStart",
    "EvaluationView",
    "PlotKind",
    "ReliabilityBin",
    "StoredPlot",
    "compute_calibration",
    "compute_metrics",
    "evaluate",
    "expected_calibration_error",
    "fit_temperature",
    "get_evaluation",
    "headline",
    "list_model_evaluations",
    "map_classes",
    "plot_confusion_matrix",
    "plot_reliability_diagram",
    "read_plot",
    "record_model_evaluation",
    "register_job_handlers",
    "reliability_bins",
    "run_evaluation",
    "save_evaluation",
    "start_evaluation",
    "store_plots",
]
