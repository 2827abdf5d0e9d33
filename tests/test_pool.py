import numpy as np
import pytest

from svp_hf.active.pool import UNLABELLED, LabelPool, initial_indices
from svp_hf.config import check_schedule
from svp_hf.errors import SVPConfigError


def assert_partition(pool: LabelPool):
    labelled, unlabelled = pool.labelled, pool.unlabelled
    assert len(np.intersect1d(labelled, unlabelled)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([labelled, unlabelled])), np.arange(len(pool)))
    assert pool.n_labelled == len(labelled)


def test_rounds_label_exactly_the_budgets_and_never_twice():
    rng = np.random.default_rng(0)
    budgets = check_schedule(500, 20, [50, 120, 300, 500])
    pool = LabelPool.from_initial(500, 20, seed=3)
    assert pool.n_labelled == 20 and (pool.rounds(pool.labelled) == 0).all()
    assert np.isnan(pool.scores(pool.labelled)).all()
    ever = set(pool.labelled.tolist())
    for round_, budget in enumerate(budgets, start=1):
        assert_partition(pool)
        n = budget - pool.n_labelled
        picked = rng.choice(pool.unlabelled, size=n, replace=False)
        scores = rng.random(n)
        pool.label(picked, round_, scores)
        assert pool.n_labelled == budget
        assert not ever & set(picked.tolist())
        ever |= set(picked.tolist())
        np.testing.assert_array_equal(pool.rounds(picked), round_)
        np.testing.assert_array_equal(pool.scores(picked), scores)
    assert_partition(pool)
    assert len(pool.unlabelled) == 0
    assert np.bincount(pool.rounds()).tolist() == [20, 30, 70, 180, 200]


def test_initial_set_is_determined_by_the_seed():
    a = initial_indices(1000, 50, seed=1)
    np.testing.assert_array_equal(a, initial_indices(1000, 50, seed=1))
    assert not np.array_equal(a, initial_indices(1000, 50, seed=2))
    assert len(np.unique(a)) == 50 and np.all(np.diff(a) > 0) and a.max() < 1000


def test_class_balanced_initial_set():
    labels = np.array([0] * 500 + [1] * 300 + [2] * 200)
    picked = initial_indices(1000, 30, seed=0, labels=labels, class_balanced=True)
    assert np.bincount(labels[picked]).tolist() == [10, 10, 10]
    # Uneven split: the extra examples go to some classes, never more than one each.
    counts = np.bincount(labels[initial_indices(1000, 31, seed=0, labels=labels, class_balanced=True)])
    assert sorted(counts.tolist()) == [10, 10, 11]
    # A class smaller than its share gives its leftover to the others.
    small = np.array([0] * 100 + [1] * 100 + [2] * 3)
    counts = np.bincount(small[initial_indices(203, 60, seed=0, labels=small, class_balanced=True)])
    assert counts[2] == 3 and sorted(counts[:2].tolist()) == [28, 29] and counts.sum() == 60


def test_class_balanced_initial_set_needs_one_per_class_and_labels():
    labels = np.repeat(np.arange(10), 20)
    with pytest.raises(SVPConfigError, match=r"initial_size=9 is smaller than the number of classes \(10\)"):
        initial_indices(200, 9, labels=labels, class_balanced=True)
    with pytest.raises(SVPConfigError, match="needs the pool's labels"):
        initial_indices(200, 20, class_balanced=True)
    with pytest.raises(SVPConfigError, match="initial_size"):
        initial_indices(200, 201)


@pytest.mark.parametrize(
    "pool_size, initial, budgets, match",
    [
        (100, 10, [50, 40], "strictly increasing"),
        (100, 10, [20, 20], "strictly increasing"),
        (100, 10, [10, 50], "larger than initial_size"),
        (100, 10, [5], "larger than initial_size"),
        (100, 10, [50, 101], r"larger than the pool \(100 examples\)"),
        (100, 10, [], "at least one|labelled-set size"),
        (100, 0, [50], "initial_size must be at least 1"),
    ],
)
def test_bad_schedules(pool_size, initial, budgets, match):
    with pytest.raises(SVPConfigError, match=match):
        check_schedule(pool_size, initial, budgets)


def test_schedule_without_a_pool_checks_everything_else():
    assert check_schedule(None, 10, ["20", 30]) == [20, 30]
    with pytest.raises(SVPConfigError, match="strictly increasing"):
        check_schedule(None, 10, [30, 20])


def test_label_refuses_what_would_break_the_invariants_and_changes_nothing():
    pool = LabelPool.from_initial(50, 5, seed=0)
    before_rounds, before_scores = pool.rounds(), pool.scores()
    labelled, free = pool.labelled, pool.unlabelled
    bad = [
        (([free[0], free[0]], 1), "twice"),
        (([labelled[0], free[0]], 1), "labelled already"),
        (([50], 1), "must be in"),
        (([-1], 1), "must be in"),
        (([free[0]], 0), "does not come after"),
        (([], 1), "no examples"),
        (([free[0], free[1]], 1, [0.5]), "2 examples"),
    ]
    for call, match in bad:
        with pytest.raises(ValueError, match=match):
            pool.label(*call)
        np.testing.assert_array_equal(pool.rounds(), before_rounds)
        np.testing.assert_array_equal(pool.scores(), before_scores)
    assert_partition(pool)


def test_copy_is_independent():
    pool = LabelPool.from_initial(30, 3, seed=0)
    other = pool.copy()
    other.label(other.unlabelled[:5], 1)
    assert pool.n_labelled == 3 and other.n_labelled == 8
    assert (pool.rounds(other.unlabelled) == UNLABELLED).all()
