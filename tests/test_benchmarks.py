"""The benchmarks run end to end (``--quick``: tiny budgets, built-in data), so they cannot rot. Figures are not
checked here, only that every benchmark measures what it reports and RESULTS.md renders it."""

import json

import pytest

pytestmark = pytest.mark.slow


def test_every_benchmark_runs_quick_and_renders(tmp_path):
    from benchmarks import run_all

    payloads = run_all.main(["--quick", "--out-dir", str(tmp_path)])
    assert set(payloads) == {"coreset_cifar10", "active_amazon", "throughput", "scale"}
    for name, payload in payloads.items():
        written = json.loads((tmp_path / f"{name}.json").read_text())
        assert written["benchmark"] == name and written["quick"] is True
        assert written["machine"]["torch"] and written["command"].startswith(f"python -m benchmarks.")

    core = payloads["coreset_cifar10"]["summary"]
    assert {"full data", "random", "proxy least_confidence", "proxy kcenter", "target forgetting"} <= set(core["arms"])
    assert all(0.0 <= a["accuracy"]["mean"] <= 1.0 for a in core["arms"].values())
    assert core["ratios"]["selection_target_over_proxy"]["mean"] > 0

    active = payloads["active_amazon"]
    assert active["runs"][0]["same_initial_set"] and set(active["summary"]["target_accuracy"]) == {"proxy", "target", "random"}
    assert active["summary"]["speedup"]["mean"] == pytest.approx(
        active["runs"][0]["selection_seconds"]["target"] / active["runs"][0]["selection_seconds"]["proxy"]
    )

    cases = payloads["throughput"]["throughput"]
    assert {"timm-cnn", "fasttext", "minilm"} == set(cases)
    assert all(c["scoring_per_s"] > 0 and c["raw_forward_per_s"] > 0 for c in cases.values() if "skipped" not in c)
    memory = payloads["throughput"]["memory"]
    assert set(memory) == {"least_confidence", "kcenter", "least_confidence (streaming)"}
    for m in memory.values():  # the peak while scoring is measured from a reset, so it is at least the ready process
        assert 0 < m["before_mib"] <= m["peak_mib"] and 0 < m["before_mib_4x"] <= m["peak_mib_4x"]

    scale = payloads["scale"]
    assert scale["every_index_scored_once"] and scale["same_selection"] and scale["matches_the_training_run"]
    for method in ("least_confidence", "entropy", "margin", "el2n", "forgetting", "random"):
        assert scale["scores"][method]["identical"], method
    assert scale["scores"]["kcenter"]["max_abs_difference"] < 1e-4

    results = (tmp_path / "RESULTS.md").read_text()
    for title in ("Core-set selection on CIFAR-10", "Active learning on Amazon", "Scoring throughput", "Scale check"):
        assert title in results
    assert "Not run yet" not in results
