"""The ingest benchmark runs end to end at a tiny size and reports both rates and their ratio."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "ingest.py"


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kai_ingest_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_ingest_benchmark_reports_both_rates_and_their_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark = load_benchmark()

    code = benchmark.main(["--quick", "--images", "40", "--skip-memory", "--out", str(tmp_path)])

    output = capsys.readouterr().out
    summary = json.loads(output.strip().splitlines()[-1])
    assert code == 0
    assert "images per second" in output
    assert summary["images"] == 40
    assert summary["kai_images_per_s"] > 0
    assert summary["baseline_images_per_s"] > 0
    expected = summary["kai_images_per_s"] / summary["baseline_images_per_s"]
    assert summary["ratio"] == pytest.approx(expected, rel=0.05, abs=1e-3)
    assert summary["memory"] is None
    assert list(tmp_path.iterdir()) == [], "the benchmark left temporary files behind"
