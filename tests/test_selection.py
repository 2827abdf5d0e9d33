import numpy as np
import pytest

from svp_hf.errors import SVPConfigError
from svp_hf.selection.ranking import greedy_k_center, n_to_keep, rank, select_indices


def test_top_k_descending_and_ascending():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    np.testing.assert_array_equal(select_indices(scores, 2), [1, 3])
    np.testing.assert_array_equal(select_indices(scores, 2, descending=False), [0, 4])


def test_ties_break_by_seed_deterministically():
    scores = np.zeros(50)
    a = select_indices(scores, 10, seed=1)
    np.testing.assert_array_equal(a, select_indices(scores, 10, seed=1))
    assert not np.array_equal(a, select_indices(scores, 10, seed=2))
    assert np.all(np.diff(a) > 0)  # original order


def test_rank_rejects_nan():
    with pytest.raises(SVPConfigError, match="NaN"):
        rank(np.array([0.1, np.nan]))


def test_infinite_scores_rank_first():
    np.testing.assert_array_equal(select_indices(np.array([1.0, np.inf, 2.0]), 1), [1])


def test_class_balanced_keeps_each_class_share():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    scores = np.concatenate([np.zeros(60), np.ones(40)])  # unbalanced selection would take classes 1 and 2 only
    keep = select_indices(scores, 50, labels=labels, class_balanced=True)
    counts = np.bincount(labels[keep], minlength=3)
    np.testing.assert_array_equal(counts, [30, 15, 5])
    assert len(keep) == 50


def test_class_balanced_quota_rounding_adds_up():
    labels = np.array([0] * 7 + [1] * 7 + [2] * 7)
    keep = select_indices(np.arange(21.0), 10, labels=labels, class_balanced=True)
    assert len(keep) == 10
    assert sorted(np.bincount(labels[keep])) == [3, 3, 4]


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, "half", None])
def test_fraction_outside_range(fraction):
    with pytest.raises(SVPConfigError, match="fraction"):
        n_to_keep(fraction, 100)


def test_fraction_that_keeps_no_rows_and_empty():
    with pytest.raises(SVPConfigError, match="keeps no rows"):
        n_to_keep(0.001, 100)
    with pytest.raises(SVPConfigError, match="empty"):
        n_to_keep(0.5, 0)
    assert n_to_keep(1.0, 7) == 7


def test_greedy_k_center_known_order():
    # Points on a line, starting from 0: the farthest is 10, then 5 (5 from both); then 2 and 8 are both 2 from
    # their nearest center, and the tie goes to the lower index.
    x = np.array([[0.0], [10.0], [5.0], [2.0], [8.0]])
    order, dists = greedy_k_center(x, initial=[0])
    np.testing.assert_array_equal(order, [1, 2, 3, 4])
    np.testing.assert_allclose(dists, [10, 5, 2, 2])


def test_greedy_k_center_random_start_budget_and_chunks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    order, dists = greedy_k_center(x, seed=5)
    assert sorted(order.tolist()) == list(range(300))  # a full ordering
    assert dists[0] == np.inf and np.all(np.diff(dists[1:]) <= 1e-9)  # non-increasing
    chunked, _ = greedy_k_center(x, seed=5, chunk_size=7)
    np.testing.assert_array_equal(order, chunked)
    partial, _ = greedy_k_center(x, seed=5, budget=20)
    np.testing.assert_array_equal(partial, order[:20])
