"""Strategies are pure functions of scores, labels, fraction and seed (svp_hf.selection.strategies)."""

import numpy as np
import pytest

import svp_hf
from svp_hf.config import check_coverage_beta
from svp_hf.errors import SVPConfigError
from svp_hf.selection.strategies import (
    allocate,
    apply_strategy,
    default_coverage_beta,
    hardest_dropped,
    list_strategies,
    strata_of,
)


def test_every_strategy_is_listed():
    assert list_strategies() == ["auto", "bottom", "coverage", "random", "top"]


@pytest.mark.parametrize(
    "budget, sizes, expected",
    [
        (9, [2, 5, 10], [2, 3, 4]),  # smallest first: 9//3 -> 2 (all it has); 7//2 -> 3; the rest, 4
        (10, [1, 1, 20], [1, 1, 8]),
        (6, [4, 4, 4], [2, 2, 2]),
        (7, [4, 4, 4], [2, 2, 3]),  # the last (largest, ties by position) takes the remainder
        (30, [5, 10], [5, 10]),  # a budget above the rows keeps them all
    ],
)
def test_allocate_gives_each_stratum_an_equal_share_of_what_is_left(budget, sizes, expected):
    assert allocate(budget, sizes).tolist() == expected


def test_allocation_always_adds_up():
    rng = np.random.default_rng(0)
    for _ in range(500):
        sizes = rng.integers(0, 30, size=rng.integers(1, 12))
        budget = int(rng.integers(0, sizes.sum() + 1))
        got = allocate(budget, sizes)
        assert got.sum() == budget and (got <= sizes).all() and (got >= 0).all()


def test_strata_are_equal_width_and_infinities_are_their_own():
    values = np.array([0.0, 0.19, 0.2, 0.5, 0.99, 1.0, np.inf, -np.inf])
    assert strata_of(values, 5).tolist() == [0, 0, 1, 2, 4, 4, 5, -1]
    assert strata_of(np.full(4, 3.0), 50).tolist() == [0, 0, 0, 0]


def test_coverage_spreads_the_budget_over_known_strata():
    # One class: 10 easy rows (0.0), 10 medium (0.5), 2 hard (1.0). Strata sizes 10, 10, 2: the hard stratum is
    # visited first and keeps both rows, then 7 // 2 = 3 come from the easy one and the last 4 from the medium one.
    scores = np.array([0.0] * 10 + [0.5] * 10 + [1.0] * 2)
    keep = apply_strategy("coverage", scores, 9, descending=True, coverage_beta=0.0, seed=3)
    assert len(keep) == 9 and keep.tolist() == sorted(keep.tolist())
    kept = scores[keep]
    assert [(kept == v).sum() for v in (0.0, 0.5, 1.0)] == [3, 4, 2]


def test_coverage_drops_exactly_the_hardest_share_per_class():
    scores = np.arange(100, dtype=float)
    labels = np.repeat([0, 1], 50)
    for descending in (True, False):
        dropped = hardest_dropped(scores, labels, 0.3, descending=descending)
        hardest = np.r_[35:50, 85:100] if descending else np.r_[0:15, 50:65]
        assert dropped.tolist() == hardest.tolist()
        for seed in range(5):
            keep = apply_strategy(
                "coverage", scores, 60, descending=descending, labels=labels, coverage_beta=0.3, seed=seed
            )
            assert not set(keep.tolist()) & set(dropped.tolist())
            assert np.bincount(labels[keep]).tolist() == [30, 30]


def test_coverage_keeps_exact_per_class_quotas():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    scores = rng.normal(size=100)
    scores[rng.integers(0, 100, 7)] = np.inf  # never learned: a stratum of its own
    keep = apply_strategy("coverage", scores, 10, labels=labels, seed=0)
    assert np.bincount(labels[keep]).tolist() == [5, 3, 2]
    for n_keep in (1, 7, 33, 50, 61):
        keep = apply_strategy("coverage", scores, n_keep, labels=labels, seed=n_keep)
        assert len(keep) == n_keep == len(set(keep.tolist()))


def test_strategies_are_pure_functions_of_their_inputs():
    rng = np.random.default_rng(2)
    scores, labels = rng.random(300), rng.integers(0, 4, 300)
    for name in ("top", "bottom", "random", "coverage"):
        a = apply_strategy(name, scores, 90, labels=labels, seed=5)
        b = apply_strategy(name, scores.copy(), 90, labels=labels.copy(), seed=5)
        assert a.tolist() == b.tolist(), name
    assert (
        apply_strategy("coverage", scores, 90, labels=labels, seed=5).tolist()
        != apply_strategy("coverage", scores, 90, labels=labels, seed=6).tolist()
    )


def test_top_bottom_and_random():
    scores = np.arange(10, dtype=float)
    assert apply_strategy("top", scores, 3).tolist() == [7, 8, 9]
    assert apply_strategy("bottom", scores, 3).tolist() == [0, 1, 2]
    assert apply_strategy("top", scores, 3, descending=False).tolist() == [0, 1, 2]
    # random ignores the scores and keeps what the random method's top would
    uniform = np.random.default_rng(4).random(10)
    assert apply_strategy("random", scores, 4, seed=4).tolist() == apply_strategy("top", uniform, 4, seed=4).tolist()


@pytest.mark.parametrize(
    "fraction, beta",
    [(1.0, 0.0), (0.5, 0.0), (0.4, 0.05), (0.3, 0.1), (0.2, 0.1), (0.15, 0.2), (0.1, 0.3), (0.05, 0.3)],
)
def test_default_beta_follows_the_prune_rate(fraction, beta):
    assert default_coverage_beta(fraction) == pytest.approx(beta)


@pytest.mark.parametrize("beta", [-0.1, 1.0, 1.5, "x", True, [0.1]])
def test_bad_coverage_beta(beta):
    with pytest.raises(SVPConfigError, match="coverage_beta"):
        check_coverage_beta(beta)


def test_coverage_beta_must_leave_room_for_the_fraction():
    assert check_coverage_beta(0.3, 0.7) == 0.3
    with pytest.raises(SVPConfigError, match="leaves too few to keep fraction=0.8"):
        check_coverage_beta(0.3, 0.8)


def test_select_and_selected_indices_take_a_strategy(tiny_digits):
    from datasets import Dataset

    train, _ = tiny_digits
    rng = np.random.default_rng(0)
    scores = Dataset.from_dict(
        {"svp_index": list(range(len(train))), "label": train["label"], "el2n": rng.random(len(train)).tolist()}
    )
    for strategy in ("top", "bottom", "random", "coverage"):
        keep = svp_hf.selected_indices(scores, "el2n", 0.3, strategy=strategy, seed=1)
        pruned = svp_hf.select(train, scores, "el2n", 0.3, strategy=strategy, seed=1)
        assert pruned["svp_index"] == keep.tolist() and len(keep) == 60
    kept = svp_hf.select(train, scores, "el2n", 0.1, strategy="coverage", coverage_beta=0.5)["svp_index"]
    hardest_half = hardest_dropped(np.asarray(scores["el2n"]), np.asarray(train["label"]), 0.5, descending=True)
    assert len(hardest_half) >= 95 and not set(kept) & set(hardest_half.tolist())
    with pytest.raises(SVPConfigError, match="unknown strategy 'best'"):
        svp_hf.selected_indices(scores, "el2n", 0.3, strategy="best")
    with pytest.raises(SVPConfigError, match="needs the dataset"):
        svp_hf.selected_indices(scores, "el2n", 0.3, strategy="auto")
    with pytest.raises(SVPConfigError, match="pass proxy="):
        svp_hf.select(train, scores, "el2n", 0.3, strategy="auto")
    with pytest.raises(SVPConfigError, match="leaves too few"):
        svp_hf.select(train, scores, "el2n", 0.9, strategy="coverage", coverage_beta=0.3)
