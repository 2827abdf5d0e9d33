"""strategy 'auto' (svp_hf.auto): the decision rule on fixed figures, the check on a deterministic fixture, its
pre-flight errors, and an end-to-end run that records its evidence."""

import json

import numpy as np
import pytest

import svp_hf
from svp_hf.auto import (
    Candidate,
    candidates_for,
    check_auto,
    choose_strategy,
    decide,
    holdout_slice,
)
from svp_hf.errors import SVPConfigError


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
    assert [c.name for c in candidates_for(0.95)] == ["random", "top", "bottom", "coverage (beta 0)"]  # 0.1 leaves too few
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

    from svp_hf import coreset

    from .conftest import REPO

    out = tmp_path / "out"
    metrics = coreset.main([
        str(REPO / "recipes" / "quickstart.yaml"), "--output_dir", str(out), "--proxy_epochs", "1", "--target", "resnet20",
        "--target_epochs", "1", "--max_train_samples", "240", "--max_eval_samples", "60", "--auto_seeds", "2",
        "--score_methods", "random", "--keep_checkpoints", "true",
    ])
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
        svp_hf.load_scores(str(out)), "least_confidence", 0.5, strategy=auto["strategy"], coverage_beta=auto["coverage_beta"]
    )
    assert kept == expected.tolist()
    assert (out / "checkpoints" / "auto.json").is_file()
