"""The training benchmark runs every comparison at a tiny size and reports consistent figures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "training.py"

pytestmark = pytest.mark.slow


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kai_training_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_training_benchmark_reports_overhead_speed_and_transfer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark = load_benchmark()

    code = benchmark.main(["--quick", "--max-per-class", "4", "--out", str(tmp_path)])

    output = capsys.readouterr().out
    summary = json.loads(output.strip().splitlines()[-1])
    assert code == 0
    assert "training images per second" in output and "3. Transfer" in output
    assert summary["kai_images_per_s"] > 0 and summary["bare_images_per_s"] > 0
    expected = summary["kai_images_per_s"] / summary["bare_images_per_s"]
    assert summary["overhead_ratio"] == pytest.approx(expected, rel=0.01)
    assert summary["epochs"] == 1
    for key in ("pretrained_val_accuracy", "scratch_val_accuracy"):
        assert 0.0 <= summary[key] <= 1.0
    assert list(tmp_path.iterdir()) == [], "the benchmark left temporary files behind"
