"""strategy 'auto' (svp_hf.stages.auto): the decision rule on fixed figures, the check on a deterministic fixture, its
pre-flight errors, and an end-to-end run that records its evidence."""

import json

import numpy as np
import pytest

import svp_hf
from svp_hf.errors import SVPConfigError
from svp_hf.stages.auto import Candidate, candidates_for, check_auto, choose_strategy, decide, holdout_slice


@pytest.fixture
def no_headroom(monkeypatch):
    """The plan's arithmetic on the budget's whole seconds: the headroom kept for the probe's error is tested on its
    own (test_the_plan_keeps_headroom_for_the_probes_error_only_when_the_target_is_estimated)."""
    import svp_hf.stages.auto as auto

    monkeypatch.setattr(auto, "BUDGET_HEADROOM", 0.0)


def test_ties_choose_random():
    accuracies = {c: [0.5, 0.5] for c in candidates_for(0.3)}
    assert decide(accuracies, slice_rows=100).strategy == "random"


def test_a_candidate_must_beat_random_by_more_than_the_spread():
    random, top, cov = Candidate("random"), Candidate("top"), Candidate("coverage", 0.1)
    clear = decide({random: [0.50, 0.52], top: [0.60, 0.61], cov: [0.55, 0.56]}, slice_rows=1000)
    assert (clear.strategy, clear.coverage_beta) == ("top", None)
    assert clear.margin_over_random == pytest.approx(0.095)
    within = decide({random: [0.50, 0.56], top: [0.54, 0.55]}, slice_rows=1000)  # +0.015 < spread 0.042
    assert within.strategy == "random" and within.spread == pytest.approx(np.std([0.50, 0.56], ddof=1))
    coverage = decide({random: [0.50, 0.50], cov: [0.53, 0.53]}, slice_rows=1000)
    assert (coverage.strategy, coverage.coverage_beta) == ("coverage", 0.1) and coverage.chosen == "coverage (beta 0.1)"
    one_row = decide({random: [0.50, 0.50], top: [0.505, 0.505]}, slice_rows=100)  # less than one slice row
    assert one_row.strategy == "random"


def test_a_small_slice_needs_a_margin_beyond_its_sampling_error():
    # Seeds agree (small spread between them), but on 150 rows a 3.7-point gain is within chance.
    random, bottom = Candidate("random"), Candidate("bottom")
    small = decide({random: [0.220, 0.253], bottom: [0.273, 0.273]}, slice_rows=150)
    assert small.strategy == "random"
    assert small.spread == pytest.approx(np.sqrt((0.273 * 0.727 + 0.2365 * 0.7635) / 150), rel=1e-6)
    large = decide({random: [0.220, 0.253], bottom: [0.273, 0.273]}, slice_rows=5000)
    assert large.strategy == "bottom"


def test_candidates_follow_the_fraction():
    names = [c.name for c in candidates_for(0.1)]
    assert names == ["random", "top", "bottom", "coverage (beta 0.1)", "coverage (beta 0.3)"]
    assert [c.name for c in candidates_for(0.95)] == [
        "random",
        "top",
        "bottom",
        "coverage (beta 0)",
    ]  # 0.1 leaves too few
    assert [c.name for c in candidates_for(0.5, coverage_beta=0.2)][-1] == "coverage (beta 0.2)"


def test_the_slice_is_stratified_and_seeded():
    labels = np.repeat(np.arange(4), [100, 60, 30, 10])
    held = holdout_slice(labels, 0.1, seed=0)
    assert np.bincount(labels[held]).tolist() == [10, 6, 3, 1]
    assert held.tolist() == holdout_slice(labels, 0.1, seed=0).tolist() != holdout_slice(labels, 0.1, seed=1).tolist()


def test_check_on_a_deterministic_fixture():
    rng = np.random.default_rng(0)
    n = 400
    scores, labels = rng.random(n), rng.integers(0, 4, n)
    calls = []

    def flat(rows, slice_rows, seed):
        calls.append((len(rows), len(slice_rows), seed))
        return 0.7

    decision = choose_strategy(None, scores, labels, descending=True, fraction=0.5, train_candidate=flat, seed=3)
    assert decision.strategy == "random" and decision.margin_over_random == 0.0
    assert len(calls) == len(candidates_for(0.5)) * 2 and {c[2] for c in calls} == {3, 4}
    assert {c[:2] for c in calls} == {(180, 40)}  # half of the 360 rows left after holding out 10%

    def mean_score(rows, slice_rows, seed):  # a "model" that is exactly as good as its rows' scores
        return float(scores[rows].mean())

    decision = choose_strategy(None, scores, labels, descending=True, fraction=0.5, train_candidate=mean_score, seed=3)
    assert decision.strategy == "top" and decision.margin_over_random > decision.spread
    assert [c["name"] for c in decision.candidates] == [c.name for c in candidates_for(0.5)]


def test_too_few_rows_for_a_slice_is_refused():
    with pytest.raises(SVPConfigError, match="needs at least 20"):
        check_auto(100, np.arange(100) % 2, 0.5, 0.1)
    with pytest.raises(SVPConfigError, match="fewer than the 10 classes"):
        check_auto(200, np.arange(200) % 10, 0.05, 0.2)
    with pytest.raises(SVPConfigError, match="auto_holdout"):
        check_auto(1000, None, 0.5, 0.9)
    check_auto(200, np.arange(200) % 10, 0.5, 0.1)


def test_prune_with_auto_on_too_few_rows_fails_before_training(tiny_digits):
    train, _ = tiny_digits
    with pytest.raises(SVPConfigError, match="strategy 'auto' holds out"):
        svp_hf.prune(train.select(range(100)), proxy="resnet20", fraction=0.5)


def test_cli_auto_records_its_decision_and_evidence(tmp_path):
    from datasets import load_dataset

    from svp_hf.jobs import coreset

    from .conftest import REPO

    out = tmp_path / "out"
    metrics = coreset.main(
        [
            str(REPO / "recipes" / "quickstart.yaml"),
            "--output_dir",
            str(out),
            "--proxy_epochs",
            "1",
            "--target",
            "resnet20",
            "--target_epochs",
            "1",
            "--max_train_samples",
            "240",
            "--max_eval_samples",
            "60",
            "--auto_seeds",
            "2",
            "--score_methods",
            "random",
            "--keep_checkpoints",
            "true",
            "--selection_budget",
            "none",
        ]
    )
    written = json.loads((out / "metrics.json").read_text())
    auto = written["auto"]
    assert written["strategy"] == "auto" and written["selected_strategy"] == auto["strategy"]
    assert [c["name"] for c in auto["candidates"]] == [c.name for c in candidates_for(0.5)]
    assert all(len(c["accuracies"]) == 2 for c in auto["candidates"]) and auto["epochs"] == 1  # the target's epochs
    assert auto["slice_rows"] == 24 and metrics["timings"]["auto"] > 0
    report = (out / "report.md").read_text()
    assert "How `auto` chose" in report and f"`auto`: chose `{auto['chosen']}`" in report
    card = (out / "dataset" / "README.md").read_text()
    assert "strategy `auto`, which chose" in card
    kept = load_dataset(str(out / "dataset"))["train"]["svp_index"]
    expected = svp_hf.selected_indices(
        svp_hf.load_scores(str(out)),
        "least_confidence",
        0.5,
        strategy=auto["strategy"],
        coverage_beta=auto["coverage_beta"],
    )
    assert kept == expected.tolist()
    assert (out / "checkpoints" / "auto.json").is_file()


# --- the budget: selection_budget, plan_check, the fallback ------------------------------------------------------------

from svp_hf.stages.auto import (  # noqa: E402
    FALLBACK_RULE,
    MIN_POOL_SHARE,
    TrainingRate,
    budget_reference,
    check_selection_budget,
    plan_check,
    probe_training_rate,
)

# 1,000 rows, 10% held out: candidates select half of 900; each trains 450 rows x 10 epochs at 1 ms per row-epoch
# (4.5 s). Five candidates at 0.5 (random, top, bottom, coverage at 0 and 0.1) x 2 seeds: 45 s unshrunk.
RATE = TrainingRate(train=0.001)


def plan(available: float, **kwargs):
    return plan_check(
        budget=0.1,
        reference_seconds=1000.0,
        reference="target",
        spent_seconds=100.0 - available,
        rate=RATE,
        n_rows=1000,
        fraction=0.5,
        epochs=10,
        num_classes=2,
        **kwargs,
    )


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), True, "0.1", None])
def test_a_budget_outside_zero_one_is_refused(bad):
    with pytest.raises(SVPConfigError, match="selection_budget must be"):
        check_selection_budget(bad)


def test_a_budget_of_one_is_allowed():
    assert check_selection_budget(1) == 1.0 and check_selection_budget(0.1) == 0.1


@pytest.mark.usefixtures("no_headroom")
def test_the_whole_check_fits_a_generous_budget():
    p = plan(90.0)
    assert p.fits and p.shrunk == [] and p.seeds == 2 and len(p.candidates) == 5
    assert (p.slice_rows, p.fit_rows, p.pool_rows, p.subset_rows) == (100, 900, 900, 450)
    assert p.planned_seconds == pytest.approx(45.0) and p.available_seconds == pytest.approx(90.0)


@pytest.mark.usefixtures("no_headroom")
def test_the_check_shrinks_seeds_then_candidates_then_rows():
    p = plan(30.0)
    assert p.fits and p.shrunk == ["seeds 2 -> 1"] and p.planned_seconds == pytest.approx(22.5)
    p = plan(12.0)
    assert p.fits and p.seeds == 1 and [c.name for c in p.candidates] == ["random", "coverage (beta 0)"]
    assert p.shrunk[1:] == [
        "candidate bottom dropped",
        "candidate coverage (beta 0.1) dropped",
        "candidate top dropped",
    ]
    assert p.planned_seconds == pytest.approx(9.0)
    p = plan(5.0)  # 2.5 s per candidate: at most 250 kept rows, half of 501 (rounded to even) of the 900 rows
    assert p.fits and p.shrunk[-1] == "rows 900 -> 501 (a class-stratified 56%)"
    assert (p.pool_rows, p.subset_rows) == (501, 250) and p.planned_seconds <= 5.0


@pytest.mark.usefixtures("no_headroom")
def test_a_check_that_cannot_fit_says_why():
    p = plan(1.0)  # 0.5 s per candidate: 100 rows, below a quarter of 900
    assert not p.fits and p.pool_rows == int(np.ceil(MIN_POOL_SHARE * 900))
    assert p.reason.startswith("the smallest honest check (random and coverage (beta 0), one seed, 225 of 900 rows")
    assert (
        "does not fit the 1.0 s left of the budget (0.1 x 1000.0 s of the target's full-data training, less 99.0 s"
        in p.reason
    )
    spent = plan(-50.0)  # the proxy and scoring spent more than the budget
    assert not spent.fits and "does not fit the 0.0 s left" in spent.reason


def test_the_recipe_coverage_share_is_the_one_kept():
    p = plan(12.0, coverage_beta=0.2)
    assert [c.name for c in p.candidates] == ["random", "coverage (beta 0.2)"]


def test_auto_under_a_tight_budget_falls_back_without_training(monkeypatch, caplog):
    from svp_hf.stages import auto

    def no_training(*args, **kwargs):
        raise AssertionError("a candidate was trained")

    monkeypatch.setattr(auto, "train_model", no_training)
    rng = np.random.default_rng(0)
    scores, labels = rng.random(1000), rng.integers(0, 2, 1000)
    tight = plan(1.0)
    with caplog.at_level("WARNING", logger="svp_hf.stages.auto"):
        decision = choose_strategy(
            None,
            scores,
            labels,
            descending=True,
            fraction=0.5,
            train_candidate=no_training,
            plan=tight,
            proxy_barely_beats_chance=True,
        )
    assert decision.strategy == "random" and decision.coverage_beta is None and decision.candidates == []
    assert decision.fallback.startswith(tight.reason) and FALLBACK_RULE in decision.fallback
    assert decision.fallback.endswith("this run's proxy barely beats chance besides")
    assert decision.budget["fits"] is False and decision.budget["check_seconds"] >= 0.0
    assert any(r.levelname == "WARNING" and "without training a candidate" in r.message for r in caplog.records)
    assert decision.as_dict()["chosen"] == "random"


@pytest.mark.usefixtures("no_headroom")
def test_a_shrunk_check_trains_what_it_planned():
    rng = np.random.default_rng(0)
    scores, labels = rng.random(1000), rng.integers(0, 2, 1000)
    calls = []

    def flat(rows, slice_rows, seed):
        calls.append((len(rows), len(slice_rows), seed))
        return 0.6

    shrunk = plan(5.0)
    decision = choose_strategy(
        None, scores, labels, descending=True, fraction=0.5, train_candidate=flat, plan=shrunk, seed=4
    )
    assert calls == [(250, 100, 4), (250, 100, 4)]  # random and coverage, one seed, half of a 501-row pool
    assert decision.fit_rows == 501 and decision.subset_rows == 250 and decision.seeds == [4]
    assert decision.budget["shrunk"] == shrunk.shrunk and decision.budget["planned_seconds"] == pytest.approx(
        shrunk.planned_seconds
    )
    assert decision.budget["candidates"] == ["random", "coverage (beta 0)"] and decision.fallback is None


def test_the_budget_is_a_share_of_the_target_or_else_the_proxy():
    rate = TrainingRate.measured(12.0, 100, 2, prepare_seconds=2.0, source="probe")
    assert (rate.train, rate.prepare) == pytest.approx((0.05, 0.02))
    seconds, kind, how = budget_reference(n_rows=1000, target_rate=rate, target_epochs=3, proxy_seconds=5.0)
    assert (
        seconds == pytest.approx(0.05 * 1000 * 3 + 0.02 * 1000) and kind == "target" and "1000 rows x 3 epochs" in how
    )
    assert budget_reference(n_rows=1000, proxy_seconds=5.0)[:2] == (5.0, "proxy")
    with pytest.raises(SVPConfigError, match="selection_budget cannot be checked: the run trains no target"):
        budget_reference(n_rows=1000, proxy_seconds=None)


def test_a_probe_measures_the_training_rate(tiny_digits):
    from svp_hf.engine.training import TrainingConfig, make_accelerator
    from svp_hf.models import create_model, resolve_family
    from svp_hf.stages.proxy import prepare_inputs

    train, _ = tiny_digits
    family, info = prepare_inputs(train, "resnet20", {})
    config = TrainingConfig(epochs=50, batch_size=32, learning_rate=0.05)
    rate, seconds = probe_training_rate(
        lambda: create_model("resnet20", info), resolve_family("resnet20"), train, info, config, make_accelerator()
    )
    assert rate.train > 0 and rate.evaluate > 0 and rate.per_epoch >= 0 and seconds >= rate.train * 96
    assert rate.source.startswith("probe:") and "epochs of 32 and 64 rows after a warm-up batch" in rate.source


def test_two_run_lengths_separate_the_per_row_rate_from_fixed_costs():
    from svp_hf.stages.auto import _rate_from_two

    # 1 s fixed per epoch + 0.01 s per row: 64 rows take 1.64 s, 128 rows 2.28 s
    assert _rate_from_two(1.64, 2.28, 64, 128) == pytest.approx((0.01, 1.0))
    # noise made the longer run no slower: all of it per-row, no fixed part
    assert _rate_from_two(2.0, 1.9, 64, 128) == pytest.approx((1.9 / 128, 0.0))
    # MiniLM's readings on SST-2 (0.58 s for 16 rows, 1.39 s for 32): the extra 16 rows cost more per row than the
    # first 16 with their fixed costs, which no fixed cost explains; the difference (0.051 s per row) would price the
    # training at 1.4x the cheaper whole-run reading, which is taken instead
    assert _rate_from_two(0.58, 1.39, 16, 32) == pytest.approx((0.58 / 16, 0.0))
    per_row, fixed = _rate_from_two(0.58, 1.39, 16, 32)
    assert per_row < (1.39 - 0.58) / 16 and per_row <= 1.39 / 32
    # at the edge (no fixed cost at all) both readings agree
    assert _rate_from_two(0.5, 1.0, 16, 32) == pytest.approx((0.5 / 16, 0.0))
    rate = TrainingRate(train=0.01, prepare=0.001, per_epoch=1.0)
    assert rate.training_seconds(1000, 3) == pytest.approx(30.0 + 1.0 + 3.0)


@pytest.mark.usefixtures("no_headroom")
def test_the_precheck_prices_the_proxy_against_the_targets_full_data_training():
    from svp_hf.stages.auto import precheck, precheck_decision

    target = TrainingRate(train=0.01)  # 1,000 rows x 10 epochs: 100 s; a budget of 0.1 allows 10 s
    cheap = TrainingRate(train=0.001, evaluate=0.001)  # 1,000 rows x 5 epochs = 5 s + scoring 1 s
    common = dict(budget=0.1, n_rows=1000, target_rate=target, target_epochs=10)
    fits = precheck(proxy_rate=cheap, proxy_epochs=5, probe_seconds=2.0, **common)
    assert fits.fits and fits.proxy_training_seconds == pytest.approx(5.0) and fits.proxy_scoring_seconds == 1.0
    assert fits.proxy_estimate_seconds == pytest.approx(6.0) and fits.budget_seconds == pytest.approx(10.0)
    assert fits.reference_seconds == pytest.approx(100.0) and fits.as_dict()["target_rate"]["train"] == 0.01
    # the probes count: 6 s + 5 s of probes no longer fit in 10 s
    over = precheck(proxy_rate=cheap, proxy_epochs=5, probe_seconds=5.0, **common)
    assert not over.fits and "6.0 s" in over.reason and "10.0 s" in over.reason
    dear = precheck(proxy_rate=target, proxy_epochs=2, **common)  # a proxy as dear per row as the target
    assert not dear.fits and dear.proxy_estimate_seconds == pytest.approx(20.0)
    decision = precheck_decision(dear, epochs=10)
    assert decision.strategy == "random" and decision.candidates == [] and decision.fallback.startswith(dear.reason)
    assert decision.budget["precheck"] == dear.as_dict() and decision.budget["fits"] is False
    assert decision.budget["reference"] == "target" and decision.budget["reference_seconds"] == pytest.approx(100.0)
    with pytest.raises(SVPConfigError, match="target's epochs"):
        precheck(budget=0.1, n_rows=1000, proxy_rate=cheap, proxy_epochs=5, target_rate=target, target_epochs=None)


@pytest.mark.usefixtures("no_headroom")
def test_the_precheck_counts_building_the_proxy_and_is_decided_by_an_over_budget_target_probe():
    from svp_hf.stages.auto import precheck, precheck_decision, target_probe_decides

    target = TrainingRate(train=0.01)  # 1,000 rows x 10 epochs: 100 s; a budget of 0.1 allows 10 s
    common = dict(budget=0.1, n_rows=1000, target_rate=target, target_epochs=10)
    # building the proxy is part of its training: 5 s + 1 s of scoring + 2 s of probes fit in 10 s; with a 3 s
    # build they do not
    cheap = TrainingRate(train=0.001, evaluate=0.001, build=1.5)
    fits = precheck(proxy_rate=cheap, proxy_epochs=5, probe_seconds=2.0, **common)
    assert fits.fits and fits.proxy_training_seconds == pytest.approx(6.5) and fits.proxy_build_seconds == 1.5
    slow = precheck(
        proxy_rate=TrainingRate(train=0.001, evaluate=0.001, build=3.0), proxy_epochs=5, probe_seconds=2.0, **common
    )
    assert not slow.fits and slow.proxy_estimate_seconds == pytest.approx(9.0)
    # a target probe over the budget by itself decides: the proxy is not probed
    assert not target_probe_decides(budget=0.1, n_rows=1000, target_rate=target, target_epochs=10, probe_seconds=10.0)
    assert target_probe_decides(budget=0.1, n_rows=1000, target_rate=target, target_epochs=10, probe_seconds=10.01)
    assert target_probe_decides(budget=0.5, n_rows=100, target_rate=target, target_epochs=1, probe_seconds=0.6)
    with pytest.raises(SVPConfigError, match="selection_budget"):
        target_probe_decides(budget=0.0, n_rows=1000, target_rate=target, target_epochs=10, probe_seconds=1.0)
    unprobed = precheck(proxy_rate=None, proxy_epochs=5, probe_seconds=10.5, target_build_seconds=4.0, **common)
    assert not unprobed.fits and not unprobed.proxy_probed and unprobed.proxy_estimate_seconds is None
    assert unprobed.proxy_rate == {} and unprobed.budget_seconds == pytest.approx(10.0)
    assert "the target's probe alone took 10.5 s (building the target 4.0 s)" in unprobed.reason
    assert "kept random without probing or training the proxy" in unprobed.reason
    decision = precheck_decision(unprobed, epochs=10)
    assert decision.strategy == "random" and decision.candidates == [] and decision.fallback.startswith(unprobed.reason)
    # a pre-check saved before these fields reads back as a probed one
    from svp_hf.stages.auto import Precheck

    old = fits.as_dict()
    del old["proxy_probed"], old["proxy_build_seconds"]
    assert Precheck(**old).proxy_probed and Precheck(**old).proxy_build_seconds is None


def test_the_plan_keeps_headroom_for_the_probes_error_only_when_the_target_is_estimated():
    from svp_hf.stages.auto import BUDGET_HEADROOM, precheck, spendable_seconds, target_probe_decides

    assert 0.0 < BUDGET_HEADROOM < 0.5
    # the target's full-data training as a probe priced it: 100 s, a budget of 0.1 -> 10 s, of which 8 s are planned
    assert spendable_seconds(0.1, 100.0) == pytest.approx(10.0 * (1 - BUDGET_HEADROOM))
    assert spendable_seconds(0.1, 100.0, "proxy") == pytest.approx(10.0)  # measured: planned in full
    rate = TrainingRate(train=0.001, evaluate=0.001)
    for reference, headroom in (("target", BUDGET_HEADROOM), ("proxy", 0.0)):
        plan = plan_check(
            budget=0.1,
            reference_seconds=100.0,
            reference=reference,
            spent_seconds=2.0,
            rate=rate,
            n_rows=1000,
            fraction=0.5,
            epochs=5,
            num_classes=2,
        )
        assert plan.available_seconds == pytest.approx(10.0 * (1 - headroom) - 2.0)
        assert plan.headroom == headroom and plan.as_dict()["headroom"] == headroom
    # the pre-check: 7 s of proxy and 2 s of probes fit the budget's 10 s but not the 8 s it plans to spend
    target = TrainingRate(train=0.01)  # 1,000 rows x 10 epochs: 100 s
    common = dict(budget=0.1, n_rows=1000, target_rate=target, target_epochs=10)
    dear = precheck(proxy_rate=TrainingRate(train=0.0012, evaluate=0.001), proxy_epochs=5, probe_seconds=2.0, **common)
    assert dear.proxy_estimate_seconds == pytest.approx(7.0) and dear.budget_seconds == pytest.approx(10.0)
    assert not dear.fits and dear.spendable_seconds == pytest.approx(10.0 * (1 - BUDGET_HEADROOM))
    assert "selection may plan to spend of the budget's 10.0 s" in dear.reason
    edge = 10.0 * (1 - BUDGET_HEADROOM)
    assert target_probe_decides(probe_seconds=edge + 0.01, **common)
    assert not target_probe_decides(probe_seconds=edge - 0.01, **common)


@pytest.mark.usefixtures("no_headroom")
def test_a_check_slower_than_planned_stops_within_its_budget(monkeypatch):
    from types import SimpleNamespace

    from svp_hf.stages import auto

    clock = [0.0]  # a fake clock: each candidate takes 10 s where the plan expected 4.5 s
    monkeypatch.setattr(auto, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    rng = np.random.default_rng(0)
    scores, labels = rng.random(1000), rng.integers(0, 2, 1000)
    trained = []

    def slow(rows, slice_rows, seed):
        clock[0] += 10.0
        trained.append(len(rows))
        return 0.6

    budget = plan(30.0)  # one seed, five candidates, 22.5 s planned
    decision = choose_strategy(None, scores, labels, descending=True, fraction=0.5, train_candidate=slow, plan=budget)
    assert len(trained) == 3 and decision.seconds == 30.0  # a fourth would end at 40 s, past the 30 s left
    assert [c["name"] for c in decision.candidates] == ["random", "coverage (beta 0)", "top"]
    assert decision.budget["stopped"].startswith(
        "stopped after 3 of 5 candidates: they took 10.0 s each against 4.5 s planned"
    )
    assert decision.budget["check_seconds"] == 30.0 and decision.strategy == "random"


@pytest.mark.usefixtures("no_headroom")
def test_a_check_stopped_after_random_alone_says_the_fallback_rule_decided(monkeypatch):
    from types import SimpleNamespace

    from svp_hf.stages import auto

    clock = [0.0]  # random takes 20 s of the 30 s left: the next candidate would end past the budget
    monkeypatch.setattr(auto, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    rng = np.random.default_rng(0)
    scores, labels = rng.random(1000), rng.integers(0, 2, 1000)

    def slow(rows, slice_rows, seed):
        clock[0] += 20.0
        return 0.6

    decision = choose_strategy(
        None, scores, labels, descending=True, fraction=0.5, train_candidate=slow, plan=plan(30.0)
    )
    assert [c["name"] for c in decision.candidates] == ["random"] and decision.strategy == "random"
    assert decision.fallback.startswith("stopped after 1 of 5 candidates")
    assert "with random alone trained nothing was compared: random kept by the fallback rule" in decision.fallback
    stopped_later = choose_strategy(
        None,
        scores,
        labels,
        descending=True,
        fraction=0.5,
        plan=plan(100.0),
        train_candidate=lambda rows, slice_rows, seed: clock.__setitem__(0, clock[0] + 20.0) or 0.6,
    )
    assert len(stopped_later.candidates) > 1 and stopped_later.fallback is None


@pytest.mark.usefixtures("no_headroom")
def test_a_budget_exactly_the_smallest_check_fits_it():
    from svp_hf.stages.auto import check_cost

    rate = TrainingRate(train=0.030310006060333385, evaluate=1e-4)  # a rate whose arithmetic does not round evenly
    seconds = check_cost(
        rate, 2, 1, 101, 6, 150
    )  # random and coverage, one seed, half of 338 (a quarter of 1,350) at 0.3
    p = plan_check(
        budget=1.0,
        reference_seconds=seconds,
        reference="target",
        spent_seconds=0.0,
        rate=rate,
        n_rows=1500,
        fraction=0.3,
        epochs=6,
        num_classes=10,
    )
    assert p.fits and p.subset_rows == 101 and p.planned_seconds <= seconds


@pytest.mark.usefixtures("no_headroom")
def test_budget_plan_takes_what_the_job_measured():
    from svp_hf.stages.auto import budget_plan

    target = TrainingRate(train=0.01)  # the target: 0.01 s per row-epoch, 1,000 rows x 10 epochs = 100 s on all rows
    measured = TrainingRate.measured(5.0, 1000, 5)  # the proxy trained here: 5 s for 1,000 rows x 5 epochs
    common = dict(budget=0.2, n_rows=1000, fraction=0.5, proxy_epochs=5)
    p = budget_plan(
        check_epochs=10,
        proxy_rate=measured,
        proxy_trained=True,
        scoring_seconds=1.0,
        target_rate=target,
        target_epochs=10,
        probe_seconds=2.0,
        **common,
    )
    # the figures the two pricing paths gave before they were one
    assert (p.reference, p.reference_seconds) == ("target", pytest.approx(100.0))
    assert p.spent_seconds == pytest.approx(8.0) and p.available_seconds == pytest.approx(12.0)
    assert p.seconds_per_row_epoch == pytest.approx(0.001)  # the proxy: 5 s for 1,000 rows x 5 epochs
    # candidates: 450 rows x 10 epochs x 0.001 + 100 slice rows x 0.001 (scoring's rate) = 4.6 s; 10 of them do not fit
    assert p.fits and p.shrunk[0] == "seeds 2 -> 1" and p.planned_seconds <= 12.0
    alone = budget_plan(check_epochs=5, proxy_rate=measured, proxy_trained=True, scoring_seconds=1.0, **common)
    assert (alone.reference, alone.spent_seconds) == ("proxy", 1.0) and alone.reference_seconds == pytest.approx(5.0)
    assert not alone.fits  # 0 s left: scoring alone took the proxy-relative budget


def test_every_candidate_of_the_check_is_priced_with_building_its_model():
    from svp_hf.stages.auto import budget_plan, check_cost

    # the proxy: 5 s for 1,000 rows x 5 epochs, 1 s of it building the model (not spread over the rows)
    measured = TrainingRate.measured(5.0, 1000, 5, build_seconds=1.0)
    assert measured.build == 1.0 and measured.train == pytest.approx(0.0008)
    assert measured.training_seconds(1000, 5) + measured.build == pytest.approx(5.0)
    assert check_cost(measured, 2, 2, 100, 5, 10) == pytest.approx(4 * (1.0 + 0.4))
    assert TrainingRate.measured(0.5, 10, 1, build_seconds=2.0).build == 0.5  # never more than the seconds
    target = TrainingRate(train=0.01)
    common = dict(budget=0.2, n_rows=1000, fraction=0.5, proxy_epochs=5, check_epochs=10, scoring_seconds=1.0)
    p = budget_plan(proxy_rate=measured, proxy_trained=True, target_rate=target, target_epochs=10, **common)
    assert p.spent_seconds == pytest.approx(6.0)  # the proxy's 5 s (its building included) and scoring's 1 s
    scored = TrainingRate(**{**measured.as_dict(), "evaluate": 0.001})  # scoring 1,000 rows took 1 s
    assert p.planned_seconds == pytest.approx(
        check_cost(scored, len(p.candidates), p.seeds, p.subset_rows, 10, p.slice_rows)
    )


def test_budget_plan_prices_a_probed_proxy_as_the_orchestrator_did():
    from svp_hf.stages.auto import budget_plan

    target = TrainingRate(train=0.01)
    probed = TrainingRate(train=0.001, evaluate=0.0005, source="probe")  # a proxy loaded from a checkpoint
    loaded = budget_plan(
        budget=0.2,
        n_rows=1000,
        fraction=0.5,
        check_epochs=10,
        proxy_rate=probed,
        proxy_epochs=5,
        proxy_trained=False,
        scoring_seconds=1.0,
        target_rate=target,
        target_epochs=10,
        probe_seconds=3.0,
    )
    before = plan_check(  # what Pruner._probed_plan computed: scoring and probes spent, scoring's rate
        budget=0.2,
        reference_seconds=100.0,
        reference="target",
        spent_seconds=1.0 + 3.0,
        rate=TrainingRate(train=0.001, evaluate=1.0 / 1000, source="probe"),
        n_rows=1000,
        fraction=0.5,
        epochs=10,
    )
    assert loaded.as_dict() == before.as_dict()
    alone = budget_plan(
        budget=0.5,
        n_rows=1000,
        fraction=0.5,
        check_epochs=5,
        proxy_rate=probed,
        proxy_epochs=5,
        proxy_trained=False,
        probe_seconds=0.5,
    )
    assert alone.reference == "proxy" and alone.reference_seconds == pytest.approx(5.0)
    assert alone.spent_seconds == pytest.approx(0.5)  # the proxy's probe; its training is no cost of this run
