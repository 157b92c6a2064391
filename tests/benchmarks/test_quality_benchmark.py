"""The quality benchmark runs end to end at a tiny size and reports both comparisons."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "quality.py"

pytest.importorskip("cleanvision")
pytest.importorskip("imagededup")


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kai_quality_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_planted_issues_are_known_and_disjoint() -> None:
    planted = load_benchmark().build_planted(100, seed=1)
    assert len(planted.truth["label_errors"]) == 5
    assert planted.truth["dark"].isdisjoint(planted.truth["blurry"])
    assert all(name in planted.files for names in planted.truth.values() for name in names)


def test_the_best_threshold_is_the_one_that_agrees_most_with_the_truth() -> None:
    best_threshold = load_benchmark().best_threshold
    scores = {"sharp": 0.9, "soft": 0.5, "blurred": 0.2, "smeared": 0.1}

    assert best_threshold(scores, {"blurred", "smeared"}) == {"threshold": 0.35, "jaccard": 1.0}
    # Only a threshold that also flags "soft" catches "smeared" and "soft" together.
    assert best_threshold(scores, {"soft", "smeared"}) == {"threshold": 0.7, "jaccard": 0.6667}


def test_quality_benchmark_reports_both_sides_and_their_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark = load_benchmark()
    argv = ["--images", "40", "--dedup-images", "20", "--out", str(tmp_path)]
    argv += ["--backbone", "random:test_efficientnet", "--embedding-size-px", "32"]

    code = benchmark.main(argv)

    output = capsys.readouterr().out
    summary = json.loads(output.strip().splitlines()[-1])
    quality, dedup = summary["quality"], summary["dedup"]
    assert code == 0
    assert "Images per second" in output and "CustomModel" in output
    assert quality["images"] > 40
    assert quality["speed_ratio"] == pytest.approx(
        quality["kai_shared_images_per_s"] / quality["cleanvision_images_per_s"], rel=0.05
    )
    assert set(quality["issues"]["dark"]) >= {"kai", "cleanvision", "jaccard"}
    assert 0.0 <= quality["issues"]["blurry"]["cleanvisionBestThreshold"]["jaccard"] <= 1.0
    assert quality["issues"]["exact_duplicates"]["kai"]["recall"] == 1.0
    assert dedup["images"] == 20 and dedup["planted_pairs"] == 2
    assert dedup["imagededup_seconds"] > 0 and dedup["kai_warm_seconds"] > 0
    assert list(tmp_path.iterdir()) == [], "the benchmark left temporary files behind"
